//! A history too large for memory, split by key into shard files that
//! each fit: one streaming pass over `history.jsonl` checks its structure
//! and routes every client event to the shard of its operation's key, so
//! each shard holds every event of its keys (an operation's completion
//! goes where its invocation went, whatever key it carries). Checkers
//! then take the shards one at a time ([`crate::checker::Tally`]); every
//! check is per key, so the verdict is the one the whole history gets.
//!
//! Nemesis events are few (one per fault and heal) and are kept in memory
//! for the report rather than written to a shard.
//!
//! Jepsen moved its histories to disk for the same reason: an hour at a
//! few thousand operations a second is tens of millions of events, and
//! parsed events cost hundreds of bytes each.

use super::{Event, HistoryError, Lines, Process, Structure};
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Bytes of history per shard: a shard read back costs a few times its
/// size in parsed events, so this bounds the check's memory to a few
/// hundred MB whatever the history's length.
pub const SHARD_BYTES: u64 = 64 << 20;
/// Files open at once while splitting.
pub const MAX_SHARDS: usize = 1_024;

/// A split history: its shard files (removed when this is dropped) and
/// what the splitting pass learned on the way.
#[derive(Debug)]
pub struct Shards {
    dir: PathBuf,
    paths: Vec<PathBuf>,
    /// The nemesis events, in history order.
    pub nemesis: Vec<Event>,
    /// Every event of the history.
    pub events: u64,
    /// The time of the last event (ns since the run started).
    pub end_ns: u64,
}

/// How many shards a history of `bytes` needs ([`SHARD_BYTES`] each).
pub fn count_for(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(SHARD_BYTES)).unwrap_or(MAX_SHARDS).clamp(1, MAX_SHARDS)
}

/// The shard of `key`: the same on every machine and run.
pub fn shard_of(key: &str, shards: usize) -> usize {
    (crate::hash::fnv1a(key.as_bytes()) % shards as u64) as usize
}

/// Splits the history at `path` into `shards` files under `dir` (created,
/// and removed with the returned [`Shards`]). Fails as [`super::read`]
/// does on a history that is not well-formed.
pub fn split(path: &Path, dir: &Path, shards: usize) -> Result<Shards, HistoryError> {
    assert!(shards > 0, "a history splits into at least one shard");
    std::fs::create_dir_all(dir)?;
    let mut split = Shards { dir: dir.to_owned(), paths: Vec::new(), nemesis: Vec::new(), events: 0, end_ns: 0 };
    let mut writers = Vec::with_capacity(shards);
    for i in 0..shards {
        let shard = dir.join(format!("shard-{i:04}.jsonl"));
        writers.push(BufWriter::new(std::fs::File::create(&shard)?));
        split.paths.push(shard);
    }
    let mut structure = Structure::default();
    // Each process's operation in flight, by the shard it went to.
    let mut open: HashMap<Process, usize> = HashMap::new();
    for (line, event) in Lines::open(path)? {
        let event = event?;
        structure.check(line, &event)?;
        split.events += 1;
        split.end_ns = split.end_ns.max(event.time);
        if event.process == Process::NEMESIS {
            split.nemesis.push(event);
            continue;
        }
        let shard = match event.kind {
            super::EventType::Invoke => {
                let shard = shard_of(event.key.as_deref().unwrap_or(""), shards);
                open.insert(event.process, shard);
                shard
            }
            // The structure check above proved an invocation is open.
            _ => open.remove(&event.process).unwrap_or(0),
        };
        serde_json::to_writer(&mut writers[shard], &event).map_err(std::io::Error::from)?;
        writers[shard].write_all(b"\n")?;
    }
    for writer in writers {
        writer.into_inner().map_err(|e| e.into_error())?;
    }
    Ok(split)
}

/// [`split`] into a folder beside the history (`history.shards/` for
/// `history.jsonl`), as many shards as its size needs ([`count_for`]).
pub fn split_beside(path: &Path) -> Result<Shards, HistoryError> {
    let bytes = std::fs::metadata(path)?.len();
    split(path, &path.with_extension("shards"), count_for(bytes))
}

impl Shards {
    /// [`Shards::for_each`] over only the shards that hold `keys`.
    pub fn for_each_holding(&self, keys: &[&str], each: impl FnMut(&[Event])) -> Result<(), HistoryError> {
        let mut wanted: Vec<usize> = keys.iter().map(|key| shard_of(key, self.paths.len())).collect();
        wanted.sort_unstable();
        wanted.dedup();
        self.read_each(wanted.into_iter().map(|i| &self.paths[i]), each)
    }

    /// Reads the shards one at a time: `each` gets every event of a group
    /// of keys, in history order, and the group is dropped before the
    /// next is read.
    pub fn for_each(&self, each: impl FnMut(&[Event])) -> Result<(), HistoryError> {
        self.read_each(self.paths.iter(), each)
    }

    fn read_each<'p>(
        &self,
        paths: impl Iterator<Item = &'p PathBuf>,
        mut each: impl FnMut(&[Event]),
    ) -> Result<(), HistoryError> {
        for path in paths {
            each(&super::read(path)?);
        }
        Ok(())
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "could not remove a split history's shards");
        }
    }
}
