//! Hinted handoff: writes an owner missed, kept durably until it is back.
//!
//! When a write cannot reach an owner (believed down, failed, timed out),
//! the coordinator keeps a hint: the record, addressed to that owner, in a
//! [`Store`] of its own under `TARGET \0 KEY`, newest version per key. A
//! delivery loop sends hints to owners believed alive and drops delivered
//! ones. Hints never count toward W. Hints older than the tombstone grace
//! period are dropped undelivered: by then anti-entropy has repaired the
//! owner, and a very old write delivered after its tombstone was compacted
//! would resurrect a deleted key.
//!
//! Why a sweep and a byte cap: delivery only looks at owners believed
//! alive, so the hints of an owner that never comes back would stay for
//! ever, and a long outage under write load would fill the disk. A sweep
//! (on the compaction interval) drops every hint past the grace period,
//! whoever it is for, and recounts the bytes kept; past `--max-hint-bytes`
//! new hints are refused (logged; anti-entropy repairs those keys).
//!
//! Why a queue in front of the store: the coordinator must not wait on a
//! disk, nor hold a task per hint, for an owner that missed a write. It
//! offers hints to a [`HintSink`], which never waits; the node's sink is a
//! bounded [`HintQueue`] that one [`HintWriter`] task drains into the
//! store. A full queue refuses the hint (counted and logged): like a hint
//! over the byte cap, it only delays convergence until anti-entropy.

use crate::membership::FailureDetector;
use crate::record::Record;
use crate::storage::{Store, StoreError};
use crate::transport::Transport;
use crate::version::Version;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Hints sent to one owner per delivery round.
const HINTS_PER_ROUND: usize = 1_000;
/// Hints read (and expired hints removed) at a time by a sweep.
const SWEEP_PAGE: usize = 1_000;

pub struct HintStore {
    store: Store,
    max_bytes: u64,
    /// Bytes of hints kept, as counted by the last sweep.
    swept_bytes: AtomicU64,
    /// Bytes of every hint added since the store opened; with
    /// `added_at_sweep`, what was added since the last sweep. The sum is
    /// an upper bound: a hint delivered since is still counted.
    added_bytes: AtomicU64,
    added_at_sweep: AtomicU64,
    /// Hints `add_or_log` could not keep.
    losses: LossWarning,
}

/// How often a failure to keep hints is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A warning about lost hints, at most once per [`WARN_EVERY`] with the
/// count lost since the last one: a full cap or a failed store would
/// otherwise log one line per write (`make soak` saw 700,000 lines in 10
/// minutes).
#[derive(Debug, Default)]
struct LossWarning {
    last_warning: std::sync::Mutex<Option<Instant>>,
    lost_since_warning: AtomicU64,
}

impl LossWarning {
    fn lost(&self, target: &str, error: &dyn std::fmt::Display) {
        let lost = self.lost_since_warning.fetch_add(1, Ordering::AcqRel) + 1;
        let mut last = self.last_warning.lock().expect("hint warning lock");
        let now = crate::clock::monotonic_now();
        if last.is_none_or(|at: Instant| now.saturating_duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            self.lost_since_warning.store(0, Ordering::Release);
            tracing::warn!(%target, %error, lost, "could not keep hints (this many since the last warning)");
        }
    }
}

/// A record an owner missed, addressed to that owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    pub target: String,
    pub key: Vec<u8>,
    pub record: Record,
}

/// Where a coordinator leaves hints. `offer` never waits and does no I/O,
/// so the coordinator stays free of both; whoever drains the sink keeps
/// the hints.
pub trait HintSink: Send + Sync + 'static {
    /// Takes `hint`, or refuses it (full): a refused hint only delays
    /// convergence until anti-entropy.
    fn offer(&self, hint: Hint) -> bool;
}

/// Hints waiting for the [`HintWriter`], bounded in count and in bytes.
pub struct HintQueue {
    sender: mpsc::Sender<Hint>,
    queued_bytes: Arc<AtomicU64>,
    max_bytes: u64,
    losses: LossWarning,
}

/// Drains a [`HintQueue`] into a [`HintStore`].
pub struct HintWriter {
    receiver: mpsc::Receiver<Hint>,
    queued_bytes: Arc<AtomicU64>,
}

/// Hints the writer takes from the queue at a time; they are written
/// concurrently so that they share the store's flushes.
const WRITER_BATCH: usize = 256;

