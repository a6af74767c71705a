//! Long `Vec<u8>` arguments travel out of line (written from the caller's
//! vector, read into the method's own): every size, beside other arguments,
//! proxies and pipelined calls, against a manager process.

mod common;

use common::bounded;
use manager::{shared, Error, ListProxy, Manager};

#[shared]
pub struct Store {
    blobs: Vec<Vec<u8>>,
}

#[shared]
impl Store {
    pub fn new() -> Self {
        Store { blobs: Vec::new() }
    }

    /// Keeps `data` under `tag` and returns its length and checksum.
    pub fn put(&mut self, tag: u8, data: Vec<u8>, trailer: String) -> (usize, u64, String) {
        let sum = checksum(&data);
        self.blobs.push(data);
        (
            self.blobs.last().map_or(0, Vec::len),
            sum,
            format!("{tag}:{trailer}"),
        )
    }

    /// Both byte strings, joined: only the first may travel out of line.
    pub fn join(&self, a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
        [a, b].concat()
    }

    /// A byte string and a proxy in one call.
    pub fn append_len(&self, data: Vec<u8>, to: ListProxy<u64>) -> Result<(), String> {
        to.push(data.len() as u64).map_err(|e| e.to_string())
    }

    /// The byte string kept at `i`.
    pub fn get(&self, i: usize) -> Option<Vec<u8>> {
        self.blobs.get(i).cloned()
    }
}

fn checksum(data: &[u8]) -> u64 {
    data.iter().enumerate().fold(0u64, |h, (i, &b)| {
        h.wrapping_mul(31).wrapping_add(u64::from(b) ^ i as u64)
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 8) as u8)
        .collect()
}

const SIZES: [usize; 7] = [0, 1, 65_535, 65_536, 65_537, 1 << 20, (3 << 20) + 7];

#[test]
fn byte_strings_of_every_size_arrive_whole() {
    bounded(|| {
        let mgr = Manager::builder().register::<Store>().start().unwrap();
        let store = StoreProxy::new(&mgr).unwrap();
        for (i, &len) in SIZES.iter().enumerate() {
            let data = pattern(len, i as u8 + 3);
            let sum = checksum(&data);
            let got = store.put(i as u8, data.clone(), "end".into()).unwrap();
            assert_eq!(got, (len, sum, format!("{i}:end")), "{len} bytes");
            assert_eq!(store.get(i).unwrap(), Some(data), "{len} bytes back");
        }
        for &a in &SIZES {
            for &b in &[0, 70_000] {
                let (x, y) = (pattern(a, 5), pattern(b, 7));
                let joined = store.join(x.clone(), y.clone()).unwrap();
                assert_eq!(joined, [x, y].concat(), "{a} + {b} bytes");
            }
        }
    });
}

#[test]
fn byte_strings_travel_beside_proxies_and_pipelined_calls() {
    bounded(|| {
        let mgr = Manager::builder().register::<Store>().start().unwrap();
        let store = StoreProxy::new(&mgr).unwrap();
        let lens = mgr.list::<u64>().unwrap();
        // Deferred calls still buffered go out before the long one, in order.
        let queued: Vec<_> = (0..10).map(|i| lens.deferred().push(i).unwrap()).collect();
        store
            .append_len(pattern(200_000, 9), lens.clone())
            .unwrap()
            .unwrap();
        for p in queued {
            p.wait().unwrap();
        }
        let mut expected: Vec<u64> = (0..10).collect();
        expected.push(200_000);
        assert_eq!(lens.to_vec().unwrap(), expected);
        // Deferred calls with long byte strings go inline; the result is the same.
        let sent: Vec<_> = (0..4)
            .map(|i| {
                store
                    .deferred()
                    .put(i, pattern(100_000, i), String::new())
                    .unwrap()
            })
            .collect();
        for (i, p) in sent.into_iter().enumerate() {
            let (len, sum, _) = p.wait().unwrap();
            assert_eq!((len, sum), (100_000, checksum(&pattern(100_000, i as u8))));
        }
        assert_eq!(mgr.stats().unwrap().objects, 2, "the store and the list");
    });
}

#[test]
fn a_byte_string_over_the_frame_limit_is_refused_before_it_is_sent() {
    bounded(|| {
        let mgr = Manager::builder()
            .register::<Store>()
            .max_frame_size(1 << 20)
            .start()
            .unwrap();
        let store = StoreProxy::new(&mgr).unwrap();
        let r = store.put(0, vec![0; 2 << 20], String::new());
        assert!(
            matches!(r, Err(Error::Protocol(ref m)) if m.contains("maximum")),
            "{r:?}"
        );
        // Too much else beside it to travel out of line: it goes inline.
        let trailer = "t".repeat(40_000);
        let got = store.put(2, pattern(300_000, 3), trailer.clone()).unwrap();
        assert_eq!(
            got,
            (
                300_000,
                checksum(&pattern(300_000, 3)),
                format!("2:{trailer}")
            )
        );
        // The connection is unharmed.
        let ok = store.put(1, vec![1; 500_000], String::new()).unwrap();
        assert_eq!(ok.0, 500_000);
    });
}
