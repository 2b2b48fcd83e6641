//! This node as a replica: what the internal RPCs (and the local shortcut of
//! the transport) do to its own storage, without coordination.

use crate::antientropy::View;
use crate::api::request::Limits;
use crate::clock::Clock;
use crate::record::Record;
use crate::recovery::Recovery;
use crate::storage::{ApplyOutcome, Newer, Store, StoreError, Write};
use crate::topology::Membership;
use crate::transport::{Entry, SyncReply, SyncRequest};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// See [`crate::recovery`]: answering now could hide a lost write.
    #[error("recovering after an unclean stop: no reads of this key before an exchange with {0:?}")]
    Recovering(Vec<String>),
    /// See [`crate::topology`]: the caller places this key elsewhere.
    #[error("stale view: this replica places the key differently")]
    StaleView,
}

/// What a coordinator's call carries to say "not fenced": repairs, hints
/// and eventual reads, which are safe in any view.
pub const UNFENCED: u64 = 0;

/// Why a write was refused over nothing held: see [`Replica::fresh_from_ms`].
pub const TOO_OLD: &str = "older than the tombstone grace period, over nothing held: it may be a write abandoned \
    and delivered late, after a newer delete was compacted";

pub struct Replica {
    pub node_id: String,
    pub store: Arc<Store>,
    /// Who owns what; shared with the coordinator, changed by gossip.
    pub membership: Arc<Membership>,
    pub clock: Arc<Clock>,
    pub grace_ms: u64,
    pub recovery: Recovery,
    /// See [`Record::too_far_ahead`].
    pub max_ahead_ms: u64,
    /// What a client's put may store; a peer's record may store no more.
    pub limits: Limits,
}

impl Replica {
    /// The record this replica holds for `key`, for a coordinator: refused
    /// while recovering from the key's other owners, and when `fence` is
    /// not this replica's placement of the key.
    pub fn read(&self, key: &[u8], fence: u64) -> Result<Option<Record>, ReplicaError> {
        self.check_fence(key, fence)?;
        let blocking = self.recovery.blocking(key);
        if !blocking.is_empty() {
            return Err(ReplicaError::Recovering(blocking));
        }
        Ok(self.store.get(key)?)
    }

    /// See [`View::refusal`].
    pub fn refusal(&self, key: &[u8], record: &Record) -> Option<String> {
        self.view().refusal(key, record)
    }

    /// Applies `record` once durable. An unfenced write (a hint, a repair)
    /// of a key this replica does not own is dropped: a non-owner must hold
    /// no copy (see [`crate::handoff`] on why stale copies are dangerous),
    /// and the key's owners took the write when it was made.
    pub async fn write(&self, key: Vec<u8>, record: Record, fence: u64) -> Result<(), ReplicaError> {
        self.check_fence(&key, fence)?;
        if fence == UNFENCED && !self.membership.load().is_owner(&key, &self.node_id) {
            tracing::debug!(key = %String::from_utf8_lossy(&key), "dropped a write of a key this replica does not own");
            return Ok(());
        }
        if let Some(reason) = self.refusal(&key, &record) {
            return Err(StoreError::Refused(reason).into());
        }
        let write = Write { key, record, newer: Newer::Version, fresh_from_ms: self.fresh_from_ms() };
        match self.store.apply_one(write).await? {
            ApplyOutcome::TooOld => Err(StoreError::Refused(TOO_OLD.to_owned()).into()),
            ApplyOutcome::Applied | ApplyOutcome::Stale => Ok(()),
        }
    }

    /// Over nothing held, a coordinator's write (a put's round, a
    /// write-back, a repair, a hint) is stored only if its version is from
    /// this millisecond on: older than the tombstone grace period by this
    /// replica's clock, it may be a write that was abandoned (its caller
    /// timed out, a partition held it in a TCP send queue) and delivered
    /// after the newer tombstone that had replaced it was compacted here:
    /// storing it would bring a deleted key back. Compaction uses this
    /// same clock and grace (`dead_since + grace <= now`), and a tombstone
    /// dies no earlier than its version, so every write it replaced is
    /// past this floor by then. Anti-entropy and handoffs are not held to
    /// it (a new owner's first fill is old records over nothing): they
    /// take only from owners, which confirmed the tombstone before it was
    /// compacted. That does not cover a handoff page sent before the
    /// confirmation and delivered late, after the compaction: a known hole
    /// (the membership simulation shows it under another schedule; closing
    /// it needs a bound on how late any request is served).
    pub fn fresh_from_ms(&self) -> u64 {
        self.clock.now_ms().saturating_sub(self.grace_ms)
    }

