//! A bug found while writing the `wal_replay` fuzz target, now fixed: log
//! replay could yield an entry that was never written.
//!
//! Replay used to scan past bytes that hold no intact frame (a damaged
//! frame, and the stale tail past the end of the log) for intact frames of
//! the current generation, anywhere in the file, and replay them. A value
//! is client bytes, and a client can put into one the bytes of a whole
//! frame of the current or next generation. Replay then found that frame
//! inside the value and replayed it as a write: any key, any version, a
//! tombstone as well. Now only the unbroken run of frames from the header
//! replays; the scan only reports damage (and a log's first generation is
//! random, so a client cannot compute a frame's CRC). The inputs that
//! showed it are kept as fuzz seeds (`fuzz/seeds/wal_replay/forged-*`).

use cluster::record::Record;
use cluster::storage::{encode_log_image, replay_log_image, WalEntry};
use cluster::version::Version;

/// A write nobody made, and the bytes of its frame in `generation`.
fn forged(generation: u64) -> (WalEntry, Vec<u8>) {
    let entry =
        WalEntry { key: b"forged".to_vec(), record: Record::value(Version::new(1 << 62, 7), b"evil".to_vec(), None) };
    let header_len = encode_log_image(generation, &[]).len();
    let frame = encode_log_image(generation, std::slice::from_ref(&entry))[header_len..].to_vec();
    (entry, frame)
}

/// A client's value holding a frame.
fn holding(frame: Vec<u8>) -> WalEntry {
    WalEntry { key: b"a".to_vec(), record: Record::value(Version::new(1, 1), frame, None) }
}

/// No damage at all: generation 1 logged a value holding a frame of
/// generation 2; a checkpoint started generation 2 over the start of the
/// file, and the old bytes past its end are scanned.
#[test]
fn a_frame_inside_an_older_generation_value_is_not_replayed() {
    let (forged, frame) = forged(2);
    let older = encode_log_image(1, &[holding(frame)]);
    let mut file = encode_log_image(2, &[]);
    file.extend_from_slice(&older[file.len()..]);
    let replayed = replay_log_image(&file).expect("the header is intact");
    assert!(!replayed.contains(&forged), "an undamaged log replayed a write nobody made: {replayed:?}");
    assert_eq!(replayed, Vec::new());
}

/// One flipped bit in the CRC of a frame whose value holds a frame.
#[test]
fn a_frame_inside_a_damaged_frame_is_not_replayed() {
    let (forged, frame) = forged(2);
    let mut file = encode_log_image(2, &[holding(frame)]);
    let header_len = encode_log_image(2, &[]).len();
    file[header_len + 5] ^= 1;
    let replayed = replay_log_image(&file).expect("the header is intact");
    assert!(!replayed.contains(&forged), "a damaged log replayed a write nobody made: {replayed:?}");
}
