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

use super::{ApplyOutcome, Held, Newer, Size, Storage, StorageError, Wal, WalEntry};
use crate::metrics::WalMetrics;
use crate::record::Record;
use crate::version::Version;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    /// Not offered to the store at all: the record broke a rule of the
    /// replica (see `Record::too_far_ahead`).
    #[error("refused: {0}")]
    Refused(String),
}

impl From<StorageError> for StoreError {
    fn from(error: StorageError) -> StoreError {
        StoreError::Failed(Arc::new(error))
    }
}

/// When the log is synced relative to acknowledgements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every batch is on disk before any of its writes is acknowledged.
    EveryBatch,
    /// THE `ack-before-fsync` TEST BUG: batches are acknowledged once
    /// written, and the log is synced on this timer (Cassandra's periodic
    /// commit log).
    Periodic(Duration),
}

/// One write offered to the store: stored if `newer` admits it over the
/// held record, and, over nothing held, only if its version is from
/// `fresh_from_ms` on ([`ApplyOutcome::TooOld`] otherwise; 0: any).
#[derive(Clone, Debug)]
pub struct Write {
    pub key: Vec<u8>,
    pub record: Record,
    pub newer: Newer,
    /// See `Replica::fresh_from_ms` on why a replica sets it.
    pub fresh_from_ms: u64,
}

impl Write {
    /// A replica's usual write: newer version wins.
    pub fn newer_version(key: Vec<u8>, record: Record) -> Write {
        Write { key, record, newer: Newer::Version, fresh_from_ms: 0 }
    }
}

/// Whether a record of `version` is too old to be stored over `held`
/// (`Write::fresh_from_ms`): only over nothing held can it be.
fn too_old_over(held: Option<Version>, version: Version, fresh_from_ms: u64) -> bool {
    held.is_none() && version.timestamp_ms < fresh_from_ms
}

/// Logs a write refused as too old, at most once per [`TOO_OLD_LOG_EVERY`]
/// with the count since the last line. Why log: a refusal is a late write
/// caught (the mechanism behind a resurrection the fault suite once found),
/// or a clock lagging by more than the grace; either is worth a line, but
/// the second refuses every new key's put, so the lines are bounded.
fn note_too_old(key: &[u8], version: Version, fresh_from_ms: u64) {
    // When the last line was written, and the refusals since.
    static LOGGED: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));
    let mut logged = LOGGED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    logged.1 += 1;
    if logged.0.is_some_and(|at| at.elapsed() < TOO_OLD_LOG_EVERY) {
        return;
    }
    let refused = std::mem::replace(&mut *logged, (Some(Instant::now()), 0)).1;
    let behind_ms = fresh_from_ms.saturating_sub(version.timestamp_ms);
    let key = String::from_utf8_lossy(&key[..key.len().min(64)]);
    tracing::info!(%key, version_ms = version.timestamp_ms, behind_ms, refused, "refused a write older than the grace period over nothing held (a late write, or a lagging clock)");
}

/// See [`note_too_old`].
const TOO_OLD_LOG_EVERY: Duration = Duration::from_secs(1);