    /// A coordinator's one-round put ([`crate::coordinator`]): applies
    /// `record` and answers true only if its timestamp was later than
    /// everything this replica held, which the coordinator takes as
    /// evidence that no write acknowledged here had one as late. False
    /// without applying when it held one as late or later, and while the
    /// replica is recovering: a lost write would make that evidence a lie.
    pub async fn write_newest(&self, key: Vec<u8>, record: Record, fence: u64) -> Result<bool, ReplicaError> {
        if !self.may_vouch(&key, &record, fence)? {
            return Ok(false);
        }
        let write = Write { key, record, newer: Newer::Millisecond, fresh_from_ms: self.fresh_from_ms() };
        Ok(self.store.apply_one(write).await? == ApplyOutcome::Applied)
    }

    /// Whether a [`Replica::write_newest`] of `record` may be offered to
    /// the store, which then stores it only if it is the newest by the
    /// millisecond ([`Store::apply_newest`]); false: answer "not newest"
    /// without storing. Or the refusal of a stale view or an inadmissible
    /// record.
    pub fn may_vouch(&self, key: &[u8], record: &Record, fence: u64) -> Result<bool, ReplicaError> {
        self.check_fence(key, fence)?;
        if fence == UNFENCED || !self.recovery.blocking(key).is_empty() {
            return Ok(false);
        }
        if let Some(reason) = self.refusal(key, record) {
            return Err(StoreError::Refused(reason).into());
        }
        Ok(true)
    }

    /// See [`crate::topology`] for why a replica refuses a call from a
    /// coordinator that places the key elsewhere.
    pub fn check_fence(&self, key: &[u8], fence: u64) -> Result<(), ReplicaError> {
        if fence == UNFENCED || self.membership.load().fence(key) == fence {
            return Ok(());
        }
        Err(ReplicaError::StaleView)
    }

    /// Stores every entry it may ([`View::admissible`]) of a key that both
    /// this replica and `from` own (now or next) in this replica's view.
    ///
    /// Why the sender must be an owner: these batches are repairs and
    /// handoffs, which carry old records. A node that no longer owns a key
    /// may hold a copy older than a tombstone the owners have since
    /// compacted; taken from it, that copy would come back to life. Only
    /// owners are asked before a tombstone is compacted.
    pub async fn write_batch(&self, entries: Vec<Entry>, from: &str) -> Result<(), StoreError> {
        let topology = self.membership.load();
        let (owned, foreign): (Vec<Entry>, Vec<Entry>) = entries
            .into_iter()
            .partition(|(key, _)| topology.is_owner(key, from) && topology.is_owner(key, &self.node_id));
        if !foreign.is_empty() {
            tracing::debug!(%from, refused = foreign.len(), "refused records of keys the sender or this replica \
                does not own");
        }
        self.store.apply_many(self.view().admissible(owned)).await
    }

