//! Write-ahead log replay: the entries a node replays at start from the
//! bytes of its log file.
//!
//! Two kinds of input. Arbitrary bytes as a log file: replay must not
//! panic (a damaged header may be refused). And a log the node could have
//! written: fuzz-chosen entries encoded in one generation, over the bytes
//! an older generation left further on in the file and the zeros the file
//! is grown with, then damaged at fuzz-chosen places (flipped, overwritten
//! and zeroed bytes, a torn tail). Undamaged, replay must give back exactly
//! the entries written; damaged, it may lose entries but every entry it
//! replays must be one that was written in the current generation. That
//! is: damage can cost writes, never invent one, nor bring back one from
//! before the last checkpoint.
//!
//! The damage is a few bytes at a time, as disks and crashes do it. It is
//! not an adversary rewriting a frame together with its checksum: no
//! checksum stops that, and a forged frame is then "written".

#![no_main]

use cluster::record::Record;
use cluster::storage::{encode_log_image, replay_log_image, WalEntry};
use cluster::version::Version;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    if kind % 2 == 0 {
        // Only "no panic" can be asked of arbitrary bytes.
        let _ = replay_log_image(rest);
    } else {
        // Running out of bytes for the choices just ends the input.
        let _ = written_then_damaged(&mut Unstructured::new(rest));
    }
});

fn written_then_damaged(u: &mut Unstructured<'_>) -> Result<()> {
    let generation: u64 = u.arbitrary()?;
    let written = entries(u)?;
    let mut file = encode_log_image(generation, &written);
    let written_len = file.len();
    assert_eq!(replay_log_image(&file).ok().as_ref(), Some(&written), "an undamaged log, just written");

    // What lies past the current generation's frames: an older, longer
    // generation whose start the current one overwrote, then zeros.
    if u.arbitrary::<bool>()? {
        let older_generation = generation.wrapping_sub(u.int_in_range(1..=3)?);
        let older = encode_log_image(older_generation, &entries(u)?);
        file.extend_from_slice(older.get(written_len..).unwrap_or_default());
    }
    file.resize(file.len() + u.int_in_range(0..=4096)?, 0);
    assert_eq!(replay_log_image(&file).ok().as_ref(), Some(&written), "an undamaged log with an older tail");

    let damage_count = u.int_in_range(1..=8)?;
    for _ in 0..damage_count {
        damage(u, &mut file)?;
    }
    if let Ok(replayed) = replay_log_image(&file) {
        for entry in &replayed {
            assert!(written.contains(entry), "replayed {entry:?}, which was never written in this generation");
        }
    }
    Ok(())
}

fn damage(u: &mut Unstructured<'_>, file: &mut Vec<u8>) -> Result<()> {
    if file.is_empty() {
        return Ok(());
    }
    let at = u.int_in_range(0..=file.len() - 1)?;
    match u.int_in_range(0..=3u8)? {
        0 => file[at] ^= u.int_in_range(1..=255u8)?,
        1 => file[at] = u.arbitrary()?,
        2 => {
            // A block that never reached the disk reads as zeros.
            let len = u.int_in_range(1..=4096usize)?.min(file.len() - at);
            file[at..at + len].fill(0);
        }
        _ => file.truncate(at),
    }
    Ok(())
}

fn entries(u: &mut Unstructured<'_>) -> Result<Vec<WalEntry>> {
    let count = u.int_in_range(0..=12)?;
    (0..count).map(|_| entry(u)).collect()
}

fn entry(u: &mut Unstructured<'_>) -> Result<WalEntry> {
    let key_len = u.int_in_range(0..=40)?;
    let key = u.bytes(key_len)?.to_vec();
    let version = Version::new(u.arbitrary()?, u.arbitrary()?);
    let record = if u.arbitrary::<bool>()? {
        Record::tombstone(version)
    } else {
        let value_len = u.int_in_range(0..=400)?;
        Record::value(version, u.bytes(value_len)?.to_vec(), u.arbitrary()?)
    };
    Ok(WalEntry { key, record })
}
