//! The durable front of a replica's storage: group commit, replay, checkpoints.
//!
//! Every write goes through one writer thread. It takes every write that is
//! waiting (up to a bound), logs the batch with one `sync_data`, applies it
//! to the [`Storage`], then answers each writer. Concurrent writers thus
//! share a flush, and since the thread is the only one applying writes, a
//! checkpoint (flush storage, empty the log) needs no further coordination.
//!
//! Compaction also runs through the thread: it checkpoints first, so that
//! no log entry older than a removal can be replayed after it and resurrect
//! what was removed.

use super::{ApplyOutcome, Storage, StorageError, Wal, WalEntry};
use crate::record::Record;
use crate::version::Version;
use std::path::Path;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Writes waiting beyond this make writers wait (backpressure).
const QUEUE_CAPACITY: usize = 8_192;
/// At most this many writes share one flush.
const MAX_BATCH_WRITES: usize = 2_048;
/// The log is emptied (after a storage flush) once it grows past this.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone, Debug, Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Failed(Arc<StorageError>),
    #[error("the store is shut down")]
    Closed,
}

impl From<StorageError> for StoreError {
    fn from(error: StorageError) -> StoreError {
        StoreError::Failed(Arc::new(error))
    }
}

enum Command {
    Apply { entry: WalEntry, reply: oneshot::Sender<Result<ApplyOutcome, StoreError>> },
    Compact { candidates: Vec<(Vec<u8>, Version)>, reply: oneshot::Sender<Result<usize, StoreError>> },
}

/// A replica's storage with durable writes.
pub struct Store {
    storage: Arc<dyn Storage>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    volatile: bool,
}

impl Store {
    /// Replays the log in `wal_dir` into `storage`, checkpoints, and starts
    /// the writer thread.
    pub fn open(storage: Arc<dyn Storage>, wal_dir: &Path) -> Result<Store, StorageError> {
        let (mut wal, replayed) = Wal::open(wal_dir)?;
        let replayed_count = replayed.len();
        for entry in &replayed {
            storage.apply(&entry.key, &entry.record)?;
        }
        storage.flush()?;
        wal.reset()?;
        tracing::info!(replayed_count, wal = %wal.path().display(), "write-ahead log replayed");
        Store::start(storage, wal)
    }

    /// A store without a log or writer thread, for memory storage: writes
    /// apply inline and are lost with the process, by choice. (Inline, so
    /// tests on tokio's paused clock never wait on another thread.)
    pub fn volatile(storage: Arc<dyn Storage>) -> Result<Store, StorageError> {
        Ok(Store { storage, commands: Mutex::new(None), writer: Mutex::new(None), volatile: true })
    }