    pub fn view(&self) -> View<'_> {
        View {
            topology: self.membership.load(),
            me: &self.node_id,
            now_ms: self.clock.now_ms(),
            grace_ms: self.grace_ms,
            max_ahead_ms: self.max_ahead_ms,
            limits: self.limits,
        }
    }

    pub async fn answer_sync(&self, request: &SyncRequest) -> Result<SyncReply, StoreError> {
        self.view().answer(&self.store, request).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use crate::version::Version;

    /// Replica "a" of three, memory storage, a 60 s grace period.
    pub(crate) fn replica(recovery: impl FnOnce(Arc<Membership>) -> Recovery) -> Replica {
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let membership = Arc::new(Membership::from_seed_ids("a", &ids, 8, 3));
        Replica {
            node_id: "a".into(),
            store: Arc::new(Store::volatile(Arc::new(MemoryStorage::new())).expect("a memory store")),
            recovery: recovery(membership.clone()),
            membership,
            clock: Arc::new(Clock::new()),
            grace_ms: 60_000,
            max_ahead_ms: 600_000,
            limits: Limits::default(),
        }
    }

    /// A record `ms` after this test process's first clock reading: recent,
    /// so that it is not too old to store over nothing held.
    fn at(ms: u64) -> Record {
        static BASE_MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let base_ms = *BASE_MS.get_or_init(|| Clock::new().now_ms());
        Record::value(Version::new(base_ms + ms, 1), b"v".to_vec(), None)
    }

    /// A write abandoned by its caller and delivered late: a tombstone
    /// newer than it was compacted here meanwhile, so the replica holds
    /// nothing for the key. Stored, it would bring the deleted key back;
    /// older than the grace period, it is refused, by either kind of
    /// write, while a recent one over nothing is stored as ever.
    #[tokio::test]
    async fn a_write_older_than_the_grace_period_is_refused_over_nothing_held() {
        let replica = replica(Recovery::done);
        let (key, fence) = (b"k".to_vec(), replica.membership.load().fence(b"k"));
        let now_ms = replica.clock.now_ms();
        let late = Record::value(Version::new(now_ms - replica.grace_ms - 1_000, 1), b"late".to_vec(), None);
        let tombstone = Record::tombstone(Version::new(now_ms - replica.grace_ms - 500, 1));
        // Stored when it was recent; now past the grace period, compacted.
        replica.store.apply(key.clone(), tombstone.clone()).await.expect("stored");
        let compacted = replica.store.compact(vec![(key.clone(), tombstone.version)]).await.expect("compacted");
        assert_eq!(compacted, 1);
        let refused = replica.write(key.clone(), late.clone(), fence).await;
        assert!(matches!(refused, Err(ReplicaError::Store(StoreError::Refused(_)))), "{refused:?}");
        assert_eq!(replica.write_newest(key.clone(), late, fence).await.ok(), Some(false));
        assert_eq!(replica.store.get(&key).ok().flatten(), None, "the deleted key stays deleted");
        assert!(replica.write(key.clone(), at(0), fence).await.is_ok(), "a recent write over nothing is stored");
        assert_eq!(replica.store.get(&key).ok().flatten(), Some(at(0)));
    }

    /// A one-round put's ack is evidence that no acknowledged write here
    /// was newer: given only when the record was the newest, by a whole
    /// millisecond.
    #[tokio::test]
    async fn a_replica_vouches_only_for_a_version_newer_than_all_it_holds() {
        let replica = replica(Recovery::done);
        let (key, fence) = (b"k".to_vec(), replica.membership.load().fence(b"k"));
        assert_eq!(replica.write_newest(key.clone(), at(2_000), fence).await.ok(), Some(true));
        assert_eq!(replica.write_newest(key.clone(), at(1_000), fence).await.ok(), Some(false), "older");
        assert_eq!(replica.write_newest(key.clone(), at(2_000), fence).await.ok(), Some(false), "the same");
        let same_ms = Record::value(Version::new(at(2_000).version.timestamp_ms, 7), b"w".to_vec(), None);
        assert_eq!(replica.write_newest(key.clone(), same_ms, fence).await.ok(), Some(false), "the same ms");
        assert_eq!(replica.store.get(&key).ok().flatten().map(|r| r.version), Some(at(2_000).version));
        assert!(matches!(replica.write_newest(key.clone(), at(3_000), fence ^ 1).await, Err(ReplicaError::StaleView)));
        assert_eq!(replica.write_newest(key, at(3_000), UNFENCED).await.ok(), Some(false), "unfenced: no evidence");
    }

    /// A replica that may have lost writes (an unclean stop) does not
    /// vouch, nor store, until it has exchanged with the key's co-owners.
    #[tokio::test]
    async fn a_recovering_replica_does_not_vouch() {
        let replica = replica(Recovery::from_all_peers);
        let (key, fence) = (b"k".to_vec(), replica.membership.load().fence(b"k"));
        assert_eq!(replica.write_newest(key.clone(), at(2_000), fence).await.ok(), Some(false));
        assert_eq!(replica.store.get(&key).ok().flatten(), None, "nothing stored");
        replica.recovery.exchanged_with("b");
        replica.recovery.exchanged_with("c");
        assert_eq!(replica.write_newest(key, at(2_000), fence).await.ok(), Some(true));
    }
}
