//! Disk corruption of a stopped node (Jepsen's file-corruption faults):
//! cut the tail off, or flip bits in the tail of, the node's log and data
//! files, then let the node start on what is left.
//!
//! "The tail" is the end of what was written, not of the file: the node's
//! log grows its file with zeros ahead of the last frame, so damage past
//! the last non-zero byte would touch nothing. Damage lands in the last
//! [`TAIL_BYTES`] before it, where the newest, acknowledged writes are.
//!
//! Planning is pure (the file's bytes and an rng in, an [`Action`] out), so
//! it is tested without a node; [`corrupt_dir`] applies the plan to files.

use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How far back from the end of the written bytes damage may land.
pub const TAIL_BYTES: u64 = 4096;
/// Most bits one bit-flip action flips.
const MAX_FLIPS: usize = 8;

/// How a fault damages files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Cut the file short, somewhere in the tail of its written bytes.
    Truncate,
    /// Flip a few bits in the tail of its written bytes.
    Bitflip,
}

/// What was done to one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// The file was cut to `to_bytes` (from `from_bytes`).
    Truncate { from_bytes: u64, to_bytes: u64 },
    /// These bit positions (byte offset * 8 + bit) were flipped.
    Bitflip { bits: Vec<u64> },
    /// Nothing written: nothing to damage.
    Untouched,
}

/// The damage one fault did, for the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// Relative to the data folder.
    pub file: String,
    #[serde(flatten)]
    pub action: Action,
}

/// Offset just past the last non-zero byte.
pub fn written_end(bytes: &[u8]) -> u64 {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |at| at as u64 + 1)
}

/// The damage `mode` does to a file holding `bytes`. Pure.
pub fn plan(mode: Mode, bytes: &[u8], rng: &mut StdRng) -> Action {
    let end = written_end(bytes);
    if end == 0 {
        return Action::Untouched;
    }
    let tail_start = end.saturating_sub(TAIL_BYTES);
    match mode {
        Mode::Truncate => {
            Action::Truncate { from_bytes: bytes.len() as u64, to_bytes: rng.random_range(tail_start..end) }
        }
        Mode::Bitflip => {
            let flips = rng.random_range(1..=MAX_FLIPS);
            let mut bits: Vec<u64> = (0..flips).map(|_| rng.random_range(tail_start * 8..end * 8)).collect();
            bits.sort_unstable();
            bits.dedup();
            Action::Bitflip { bits }
        }
    }
}

/// Applies `action` to `bytes` in memory (what [`apply`] does to a file).
pub fn apply_to(bytes: &mut Vec<u8>, action: &Action) {
    match action {
        Action::Truncate { to_bytes, .. } => bytes.truncate(*to_bytes as usize),
        Action::Bitflip { bits } => {
            for bit in bits {
                bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
        }
        Action::Untouched => {}
    }
}

/// Applies `action` to the file at `path` and syncs it: the damage is what
/// the disk holds from now on, also across a later power loss.
pub fn apply(path: &Path, action: &Action) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    match action {
        Action::Truncate { to_bytes, .. } => file.set_len(*to_bytes)?,
        Action::Bitflip { bits } => {
            for bit in bits {
                let mut byte = [0u8];
                file.seek(SeekFrom::Start(bit / 8))?;
                file.read_exact(&mut byte)?;
                byte[0] ^= 1 << (bit % 8);
                file.seek(SeekFrom::Start(bit / 8))?;
                file.write_all(&byte)?;
            }
        }
        Action::Untouched => return Ok(()),
    }
    file.sync_all()
}

/// The files a node keeps its log and data in under `dir`: every
/// `wal.log`, and sled's `db` and snapshot files. Sorted, so one seed
/// picks the same files.
pub fn targets(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if name == "wal.log" || name == "db" || name.starts_with("snap.") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Damages every log and data file of the node under `dir` with `mode`.
pub fn corrupt_dir(dir: &Path, mode: Mode, rng: &mut StdRng) -> std::io::Result<Vec<Damage>> {
    let mut damage = Vec::new();
    for path in &targets(dir)? {
        let action = plan(mode, &std::fs::read(path)?, rng);
        apply(path, &action)?;
        let file = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        damage.push(Damage { file, action });
    }
    Ok(damage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn damage_lands_in_the_tail_of_what_was_written() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut bytes = vec![7u8; 10_000];
        bytes.extend(vec![0u8; 50_000]); // zeros grown ahead of the log's end
        assert_eq!(written_end(&bytes), 10_000);
        for _ in 0..200 {
            match plan(Mode::Truncate, &bytes, &mut rng) {
                Action::Truncate { from_bytes, to_bytes } => {
                    assert_eq!(from_bytes, 60_000);
                    assert!((10_000 - TAIL_BYTES..10_000).contains(&to_bytes), "{to_bytes}");
                }
                other => panic!("{other:?}"),
            }
            match plan(Mode::Bitflip, &bytes, &mut rng) {
                Action::Bitflip { bits } => {
                    assert!(!bits.is_empty() && bits.len() <= MAX_FLIPS);
                    assert!(bits.iter().all(|b| (10_000 - TAIL_BYTES) * 8 <= *b && *b < 10_000 * 8), "{bits:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(plan(Mode::Bitflip, &[0u8; 100], &mut rng), Action::Untouched);
    }

    #[test]
    fn files_are_damaged_as_planned_and_the_same_seed_damages_the_same_way() {
        let dir = std::env::temp_dir().join(format!("corruption-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["data/wal", "data/sled", "hints/wal", "other"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let original: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8 + 1).collect();
        let files = ["data/wal/wal.log", "data/sled/db", "data/sled/snap.0000", "hints/wal/wal.log", "other/x"];
        let reset = || files.iter().for_each(|f| std::fs::write(dir.join(f), &original).unwrap());
        reset();
        let found: Vec<String> =
            targets(&dir).unwrap().iter().map(|p| p.strip_prefix(&dir).unwrap().display().to_string()).collect();
        assert_eq!(found, ["data/sled/db", "data/sled/snap.0000", "data/wal/wal.log", "hints/wal/wal.log"]);
        for mode in [Mode::Truncate, Mode::Bitflip] {
            let first = corrupt_dir(&dir, mode, &mut StdRng::seed_from_u64(9)).unwrap();
            for damage in &first {
                let mut expected = original.clone();
                apply_to(&mut expected, &damage.action);
                assert_eq!(std::fs::read(dir.join(&damage.file)).unwrap(), expected, "{damage:?}");
                assert_ne!(expected, original, "{damage:?} changed nothing");
            }
            reset();
            assert_eq!(corrupt_dir(&dir, mode, &mut StdRng::seed_from_u64(9)).unwrap(), first);
            reset();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
