//! Anti-entropy: replicas compare hash trees of the keys they share and
//! stream the differences, so they converge without client traffic.
//!
//! The tree is flat and wide: [`BUCKETS`] leaves, each the wrapping sum of
//! the digests of (key, version, tombstone) in that bucket, over the keys
//! both replicas own. Sums make a leaf independent of scan order and cheap
//! to compare. One exchange: the initiator sends its leaves; the peer
//! answers with its own leaves and its records in the buckets that differ;
//! the initiator applies what is newer and pushes back what the peer lacks.
//!
//! A dead record (tombstone or expired value) past the grace period is
//! never sent to a replica that lacks the key: compaction removed it there
//! (only once every owner held it), and sending it back would only undo
//! that. It is still sent to a replica holding an older version of the key,
//! which is exactly the replica that missed the delete.

use crate::record::Record;
use crate::ring::hash64;
use crate::storage::{Store, StoreError};
use crate::topology::Topology;
use crate::transport::{Digests, Entry, SyncReply, SyncRequest, Transport};
use std::collections::HashMap;
use std::time::Duration;

pub const BUCKETS: usize = 1024;
/// Records one exchange moves each way; the rest waits for the next round.
pub const MAX_RECORDS_PER_EXCHANGE: usize = 10_000;
/// Bytes of keys and values one exchange moves each way, likewise.
pub const MAX_REPLY_BYTES: usize = 64 << 20;
/// Records read from the store at a time.
pub const SCAN_PAGE: usize = 1024;

/// What one replica knows to decide which keys it shares with a peer.
pub struct View<'a> {
    /// Ownership as this replica saw it when the exchange began.
    pub topology: std::sync::Arc<Topology>,
    pub me: &'a str,
    pub now_ms: u64,
    pub grace_ms: u64,
    /// Records further ahead of `now_ms` are not pulled (`Record::too_far_ahead`).
    pub max_ahead_ms: u64,
    /// Nor records outside the client API's limits.
    pub limits: crate::api::request::Limits,
}

impl View<'_> {
    /// Why `record`, from a peer, a hint or a repair, must not be stored
    /// under `key` here, if it must not: it breaks the client API's limits,
    /// or its version is too far ahead of this node's clock.
    pub fn refusal(&self, key: &[u8], record: &Record) -> Option<String> {
        self.limits.refusal(key, &record.value).or_else(|| record.too_far_ahead(self.now_ms, self.max_ahead_ms))
    }

    /// `entries` without the ones this replica refuses, each logged. They
    /// are dropped, not failed: a hint or a pushed record refused once
    /// would be refused on every retry.
    pub fn admissible(&self, entries: Vec<Entry>) -> Vec<Entry> {
        entries
            .into_iter()
            .filter(|(key, record)| match self.refusal(key, record) {
                None => true,
                Some(reason) => {
                    tracing::warn!(key = %String::from_utf8_lossy(key), %reason, "refused a record from a peer");
                    false
                }
            })
            .collect()
    }
}

pub fn bucket_of(key: &[u8]) -> usize {
    (hash64(key) >> (64 - BUCKETS.trailing_zeros())) as usize
}

fn entry_digest(key: &[u8], record: &Record) -> u64 {
    let mut bytes = Vec::with_capacity(key.len() + 17);
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&record.version.timestamp_ms.to_le_bytes());
    bytes.extend_from_slice(&record.version.tiebreak.to_le_bytes());
    bytes.push(u8::from(record.tombstone));
    hash64(&bytes)
}

