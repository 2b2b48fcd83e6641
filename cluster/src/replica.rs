//! This node as a replica: what the internal RPCs (and the local shortcut of
//! the transport) do to its own storage, without coordination.

use crate::antientropy::View;
use crate::api::request::Limits;
use crate::clock::Clock;
use crate::record::Record;
use crate::recovery::Recovery;
use crate::storage::{Store, StoreError};
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
        Ok(self.store.apply(key, record).await.map(|_| ())?)
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
