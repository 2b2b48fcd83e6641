//! The [`Storage`] of real nodes, on sled 0.34.
//!
//! sled's own flush is not what makes a write durable: the write-ahead log
//! in [`super::Store`] is. sled is flushed at checkpoints, after which the
//! log is emptied, so a checkpoint must leave sled's files durable against
//! a power loss, not only a crash: sled's flush ends in `sync_file_range`
//! (data pages, not the file's size or names), so the checkpoint also syncs
//! every file and directory of sled's folder.

use super::{decode, version_of, ApplyOutcome, Held, Newer, Size, Storage, StorageError};
use crate::record::Record;
use crate::version::Version;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct SledStorage {
    db: sled::Db,
    dir: PathBuf,
    /// Keys held. sled keeps no count (its `len` walks the whole tree), so
    /// it is counted once at open and then kept by every change that adds
    /// or removes a key: each is a compare-and-swap from or to nothing, so
    /// the count is exact whatever runs concurrently.
    records: AtomicU64,
}

impl SledStorage {
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStorage, StorageError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            // Checkpoints flush explicitly; this only bounds how much
            // work a checkpoint finds waiting.
            .flush_every_ms(Some(1_000))
            .open()?;
        let records = AtomicU64::new(db.len() as u64);
        Ok(SledStorage { db, dir: dir.to_path_buf(), records })
    }
}

impl Storage for SledStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        self.db.get(key)?.map(|bytes| decode(key, &bytes)).transpose()
    }

    fn read_held(&self, key: &[u8]) -> Result<Held, StorageError> {
        let bytes = self.db.get(key)?;
        let version = bytes.as_deref().map(|bytes| version_of(key, bytes)).transpose()?;
        Ok(Held { version, bytes })
    }

    fn apply_over(&self, key: &[u8], held: &Held, record: &Record, newer: Newer) -> Result<ApplyOutcome, StorageError> {
        let mut encoded = None;
        let mut reread = None;
        // Compare-and-swap loop: where the key changed since `held` was
        // read (compaction, or a caller other than the store's writer),
        // read it again and decide again.
        loop {
            let held = reread.as_ref().unwrap_or(held);
            if !newer.admits(held.version, record.version) {
                return Ok(ApplyOutcome::Stale);
            }
            let encoded = encoded.get_or_insert_with(|| record.encode());
            match self.db.compare_and_swap(key, held.bytes.as_deref(), Some(encoded.as_slice()))? {
                Ok(()) => {
                    if held.bytes.is_none() {
                        self.records.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(ApplyOutcome::Applied);
                }
                Err(_changed_meanwhile) => reread = Some(self.read_held(key)?),
            }
        }
    }

    fn remove_if_version(&self, key: &[u8], version: Version) -> Result<bool, StorageError> {
        let Some(held) = self.db.get(key)? else {
            return Ok(false);
        };
        if decode(key, &held)?.version != version {
            return Ok(false);
        }
        let removed = self.db.compare_and_swap(key, Some(held), None as Option<&[u8]>)?.is_ok();
        if removed {
            self.records.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(removed)
    }

    fn scan_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Record)>, StorageError> {
        let iter = match after {
            Some(key) => self.db.range::<&[u8], _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded)),
            None => self.db.iter(),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in iter.take(limit) {
            let (key, bytes) = item?;
            out.push((key.to_vec(), decode(&key, &bytes)?));
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        super::fsync::sync_tree(&self.dir)?;
        Ok(())
    }

    fn size(&self) -> Size {
        // The log file's length and the blob files' (a folder listing).
        let disk_bytes = match self.db.size_on_disk() {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                tracing::debug!(%error, dir = %self.dir.display(), "cannot read sled's size on disk");
                None
            }
        };
        Size { records: self.records.load(Ordering::Relaxed), disk_bytes }
    }
}