impl View<'_> {
    /// Whether this replica and `peer` both own `key`, now or once the
    /// changes under way are done (a joiner converges with its future
    /// co-owners as streaming fills it).
    pub fn shares(&self, key: &[u8], peer: &str) -> bool {
        self.topology.is_owner(key, self.me) && self.topology.is_owner(key, peer)
    }

    /// Whether `record` should replace `held` on a replica: newer, and not a
    /// dead record past grace offered to a replica without the key.
    pub fn should_send(&self, record: &Record, held: Option<&Record>) -> bool {
        match held {
            Some(held) => held.version < record.version,
            None => record.dead_since_ms().is_none_or(|dead| dead.saturating_add(self.grace_ms) > self.now_ms),
        }
    }

    /// The peer's side of an exchange: two passes over `store`.
    pub async fn answer(&self, store: &Store, request: &SyncRequest) -> Result<SyncReply, StoreError> {
        let digests = self.shared_digests(store, &request.from).await?;
        let differ = differing(&digests, &request.digests);
        let mut records = Capped::default();
        self.for_each_shared(store, &request.from, |key, record| {
            if differ[bucket_of(key)] {
                records.offer(key, record);
            }
        })
        .await?;
        Ok(SyncReply { digests, complete: !records.cut, records: records.entries })
    }

    /// The digests of the records this replica shares with `peer`.
    pub async fn shared_digests(&self, store: &Store, peer: &str) -> Result<Digests, StoreError> {
        let mut leaves = vec![0u64; BUCKETS];
        self.for_each_shared(store, peer, |key, record| add_to_leaf(&mut leaves, key, record)).await?;
        Ok(Digests(leaves))
    }

    /// Calls `visit` on every record of `store` that `peer` owns too, a
    /// page at a time, yielding between pages (a page is a short blocking
    /// read).
    async fn for_each_shared(
        &self,
        store: &Store,
        peer: &str,
        mut visit: impl FnMut(&[u8], &Record),
    ) -> Result<(), StoreError> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan_after(after.as_deref(), SCAN_PAGE)?;
            for (key, record) in page.iter().filter(|(key, _)| self.shares(key, peer)) {
                visit(key, record);
            }
            match page.last() {
                Some((last, _)) if page.len() == SCAN_PAGE => after = Some(last.clone()),
                _ => return Ok(()),
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Records collected up to [`MAX_RECORDS_PER_EXCHANGE`] and
/// [`MAX_REPLY_BYTES`]; `cut` once one was left out.
#[derive(Default)]
struct Capped {
    entries: Vec<Entry>,
    bytes: usize,
    cut: bool,
}

impl Capped {
    fn offer(&mut self, key: &[u8], record: &Record) {
        let bytes = crate::record::entry_bytes(key, record);
        if self.entries.len() >= MAX_RECORDS_PER_EXCHANGE || self.bytes + bytes > MAX_REPLY_BYTES {
            self.cut = true;
            return;
        }
        self.bytes += bytes;
        self.entries.push((key.to_vec(), record.clone()));
    }
}

fn add_to_leaf(leaves: &mut [u64], key: &[u8], record: &Record) {
    let leaf = &mut leaves[bucket_of(key)];
    *leaf = leaf.wrapping_add(entry_digest(key, record));
}

fn differing(a: &Digests, b: &Digests) -> Vec<bool> {
    assert_eq!(a.0.len(), BUCKETS, "digest trees have a fixed width");
    a.0.iter().zip(b.0.iter().chain(std::iter::repeat(&u64::MAX))).map(|(x, y)| x != y).collect()
}

/// What one exchange moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub differing_buckets: usize,
    pub pulled: usize,
    pub pushed: usize,
    /// The peer sent every record of every differing bucket (its reply was
    /// not cut at [`MAX_RECORDS_PER_EXCHANGE`]): this replica now holds
    /// everything the peer held, at least as new.
    pub complete: bool,
}