/// A queue of at most `max_hints` hints and `max_bytes` of keys and
/// values, and the writer that drains it.
pub fn hint_queue(max_hints: usize, max_bytes: u64) -> (HintQueue, HintWriter) {
    assert!(max_hints > 0, "a hint queue holds at least one hint");
    let (sender, receiver) = mpsc::channel(max_hints);
    let queued_bytes = Arc::new(AtomicU64::new(0));
    let queue = HintQueue { sender, queued_bytes: queued_bytes.clone(), max_bytes, losses: LossWarning::default() };
    (queue, HintWriter { receiver, queued_bytes })
}

impl HintQueue {
    /// Bytes of keys and values waiting for the writer.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Acquire)
    }
}

impl HintSink for HintQueue {
    fn offer(&self, hint: Hint) -> bool {
        let bytes = hint_bytes(&hint.key, &hint.record);
        let before = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > self.max_bytes {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.losses.lost(&hint.target, &"the hint queue is at its byte bound");
            return false;
        }
        match self.sender.try_send(hint) {
            Ok(()) => true,
            Err(refused) => {
                self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                let (hint, reason) = match refused {
                    mpsc::error::TrySendError::Full(hint) => (hint, "the hint queue is full"),
                    mpsc::error::TrySendError::Closed(hint) => (hint, "the hint writer has stopped"),
                };
                self.losses.lost(&hint.target, &reason);
                false
            }
        }
    }
}

impl HintWriter {
    /// Writes queued hints to `store` until every [`HintQueue`] is gone.
    pub async fn run(mut self, store: Arc<HintStore>) {
        let mut batch = Vec::with_capacity(WRITER_BATCH);
        while self.receiver.recv_many(&mut batch, WRITER_BATCH).await > 0 {
            let bytes: u64 = batch.iter().map(|hint| hint_bytes(&hint.key, &hint.record)).sum();
            let writes = batch.drain(..).map(|hint| {
                let store = &store;
                async move { store.add_or_log(&hint.target, hint.key, hint.record).await }
            });
            futures::future::join_all(writes).await;
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}

/// What one sweep found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub kept: usize,
    pub kept_bytes: u64,
    pub expired: usize,
}

/// The bytes a hint counts for against the store's cap and the queue's bound.
fn hint_bytes(key: &[u8], record: &Record) -> u64 {
    crate::record::entry_bytes(key, record) as u64
}

/// Whether a hint is past `grace`: by then anti-entropy has repaired its
/// owner (see the module comment), so it is dropped undelivered.
fn past_grace(record: &Record, now_ms: u64, grace: Duration) -> bool {
    record.version.timestamp_ms.saturating_add(grace.as_millis() as u64) < now_ms
}

fn hint_key(target: &str, key: &[u8]) -> Vec<u8> {
    let mut hint_key = Vec::with_capacity(target.len() + 1 + key.len());
    hint_key.extend_from_slice(target.as_bytes());
    hint_key.push(0);
    hint_key.extend_from_slice(key);
    hint_key
}

impl HintStore {
    /// Hints in `store`, at most `max_bytes` of them. Until the first
    /// [`HintStore::sweep`] counts them, hints already in the store are
    /// not counted.
    pub fn new(store: Store, max_bytes: u64) -> HintStore {
        let zero = || AtomicU64::new(0);
        HintStore {
            store,
            max_bytes,
            swept_bytes: zero(),
            added_bytes: zero(),
            added_at_sweep: zero(),
            losses: LossWarning::default(),
        }
    }

    /// Bytes of hints kept, at most (see the fields).
    pub fn bytes(&self) -> u64 {
        let added_since = self.added_bytes.load(Ordering::Acquire) - self.added_at_sweep.load(Ordering::Acquire);
        self.swept_bytes.load(Ordering::Acquire).saturating_add(added_since)
    }

    pub async fn add(&self, target: &str, key: Vec<u8>, record: Record) -> Result<(), StoreError> {
        let key = hint_key(target, &key);
        let bytes = hint_bytes(&key, &record);
        if self.bytes().saturating_add(bytes) > self.max_bytes {
            return Err(StoreError::Refused(format!(
                "hints for owners that are down are at --max-hint-bytes ({} bytes)",
                self.max_bytes
            )));
        }
        self.added_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.store.apply(key, record).await.map(|_| ())
    }

