//! Property tests on hostile input: whatever bytes an authenticated peer
//! sends, the manager's connection loop answers or hangs up, never panics,
//! and leaks no object once the peer is gone. The fuzz target in `fuzz/`
//! drives the same entry point with coverage guidance.

use manager::__private::{FuzzHarness, TypeEntry};
use manager::shared;
use proptest::prelude::*;

/// A sample type with the argument shapes a dispatcher must decode.
#[shared]
#[derive(Default)]
pub struct Sample {
    items: Vec<String>,
}

#[shared]
impl Sample {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
    /// From parts.
    pub fn with(items: Vec<String>, repeat: u8) -> Self {
        let mut all = Vec::new();
        for _ in 0..repeat.min(4) {
            all.extend(items.iter().cloned());
        }
        Sample { items: all }
    }
    /// Adds one.
    pub fn push(&mut self, s: String, n: Option<u32>) -> usize {
        self.items.push(format!("{s}{n:?}"));
        self.items.len()
    }
    /// Reads one.
    pub fn get(&self, i: u64) -> Option<String> {
        self.items.get(i as usize).cloned()
    }
    /// Panics on request.
    pub fn boom(&self, really: bool) -> bool {
        assert!(!really, "asked to panic");
        really
    }
}

/// The harness numbers objects from 1: the two `create_frame`s below make 1 and 2.
fn harness() -> FuzzHarness {
    FuzzHarness::new(&[TypeEntry::of::<Sample>()])
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A request's header: the variant `tag` (0 `Call`, 1 `CallCaps`, ...),
/// the call number and the object id as eight little-endian bytes, then
/// the method.
fn header(tag: u8, seq: u64, object: u64, method: u32) -> Vec<u8> {
    postcard::to_allocvec(&(tag, seq.to_le_bytes(), object.to_le_bytes(), method)).unwrap()
}

/// A create call for `Sample` through constructor `ctor` with raw `args`.
fn create_frame(seq: u64, ctor: u32, args: &[u8]) -> Vec<u8> {
    let mut body = header(0, seq, 0, 0);
    body.extend(postcard::to_allocvec(&<Sample as manager::Shared>::TYPE_NAME).unwrap());
    body.extend(postcard::to_allocvec(&<SampleProxy as manager::Proxy>::FINGERPRINT).unwrap());
    body.extend(postcard::to_allocvec(&Vec::<String>::new()).unwrap()); // no element types
    body.extend(postcard::to_allocvec(&ctor).unwrap());
    body.extend_from_slice(args);
    frame(&body)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes after valid records on an encrypted connection:
    /// the valid ones open, nothing forged opens, nothing panics.
    #[test]
    fn random_bytes_after_valid_records_never_open(
        valid in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
        tail in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let parts: Vec<&[u8]> = valid.iter().map(Vec::as_slice).collect();
        let (plain, failed) = manager::__private::open_records(&tail, &parts);
        prop_assert_eq!(plain, valid.concat(), "only the valid records open");
        prop_assert_eq!(failed, !tail.is_empty(), "random bytes never authenticate");
    }

    #[test]
    fn random_bytes_never_panic_or_leak(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let h = harness();
        let _ = h.feed(&input);
        prop_assert_eq!(h.live_objects(), 0);
    }

    #[test]
    fn well_framed_random_requests_never_panic_or_leak(
        requests in proptest::collection::vec(
            (any::<u8>(), 0u64..4, 0u32..8, proptest::collection::vec(any::<u8>(), 0..48)),
            0..24,
        )
    ) {
        let h = harness();
        let mut input = create_frame(1, 0, &[]);
        input.extend(create_frame(2, 1, &postcard::to_allocvec(&(vec!["a".to_owned()], 2u8)).unwrap()));
        for (kind, object, method, args) in requests {
            let mut body = header(kind % 3, u64::from(kind), object, method);
            body.extend_from_slice(&args);
            input.extend(frame(&body));
        }
        let _ = h.feed(&input);
        prop_assert_eq!(h.live_objects(), 0);
    }
}

#[test]
fn the_harness_answers_well_formed_calls() {
    let h = harness();
    let out = h.feed(&create_frame(1, 0, &[]));
    // One reply frame: Response::Ok { seq: 1 } and the new object's id.
    assert!(out.len() > 6, "{out:?}");
    assert_eq!(out[4], 0, "Response::Ok");
    assert_eq!(out[5..13], 1u64.to_le_bytes(), "seq 1");
    assert_eq!(h.live_objects(), 0, "freed when the connection ended");
}

/// Writes the fuzz target's seed corpus (`fuzz/corpus/server_input/`) when
/// `WRITE_FUZZ_CORPUS` names the directory; otherwise does nothing.
#[test]
fn write_fuzz_corpus_seeds() {
    let Ok(dir) = std::env::var("WRITE_FUZZ_CORPUS") else {
        return;
    };
    let ping = frame(&header(0, 1, 0, 8));
    let stats = frame(&header(0, 2, 0, 1));
    let mut calls = create_frame(3, 0, &[]);
    let mut push = header(0, 4, 1, 0);
    push.extend(postcard::to_allocvec(&("x", Some(7u32))).unwrap());
    calls.extend(frame(&push));
    let mut get = header(0, 5, 1, 1);
    get.extend(postcard::to_allocvec(&0u64).unwrap());
    calls.extend(frame(&get));
    calls.extend(frame(
        &postcard::to_allocvec(&(2u8, 1u64.to_le_bytes())).unwrap(),
    ));
    for (name, bytes) in [
        ("ping", ping),
        ("stats", stats),
        ("create-push-get-release", calls),
    ] {
        std::fs::write(format!("{dir}/{name}"), bytes).unwrap();
    }
}