enum Command {
    Apply(Pending),
    Compact {
        candidates: Vec<(Vec<u8>, Version)>,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    /// Sync the log now (the periodic policy's timer).
    Sync,
}

/// A record too large for one log frame is refused here, before the writer
/// thread sees it (which asserts that every frame fits): one oversized
/// record from a peer must fail alone, not stop the store.
fn fits_the_log(key: &[u8], record: &Record) -> Result<(), StoreError> {
    let bytes = super::wal::payload_bytes(key, record);
    match bytes <= super::wal::MAX_PAYLOAD_BYTES {
        true => Ok(()),
        false => Err(StoreError::Refused(format!(
            "a record of {bytes} bytes is over the log's {} MiB frame limit",
            super::wal::MAX_PAYLOAD_BYTES >> 20
        ))),
    }
}

/// A replica's storage with durable writes.
pub struct Store {
    storage: Arc<dyn Storage>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    volatile: bool,
    /// Set by the writer once a log write, sync or checkpoint failed: the
    /// files may not hold what was acknowledged.
    damaged: Arc<AtomicBool>,
    /// What failed, for `/health`.
    failure: Arc<Mutex<Option<String>>>,
    /// What replaying the log had to skip at open (see `wal::Damage`).
    log_damage: Option<String>,
}

impl Store {
    /// Replays the log in `wal_dir` into `storage`, checkpoints, and starts
    /// the writer thread (whose group commits no registry reads).
    pub fn open(storage: Arc<dyn Storage>, wal_dir: &Path) -> Result<Store, StorageError> {
        Store::open_with(storage, wal_dir, SyncPolicy::EveryBatch, WalMetrics::unregistered())
    }

    /// [`Store::open`] with a chosen [`SyncPolicy`], the writer recording
    /// each group commit in `metrics`.
    pub fn open_with(
        storage: Arc<dyn Storage>,
        wal_dir: &Path,
        policy: SyncPolicy,
        metrics: WalMetrics,
    ) -> Result<Store, StorageError> {
        let (mut wal, replayed) = Wal::open(wal_dir)?;
        let log_damage = wal.damage().map(ToString::to_string);
        let replayed_count = replayed.len();
        for entry in &replayed {
            storage.apply(&entry.key, &entry.record)?;
        }
        storage.flush()?;
        wal.reset()?;
        tracing::info!(replayed_count, wal = %wal.path().display(), "write-ahead log replayed");
        let mut store = Store::start(storage, wal, policy, metrics)?;
        store.log_damage = log_damage;
        Ok(store)
    }

    /// A store without a log or writer thread, for memory storage: writes
    /// apply inline and are lost with the process, by choice. (Inline, so
    /// tests on tokio's paused clock never wait on another thread.)
    pub fn volatile(storage: Arc<dyn Storage>) -> Result<Store, StorageError> {
        let damaged = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let (commands, writer) = (Mutex::new(None), Mutex::new(None));
        Ok(Store { storage, commands, writer, volatile: true, damaged, failure, log_damage: None })
    }

    fn start(
        storage: Arc<dyn Storage>,
        wal: Wal,
        policy: SyncPolicy,
        metrics: WalMetrics,
    ) -> Result<Store, StorageError> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let damaged = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let writer = Writer {
            storage: storage.clone(),
            wal,
            failed: None,
            sync_each_batch: policy == SyncPolicy::EveryBatch,
            damaged: damaged.clone(),
            failure: failure.clone(),
            metrics,
        };
        let writer = std::thread::Builder::new().name("store-writer".into()).spawn(move || writer.run(receiver))?;
        if let SyncPolicy::Periodic(every) = policy {
            spawn_sync_timer(sender.clone(), every)?;
        }
        let (commands, writer) = (Mutex::new(Some(sender)), Mutex::new(Some(writer)));
        Ok(Store { storage, commands, writer, volatile: false, damaged, failure, log_damage: None })
    }

    /// Why this store takes no more writes, if it does not: a log write,
    /// sync or checkpoint failed (the disk's state is unknown until a
    /// restart replays the log), or the writer thread is gone. `/health`
    /// answers 503 with it.
    pub fn failure(&self) -> Option<String> {
        if let Some(reason) = self.failure.lock().expect("store lock").clone() {
            return Some(reason);
        }
        let writer = self.writer.lock().expect("store lock");
        let gone = writer.as_ref().is_some_and(std::thread::JoinHandle::is_finished);
        gone.then(|| "the store's writer thread is gone; writes are refused".to_owned())
    }

    /// What replaying the log skipped when the store was opened, if
    /// anything: writes it acknowledged may be missing, and the node must
    /// recover them from its peers (the damaged log was kept aside).
    pub fn log_damage(&self) -> Option<&str> {
        self.log_damage.as_deref()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        Ok(self.storage.get(key)?)
    }