    /// Drops every hint written more than `grace` before `now_ms`, for any
    /// owner (alive, down or gone), and recounts the bytes of the rest.
    pub async fn sweep(&self, now_ms: u64, grace: Duration) -> Result<Sweep, StoreError> {
        let added_before = self.added_bytes.load(Ordering::Acquire);
        let mut sweep = Sweep::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.store.scan_after(after.as_deref(), SWEEP_PAGE)?;
            let mut expired = Vec::new();
            for (key, record) in &page {
                if past_grace(record, now_ms, grace) {
                    expired.push((key.clone(), record.version));
                } else {
                    sweep.kept += 1;
                    sweep.kept_bytes += hint_bytes(key, record);
                }
            }
            sweep.expired += expired.len();
            if !expired.is_empty() {
                self.store.compact(expired).await?;
            }
            match page.last() {
                Some((last, _)) if page.len() == SWEEP_PAGE => after = Some(last.clone()),
                _ => break,
            }
        }
        // Hints added during the sweep may or may not have been seen:
        // counting them again keeps the total an upper bound.
        self.swept_bytes.store(sweep.kept_bytes, Ordering::Release);
        self.added_at_sweep.store(added_before, Ordering::Release);
        Ok(sweep)
    }

    /// [`HintStore::add`], logging a failure (rate-limited, see
    /// [`LossWarning`]): a lost hint only delays convergence until
    /// anti-entropy.
    pub async fn add_or_log(&self, target: &str, key: Vec<u8>, record: Record) {
        if let Err(error) = self.add(target, key, record).await {
            self.losses.lost(target, &error);
        }
    }

    /// Up to `limit` hints for `target`: (key, record).
    pub fn pending(&self, target: &str, limit: usize) -> Result<Vec<(Vec<u8>, Record)>, StoreError> {
        let prefix = hint_key(target, b"");
        let mut out = Vec::new();
        // Every hint key of `target` sorts right after the bare target id.
        let mut after = target.as_bytes().to_vec();
        loop {
            let page = self.store.scan_after(Some(&after), 256)?;
            let Some((last, _)) = page.last() else { return Ok(out) };
            after = last.clone();
            for (key, record) in page {
                if !key.starts_with(&prefix) || out.len() == limit {
                    return Ok(out);
                }
                out.push((key[prefix.len()..].to_vec(), record));
            }
        }
    }

    pub async fn remove(&self, target: &str, done: Vec<(Vec<u8>, Version)>) -> Result<usize, StoreError> {
        let hints = done.into_iter().map(|(key, version)| (hint_key(target, &key), version)).collect();
        self.store.compact(hints).await
    }

    /// Hints kept and their files' size (see [`Store::size`]).
    pub fn size(&self) -> crate::storage::Size {
        self.store.size()
    }

    /// See [`Store::shutdown`].
    pub fn shutdown(&self) -> bool {
        self.store.shutdown()
    }
}