    fn start(storage: Arc<dyn Storage>, wal: Wal) -> Result<Store, StorageError> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let thread_storage = storage.clone();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || Writer { storage: thread_storage, wal, failed: None }.run(receiver))?;
        Ok(Store { storage, commands: Mutex::new(Some(sender)), writer: Mutex::new(Some(writer)), volatile: false })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        Ok(self.storage.get(key)?)
    }

    pub fn scan_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Record)>, StoreError> {
        Ok(self.storage.scan_after(after, limit)?)
    }

    /// Applies `record` if newer than the held version; returns once durable.
    pub async fn apply(&self, key: Vec<u8>, record: Record) -> Result<ApplyOutcome, StoreError> {
        if self.volatile {
            return Ok(self.storage.apply(&key, &record)?);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Apply { entry: WalEntry { key, record }, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::apply`] for many records, sharing flushes; returns once all
    /// are durable.
    pub async fn apply_many(&self, entries: Vec<(Vec<u8>, Record)>) -> Result<(), StoreError> {
        self.apply_each(entries).await.into_iter().try_for_each(|outcome| outcome.map(|_| ()))
    }

    /// [`Store::apply`] for many records, sharing flushes, with each
    /// record's own outcome.
    pub async fn apply_each(&self, entries: Vec<(Vec<u8>, Record)>) -> Vec<Result<ApplyOutcome, StoreError>> {
        if self.volatile {
            return entries.iter().map(|(key, record)| Ok(self.storage.apply(key, record)?)).collect();
        }
        let mut answers = Vec::with_capacity(entries.len());
        for (key, record) in entries {
            let (reply, answer) = oneshot::channel();
            match self.send(Command::Apply { entry: WalEntry { key, record }, reply }).await {
                Ok(()) => answers.push(Ok(answer)),
                Err(error) => answers.push(Err(error)),
            }
        }
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            outcomes.push(match answer {
                Ok(answer) => answer.await.unwrap_or(Err(StoreError::Closed)),
                Err(error) => Err(error),
            });
        }
        outcomes
    }

    /// Removes each `(key, version)` whose record is still that version.
    pub async fn compact(&self, candidates: Vec<(Vec<u8>, Version)>) -> Result<usize, StoreError> {
        if self.volatile {
            let mut removed = 0;
            for (key, version) in candidates {
                removed += usize::from(self.storage.remove_if_version(&key, version)?);
            }
            return Ok(removed);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Compact { candidates, reply }).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        let sender = self.commands.lock().expect("store lock").clone().ok_or(StoreError::Closed)?;
        sender.send(command).await.map_err(|_| StoreError::Closed)
    }

    /// Stops taking writes, lets the writer finish the queued ones and
    /// checkpoint, and waits for it.
    pub fn shutdown(&self) {
        drop(self.commands.lock().expect("store lock").take());
        if let Some(writer) = self.writer.lock().expect("store lock").take() {
            if writer.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Writer {
    storage: Arc<dyn Storage>,
    wal: Wal,
    /// After a failed log write the disk's state is unknown (fsync errors
    /// are not retryable), so every later write fails too.
    failed: Option<StoreError>,
}

impl Writer {
    fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_WRITES {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.handle_batch(batch);
        }
        if let Err(error) = self.checkpoint() {
            tracing::error!(%error, "final checkpoint failed; the log will be replayed on start");
        }
    }

    fn handle_batch(&mut self, batch: Vec<Command>) {
        let (applies, compactions): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|command| matches!(command, Command::Apply { .. }));
        self.apply_all(applies);
        for command in compactions {
            if let Command::Compact { candidates, reply } = command {
                let _ = reply.send(self.compact(candidates));
            }
        }
        if self.wal.len_bytes() >= CHECKPOINT_BYTES {
            if let Err(error) = self.checkpoint() {
                tracing::error!(%error, "checkpoint failed");
                self.failed = Some(error.into());
            }
        }
    }

    fn apply_all(&mut self, applies: Vec<Command>) {
        let entries: Vec<&WalEntry> = applies
            .iter()
            .map(|command| match command {
                Command::Apply { entry, .. } => entry,
                Command::Compact { .. } => unreachable!("partitioned out"),
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        if self.failed.is_none() {
            if let Err(error) = self.wal.append_batch(&entries) {
                tracing::error!(%error, "write-ahead log write failed; refusing further writes");
                self.failed = Some(error.into());
            }
        }
        for command in applies {
            let Command::Apply { entry, reply } = command else {
                continue;
            };
            let outcome = match &self.failed {
                Some(error) => Err(error.clone()),
                None => self.storage.apply(&entry.key, &entry.record).map_err(StoreError::from),
            };
            let _ = reply.send(outcome);
        }
    }

    fn compact(&mut self, candidates: Vec<(Vec<u8>, Version)>) -> Result<usize, StoreError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.wal.len_bytes() > 0 {
            self.checkpoint()?;
        }
        let mut removed = 0;
        for (key, version) in candidates {
            removed += usize::from(self.storage.remove_if_version(&key, version)?);
        }
        Ok(removed)
    }

    fn checkpoint(&mut self) -> Result<(), StorageError> {
        self.storage.flush()?;
        self.wal.reset()
    }
}