    /// See [`Storage::size`]: cheap, for the node's metrics.
    pub fn size(&self) -> Size {
        self.storage.size()
    }

    pub fn scan_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Record)>, StoreError> {
        Ok(self.storage.scan_after(after, limit)?)
    }

    /// [`Store::scan_after`] off the async threads (a scan of a disk store
    /// may block). A volatile store scans inline, as it applies inline, so
    /// that a simulation on tokio's paused clock never waits on a thread.
    pub async fn scan_page(
        self: &Arc<Self>,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Record)>, StoreError> {
        if self.volatile {
            return self.scan_after(after.as_deref(), limit);
        }
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.scan_after(after.as_deref(), limit)).await {
            Ok(page) => page,
            Err(error) => panic!("a store scan panicked: {error}"),
        }
    }

    /// Applies `record` if newer than the held version; returns once durable.
    pub async fn apply(&self, key: Vec<u8>, record: Record) -> Result<ApplyOutcome, StoreError> {
        self.apply_one(Write::newer_version(key, record)).await
    }

    /// One write, by its own rules; returns once durable. `Stale` and
    /// `TooOld`: nothing was stored (nor logged: a crash cannot store it
    /// later).
    pub async fn apply_one(&self, write: Write) -> Result<ApplyOutcome, StoreError> {
        fits_the_log(&write.key, &write.record)?;
        if self.volatile {
            return self.apply_inline(&write);
        }
        let (reply, answer) = oneshot::channel();
        let Write { key, record, newer, fresh_from_ms } = write;
        self.send(Command::Apply(Pending { entry: WalEntry { key, record }, newer, fresh_from_ms, reply })).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// A volatile store's write: applied at once, in the caller's thread.
    /// (Unlike the writer thread's decision, the age check and the apply
    /// are two steps here: volatile stores serve tests and simulations.)
    fn apply_inline(&self, write: &Write) -> Result<ApplyOutcome, StoreError> {
        let held = self.storage.read_held(&write.key)?;
        if too_old_over(held.version, write.record.version, write.fresh_from_ms) {
            note_too_old(&write.key, write.record.version, write.fresh_from_ms);
            return Ok(ApplyOutcome::TooOld);
        }
        Ok(self.storage.apply_over(&write.key, &held, &write.record, write.newer)?)
    }

    /// [`Store::apply`] for many records, sharing flushes; returns once all
    /// are durable.
    pub async fn apply_many(&self, entries: Vec<(Vec<u8>, Record)>) -> Result<(), StoreError> {
        let writes = entries.into_iter().map(|(key, record)| Write::newer_version(key, record)).collect();
        self.apply_each(writes).await.into_iter().try_for_each(|outcome| outcome.map(|_| ()))
    }

    /// Many writes sharing flushes, with each one's own outcome.
    pub async fn apply_each(&self, writes: Vec<Write>) -> Vec<Result<ApplyOutcome, StoreError>> {
        if self.volatile {
            return writes.iter().map(|write| self.apply_inline(write)).collect();
        }
        let mut answers = Vec::with_capacity(writes.len());
        for Write { key, record, newer, fresh_from_ms } in writes {
            if let Err(error) = fits_the_log(&key, &record) {
                answers.push(Err(error));
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let command = Command::Apply(Pending { entry: WalEntry { key, record }, newer, fresh_from_ms, reply });
            match self.send(command).await {
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
    /// checkpoint, and waits for it. True when everything it ever
    /// acknowledged is in its files (no write, sync or checkpoint failed).
    pub fn shutdown(&self) -> bool {
        drop(self.commands.lock().expect("store lock").take());
        if let Some(writer) = self.writer.lock().expect("store lock").take() {
            if writer.join().is_err() {
                tracing::error!("store writer thread panicked");
                self.damaged.store(true, Ordering::Relaxed);
            }
        }
        !self.volatile && !self.damaged.load(Ordering::Relaxed)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Asks the writer to sync the log every `every`, until the store closes.
fn spawn_sync_timer(commands: mpsc::Sender<Command>, every: Duration) -> Result<(), StorageError> {
    std::thread::Builder::new().name("store-sync-timer".into()).spawn(move || loop {
        std::thread::sleep(every);
        if commands.blocking_send(Command::Sync).is_err() {
            return;
        }
    })?;
    Ok(())
}

type Reply = oneshot::Sender<Result<ApplyOutcome, StoreError>>;

/// What [`Writer::decide`] made of one write.
enum Decision {
    /// Answered without logging: stale, or the key could not be read.
    Done(Result<ApplyOutcome, StoreError>),
    /// To be stored over the record read (or, for the batch's second write
    /// of a key, over its first: `apply_over` finds the key changed and
    /// reads it again).
    Write(Held),
}

/// A write waiting in the writer thread's batch.
struct Pending {
    entry: WalEntry,
    newer: Newer,
    fresh_from_ms: u64,
    reply: Reply,
}

struct Writer {
    storage: Arc<dyn Storage>,
    wal: Wal,
    /// After a failed log write the disk's state is unknown (fsync errors
    /// are not retryable), so every later write fails too.
    failed: Option<StoreError>,
    /// False only under the `ack-before-fsync` test bug.
    sync_each_batch: bool,
    damaged: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
    metrics: WalMetrics,
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
        let checkpointed = match &self.failed {
            Some(_) => Err("the store had failed".to_owned()),
            None => self.checkpoint().map_err(|error| error.to_string()),
        };
        if let Err(error) = checkpointed {
            tracing::error!(%error, "no final checkpoint; the log will be replayed on start");
            self.damaged.store(true, Ordering::Relaxed);
        }
    }

    fn fail(&mut self, error: StoreError) {
        self.damaged.store(true, Ordering::Relaxed);
        let reason = format!("{error}; writes are refused until a restart replays the log");
        *self.failure.lock().expect("store lock") = Some(reason);
        self.failed = Some(error);
    }

    fn handle_batch(&mut self, batch: Vec<Command>) {
        let (applies, others): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|command| matches!(command, Command::Apply(_)));
        self.apply_all(applies);
        for command in others {
            match command {
                Command::Compact { candidates, reply } => {
                    let _ = reply.send(self.compact(candidates));
                }
                Command::Sync if self.failed.is_none() => {
                    let syncing = Instant::now();
                    match self.wal.sync() {
                        Ok(()) => self.metrics.fsync_seconds.observe(syncing.elapsed().as_secs_f64()),
                        Err(error) => {
                            tracing::error!(%error, "periodic log sync failed; refusing further writes");
                            self.fail(error.into());
                        }
                    }
                }
                Command::Sync | Command::Apply(_) => {}
            }
        }
        // Never after a failure: a later flush that "succeeds" would empty
        // the log of writes the files may never have got (see `compact`).
        if self.failed.is_none() && self.wal.len_bytes() >= CHECKPOINT_BYTES {
            if let Err(error) = self.checkpoint() {
                tracing::error!(%error, "checkpoint failed");
                self.fail(error.into());
            }
        }
    }

    /// Decides on every write of the batch, logs those admitted (one sync),
    /// then applies them and answers each.
    ///
    /// The decision comes before the log, not in the apply after it: a
    /// write refused by [`Newer::Millisecond`] was answered "not stored",
    /// and replaying it after a crash would store it. Deciding here reads
    /// each key once (`read_held`), and the apply reuses that read; this
    /// is sound because this thread is the only one that changes keys.
    fn apply_all(&mut self, applies: Vec<Command>) {
        let pending: Vec<Pending> = applies
            .into_iter()
            .filter_map(|command| match command {
                Command::Apply(pending) => Some(pending),
                Command::Compact { .. } | Command::Sync => None,
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        let decisions = match &self.failed {
            Some(error) => pending.iter().map(|_| Decision::Done(Err(error.clone()))).collect(),
            None => self.decide(&pending),
        };
        let admitted: Vec<&WalEntry> = pending
            .iter()
            .zip(&decisions)
            .filter(|(_, decision)| matches!(decision, Decision::Write(_)))
            .map(|(write, _)| &write.entry)
            .collect();
        if !admitted.is_empty() {
            self.log(&admitted);
        }
        for (write, decision) in pending.into_iter().zip(decisions) {
            let _ = write.reply.send(self.finish(&write.entry, write.newer, decision));
        }
    }

    /// Whether each write is stale, too old, or to be stored. A key written
    /// twice in one batch is decided against the batch's own earlier write.
    fn decide(&self, pending: &[Pending]) -> Vec<Decision> {
        let mut written: HashMap<&[u8], Version> = HashMap::new();
        let mut decisions = Vec::with_capacity(pending.len());
        for Pending { entry, newer, fresh_from_ms, .. } in pending {
            let held = match self.storage.read_held(&entry.key) {
                Ok(held) => held,
                Err(error) => {
                    decisions.push(Decision::Done(Err(error.into())));
                    continue;
                }
            };
            let newest = held.version.max(written.get(entry.key.as_slice()).copied());
            if too_old_over(newest, entry.record.version, *fresh_from_ms) {
                note_too_old(&entry.key, entry.record.version, *fresh_from_ms);
                decisions.push(Decision::Done(Ok(ApplyOutcome::TooOld)));
            } else if newer.admits(newest, entry.record.version) {
                written.insert(&entry.key, entry.record.version);
                decisions.push(Decision::Write(held));
            } else {
                decisions.push(Decision::Done(Ok(ApplyOutcome::Stale)));
            }
        }
        decisions
    }

    /// Appends the admitted writes to the log (and syncs, but under the
    /// `ack-before-fsync` bug); a failure fails the store.
    fn log(&mut self, admitted: &[&WalEntry]) {
        let logged = match self.sync_each_batch {
            true => self.wal.append_batch(admitted).map(Some),
            false => self.wal.append_batch_unsynced(admitted).map(|()| None),
        };
        match logged {
            Ok(synced_in) => {
                self.metrics.batch_records.observe(admitted.len() as f64);
                if let Some(synced_in) = synced_in {
                    self.metrics.fsync_seconds.observe(synced_in.as_secs_f64());
                }
            }
            Err(error) => {
                tracing::error!(%error, "write-ahead log write failed; refusing further writes");
                self.fail(error.into());
            }
        }
    }

    fn finish(&self, entry: &WalEntry, newer: Newer, decision: Decision) -> Result<ApplyOutcome, StoreError> {
        let held = match decision {
            Decision::Done(outcome) => return outcome,
            Decision::Write(held) => held,
        };
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let outcome = self.storage.apply_over(&entry.key, &held, &entry.record, newer)?;
        // Decided as newer than everything before it, and no one else
        // changes keys: a logged write that is not applied would be
        // applied by a replay.
        assert_eq!(outcome, ApplyOutcome::Applied, "a write decided as newer was not applied: another writer?");
        Ok(outcome)
    }

    fn compact(&mut self, candidates: Vec<(Vec<u8>, Version)>) -> Result<usize, StoreError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.wal.len_bytes() > 0 {
            // A failed flush fails the store, as everywhere else: after an
            // fsync error the kernel may have dropped the dirty pages, and a
            // later flush that "succeeds" would let the log be emptied of
            // writes the files never got.
            if let Err(error) = self.checkpoint() {
                tracing::error!(%error, "checkpoint before compaction failed; refusing further writes");
                let error = StoreError::from(error);
                self.fail(error.clone());
                return Err(error);
            }
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
