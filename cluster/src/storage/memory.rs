//! An in-memory [`Storage`] for tests: same semantics, no disk.

use super::{ApplyOutcome, Held, Newer, Size, Storage, StorageError};
use crate::record::Record;
use crate::version::Version;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct MemoryStorage {
    records: Mutex<BTreeMap<Vec<u8>, Record>>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Record>> {
        // A panic while holding the lock is a bug elsewhere; the map itself
        // is never left half-updated, so keep serving.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        Ok(self.records().get(key).cloned())
    }

    fn read_held(&self, key: &[u8]) -> Result<Held, StorageError> {
        Ok(Held { version: self.records().get(key).map(|held| held.version), bytes: None })
    }

    /// Decides on the record held now, under the lock: `_held` is only a
    /// shortcut for storages that read without one.
    fn apply_over(
        &self,
        key: &[u8],
        _held: &Held,
        record: &Record,
        newer: Newer,
    ) -> Result<ApplyOutcome, StorageError> {
        let mut records = self.records();
        match newer.admits(records.get(key).map(|held| held.version), record.version) {
            false => Ok(ApplyOutcome::Stale),
            true => {
                records.insert(key.to_vec(), record.clone());
                Ok(ApplyOutcome::Applied)
            }
        }
    }

    fn remove_if_version(&self, key: &[u8], version: Version) -> Result<bool, StorageError> {
        let mut records = self.records();
        if records.get(key).is_some_and(|held| held.version == version) {
            records.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    fn scan_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Record)>, StorageError> {
        let records = self.records();
        let start = match after {
            Some(key) => Bound::Excluded(key.to_vec()),
            None => Bound::Unbounded,
        };
        Ok(records
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(key, record)| (key.clone(), record.clone()))
            .collect())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn size(&self) -> Size {
        Size { records: self.records().len() as u64, disk_bytes: None }
    }
}