/// One delivery round: for each peer believed alive, send its hints and
/// drop the delivered and the expired ones. Returns how many were delivered.
pub async fn deliver_once<T: Transport>(
    hints: &HintStore,
    transport: &T,
    detector: &FailureDetector,
    peers: &[String],
    now_ms: u64,
    grace: Duration,
    rpc_timeout: Duration,
) -> Result<usize, StoreError> {
    let mut delivered = 0;
    for peer in peers {
        if !detector.is_alive(peer, crate::clock::monotonic_now()) {
            continue;
        }
        let mut done = Vec::new();
        for (key, record) in hints.pending(peer, HINTS_PER_ROUND)? {
            if !past_grace(&record, now_ms, grace) {
                match tokio::time::timeout(rpc_timeout, transport.write(peer, &key, &record, crate::replica::UNFENCED))
                    .await
                {
                    Ok(Ok(())) => delivered += 1,
                    _ => break, // it is not back after all; try next round
                }
            }
            done.push((key, record.version));
        }
        if !done.is_empty() {
            hints.remove(peer, done).await?;
        }
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use std::sync::Arc;

    #[tokio::test]
    async fn hints_are_kept_per_target_and_removed_when_delivered() {
        let hints = HintStore::new(Store::volatile(Arc::new(MemoryStorage::new())).unwrap(), 1 << 20);
        let record = |ms| Record::value(Version::new(ms, 0), vec![1], None);
        hints.add("n2", b"a".to_vec(), record(1)).await.unwrap();
        hints.add("n2", b"a".to_vec(), record(3)).await.unwrap();
        hints.add("n2", b"b".to_vec(), record(2)).await.unwrap();
        hints.add("n3", b"a".to_vec(), record(4)).await.unwrap();
        hints.add("n1", b"z".to_vec(), record(5)).await.unwrap();
        let pending = hints.pending("n2", 10).unwrap();
        assert_eq!(pending, vec![(b"a".to_vec(), record(3)), (b"b".to_vec(), record(2))]);
        assert_eq!(hints.pending("n2", 1).unwrap().len(), 1);
        hints.remove("n2", vec![(b"a".to_vec(), Version::new(3, 0))]).await.unwrap();
        assert_eq!(hints.pending("n2", 10).unwrap(), vec![(b"b".to_vec(), record(2))]);
        assert_eq!(hints.pending("n3", 10).unwrap().len(), 1);
        assert_eq!(hints.pending("n4", 10).unwrap(), vec![]);
    }

    /// An owner that never comes back: its hints stop at the cap, and a
    /// sweep drops them once past grace even though no delivery ever
    /// looks at them, after which new hints are taken again.
    #[tokio::test]
    async fn a_dead_owners_hints_stop_at_the_cap_and_expire() {
        let cap = 10 * ("dead\0k00".len() as u64 + 100 + 64);
        let hints = HintStore::new(Store::volatile(Arc::new(MemoryStorage::new())).unwrap(), cap);
        let record = |ms| Record::value(Version::new(ms, 0), vec![7; 100], None);
        let mut refused = 0;
        for i in 0..100 {
            match hints.add("dead", format!("k{i:02}").into_bytes(), record(1_000 + i)).await {
                Ok(()) => {}
                Err(StoreError::Refused(reason)) => {
                    assert!(reason.contains("--max-hint-bytes"), "{reason}");
                    refused += 1;
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!((100 - refused, refused), (10, 90), "exactly what fits under the cap is kept");
        assert!(hints.bytes() <= cap);
        assert_eq!(hints.pending("dead", 1_000).unwrap().len(), 10);
        // Not yet past grace: the sweep keeps them and counts them exactly.
        let grace = Duration::from_secs(60);
        let sweep = hints.sweep(2_000, grace).await.unwrap();
        assert_eq!(sweep, Sweep { kept: 10, kept_bytes: cap, expired: 0 });
        assert!(hints.add("dead", b"k99".to_vec(), record(5_000)).await.is_err(), "still full");
        // Past grace: dropped, though "dead" was never alive to take them.
        let sweep = hints.sweep(1_000 + 60_000 + 100, grace).await.unwrap();
        assert_eq!((sweep.kept, sweep.expired), (0, 10));
        assert_eq!(hints.bytes(), 0);
        assert!(hints.pending("dead", 1_000).unwrap().is_empty());
        hints.add("dead", b"k99".to_vec(), record(70_000)).await.unwrap();
    }

    /// The queue refuses past its count and its byte bound without
    /// waiting, and the writer drains what it took into the store.
    #[tokio::test]
    async fn the_queue_is_bounded_and_the_writer_drains_it() {
        let hint = |i: u64, bytes: usize| Hint {
            target: "n2".into(),
            key: format!("k{i}").into_bytes(),
            record: Record::value(Version::new(i + 1, 0), vec![0; bytes], None),
        };
        let (queue, writer) = hint_queue(3, 1 << 20);
        let taken: Vec<bool> = (0..5).map(|i| queue.offer(hint(i, 10))).collect();
        assert_eq!(taken, [true, true, true, false, false], "three hints fit");
        assert!(queue.queued_bytes() > 0);
        let store = Arc::new(HintStore::new(Store::volatile(Arc::new(MemoryStorage::new())).unwrap(), 1 << 30));
        let writing = tokio::spawn(writer.run(store.clone()));
        drop(queue);
        writing.await.unwrap();
        let kept: Vec<Vec<u8>> = store.pending("n2", 10).unwrap().into_iter().map(|(key, _)| key).collect();
        assert_eq!(kept, [b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec()]);

        let (queue, _writer) = hint_queue(100, 1_000);
        assert!(queue.offer(hint(0, 600)));
        assert!(!queue.offer(hint(1, 600)), "over the byte bound");
        assert!(queue.offer(hint(2, 100)), "a smaller hint still fits");
    }
}
