//! Whatever arrives on an encrypted connection after a valid handshake:
//! the record layer opens only what authenticates, fails on the rest, and
//! never panics. The input's first byte picks how many valid records
//! precede the arbitrary bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use manager::__private::open_records;

fuzz_target!(|data: &[u8]| {
    let (head, tail) = data.split_first().map_or((0, data), |(h, t)| (*h, t));
    let valid: Vec<&[u8]> = (0..head % 4).map(|_| &b"a valid record"[..]).collect();
    let (plain, _failed) = open_records(tail, &valid);
    assert!(plain.len() >= valid.len() * 14 || tail.is_empty());
});
