//! The record decoder: what every replica reads back from its storage, its
//! log and its peers.
//!
//! Properties: nothing panics; a decoded record encodes back to the same
//! record; and decoding loses nothing but what the format says is ignored
//! (the expiry field of a record without the "expires" flag), so the
//! encoding of a decoded record is the input with that field zeroed.

#![no_main]

use cluster::record::{Record, HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

/// Where the format puts the flags byte and the expiry (record.rs).
const FLAGS_AT: usize = 17;
const EXPIRY: std::ops::Range<usize> = 18..26;
const FLAG_EXPIRES: u8 = 0b10;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::decode(data) else { return };
    let encoded = record.encode();
    assert_eq!(Record::decode(&encoded).as_ref(), Ok(&record));
    let mut canonical = data.to_vec();
    if canonical[FLAGS_AT] & FLAG_EXPIRES == 0 {
        canonical[EXPIRY].fill(0);
    }
    assert_eq!(encoded, canonical, "decoding lost or changed bytes of {record:?}");
    assert_eq!(encoded.len(), HEADER_BYTES + record.value.len());
});
