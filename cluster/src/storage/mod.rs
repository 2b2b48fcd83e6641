//! Where a replica keeps its records.
//!
//! [`Storage`] is the key/record map with "newer version wins" semantics;
//! [`MemoryStorage`] backs tests and [`SledStorage`] backs real nodes.
//! [`Store`] puts the write-ahead log in front of it so that a write is
//! acknowledged only once it is durable.

pub mod fsync;
mod memory;
mod sled_store;
mod store;
mod wal;

pub use memory::MemoryStorage;
pub use sled_store::SledStorage;
pub use store::{Store, StoreError, SyncPolicy, Write};
pub use wal::{encode_log_image, replay_log_image, salvage_log_image, Damage, Wal, WalEntry};

use crate::record::{CodecError, Record};
use crate::version::Version;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("damaged write-ahead log {}: {reason}; move it aside and start the node with --recover-from-peers", path.display())]
    DamagedLog { path: std::path::PathBuf, reason: String },
    #[error("corrupt record under key {key:?}: {source}")]
    Corrupt { key: String, source: CodecError },
}

/// Whether [`Storage::apply`] changed anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The record was newer than what the replica held, and now is held.
    Applied,
    /// The replica already held this version or a newer one; nothing changed.
    Stale,
    /// The replica held nothing, and the record was older than the write
    /// allowed over nothing (`Write::fresh_from_ms`); nothing changed.
    TooOld,
}

/// What a write must be newer than to be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Newer {
    /// The held version: newer wins, a replica's every write but one.
    Version,
    /// Every version of the held record's millisecond: a one-round put's
    /// write, which the replica vouches for by storing it
    /// (`Replica::write_newest`). By the millisecond, not only by the
    /// tie-break: a client's next write must get a larger timestamp than
    /// its last (a session's `min_timestamp` could not tell two writes of
    /// one millisecond apart), as a learn round's `highest + 1 ms` gives.
    Millisecond,
}

impl Newer {
    /// Whether `record` may replace `held` (nothing held: always).
    pub fn admits(self, held: Option<Version>, record: Version) -> bool {
        match (self, held) {
            (_, None) => true,
            (Newer::Version, Some(held)) => held < record,
            (Newer::Millisecond, Some(held)) => held.timestamp_ms < record.timestamp_ms,
        }
    }
}

/// A key's record as [`Storage::read_held`] found it, so that the write
/// decided on it needs no second read ([`Storage::apply_over`]).
#[derive(Debug)]
pub struct Held {
    pub version: Option<Version>,
    /// The stored bytes, for a compare-and-swap (sled's); None where the
    /// storage needs none.
    bytes: Option<sled::IVec>,
}

/// What a [`Storage`] can tell of its size without reading its records
/// (for the node's metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Size {
    /// Records held, tombstones included.
    pub records: u64,
    /// Bytes its files take, where it has files.
    pub disk_bytes: Option<u64>,
}

/// A replica's map from key to record.
///
/// Architecture invariant: a replica only ever moves a key to a newer
/// version ([`Storage::apply`]); the single exception is compaction, which
/// removes a dead record only if it is still exactly the version it checked
/// ([`Storage::remove_if_version`]).
pub trait Storage: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError>;

    /// Stores `record` under `key` if its version is newer than the held one.
    fn apply(&self, key: &[u8], record: &Record) -> Result<ApplyOutcome, StorageError> {
        self.apply_over(key, &self.read_held(key)?, record, Newer::Version)
    }

    /// The held record's version (not its value: one read, no copy).
    fn read_held(&self, key: &[u8]) -> Result<Held, StorageError>;

    /// Stores `record` under `key` if `newer` admits it over the held
    /// record. `held` is what [`Storage::read_held`] returned earlier: if
    /// the key still holds it, the write needs no second read (the store's
    /// writer decides on every write of a batch before logging it, then
    /// applies them); if not, the key is read again.
    fn apply_over(&self, key: &[u8], held: &Held, record: &Record, newer: Newer) -> Result<ApplyOutcome, StorageError>;

    /// Removes the record under `key` only if it still has `version`.
    fn remove_if_version(&self, key: &[u8], version: Version) -> Result<bool, StorageError>;

    /// Up to `limit` records in key order, starting after `after`.
    fn scan_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Record)>, StorageError>;

    /// Makes everything applied so far durable: it survives a crash of the
    /// process and a power loss (the log is emptied right after).
    fn flush(&self) -> Result<(), StorageError>;

    /// Cheap to call (no scan of the records): it is read at every scrape
    /// of the node's metrics.
    fn size(&self) -> Size;
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Record, StorageError> {
    Record::decode(bytes).map_err(|source| corrupt(key, source))
}

fn version_of(key: &[u8], bytes: &[u8]) -> Result<Version, StorageError> {
    Record::version_in(bytes).map_err(|source| corrupt(key, source))
}

fn corrupt(key: &[u8], source: CodecError) -> StorageError {
    StorageError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), source }
}

#[cfg(test)]
pub(crate) mod tests;