/// The initiator's side of one exchange with `peer`, reading `store` a
/// page at a time.
pub async fn sync_with<T: Transport>(
    transport: &T,
    store: &Store,
    view: &View<'_>,
    peer: &str,
    timeout: Duration,
) -> Result<SyncStats, SyncError> {
    let request = SyncRequest { from: view.me.to_owned(), digests: view.shared_digests(store, peer).await? };
    let reply = tokio::time::timeout(timeout, transport.sync(peer, request.clone()))
        .await
        .map_err(|_| SyncError::Rpc(format!("{peer} did not answer in time")))?
        .map_err(|error| SyncError::Rpc(error.to_string()))?;
    let differ = differing(&request.digests, &reply.digests);
    let mut stats = SyncStats {
        differing_buckets: differ.iter().filter(|d| **d).count(),
        complete: reply.complete,
        ..SyncStats::default()
    };
    if stats.differing_buckets == 0 {
        return Ok(stats);
    }
    let mut pull = Vec::new();
    for (key, record) in &reply.records {
        // The peer chose these by its view; both views must agree (see
        // `Replica::write_batch`).
        if view.shares(key, peer) && view.should_send(record, store.get(key)?.as_ref()) {
            pull.push((key.clone(), record.clone()));
        }
    }
    let theirs: HashMap<&[u8], &Record> = reply.records.iter().map(|(k, r)| (k.as_slice(), r)).collect();
    let mut push = Capped::default();
    view.for_each_shared(store, peer, |key, record| {
        if differ[bucket_of(key)] && view.should_send(record, theirs.get(key).copied()) {
            push.offer(key, record);
        }
    })
    .await?;
    stats.pulled = pull.len();
    stats.pushed = push.entries.len();
    store.apply_many(view.admissible(pull)).await?;
    if !push.entries.is_empty() {
        tokio::time::timeout(timeout, transport.write_batch(peer, view.me, push.entries))
            .await
            .map_err(|_| SyncError::Rpc(format!("{peer} did not take the pushed records in time")))?
            .map_err(|error| SyncError::Rpc(error.to_string()))?;
    }
    Ok(stats)
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("anti-entropy exchange failed: {0}")]
    Rpc(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Membership;
    use crate::version::Version;

    /// The digests of `shared`, as `View::shared_digests` sums them.
    fn digests(shared: &[&Entry]) -> Digests {
        let mut leaves = vec![0u64; BUCKETS];
        for (key, record) in shared {
            add_to_leaf(&mut leaves, key, record);
        }
        Digests(leaves)
    }

    fn entry(key: &str, ms: u64) -> Entry {
        (key.as_bytes().to_vec(), Record::value(Version::new(ms, 0), vec![], None))
    }

    #[test]
    fn digests_ignore_order_and_see_versions() {
        let a = [entry("x", 1), entry("y", 2)];
        let b = [entry("y", 2), entry("x", 1)];
        assert_eq!(digests(&a.iter().collect::<Vec<_>>()), digests(&b.iter().collect::<Vec<_>>()));
        let c = [entry("x", 1), entry("y", 3)];
        let differ = differing(&digests(&a.iter().collect::<Vec<_>>()), &digests(&c.iter().collect::<Vec<_>>()));
        assert_eq!(differ.iter().filter(|d| **d).count(), 1);
        assert!(differ[bucket_of(b"y")]);
    }

    #[test]
    fn old_tombstones_go_only_where_they_shadow_something() {
        let membership = Membership::from_seed_ids("a", &["a".to_owned(), "b".to_owned()], 8, 2);
        let view = View {
            topology: membership.load(),
            me: "a",
            now_ms: 10_000,
            grace_ms: 1_000,
            max_ahead_ms: 600_000,
            limits: Default::default(),
        };
        let (old, recent) = (Record::tombstone(Version::new(8_000, 0)), Record::tombstone(Version::new(9_500, 0)));
        let older_value = Record::value(Version::new(7_000, 0), vec![1], None);
        assert!(!view.should_send(&old, None), "compacted elsewhere: do not bring it back");
        assert!(view.should_send(&old, Some(&older_value)), "the replica that missed the delete gets it");
        assert!(view.should_send(&recent, None));
        assert!(!view.should_send(&older_value, Some(&recent)));
        assert!(view.shares(b"x", "b"), "two nodes, N=2: both own every key");
    }
}
