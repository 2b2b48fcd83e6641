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

use crate::coordinator::Transport;
use crate::membership::FailureDetector;
use crate::record::Record;
use crate::storage::{Store, StoreError};
use crate::version::Version;
use std::time::{Duration, Instant};

/// Hints sent to one owner per delivery round.
const HINTS_PER_ROUND: usize = 1_000;

pub struct HintStore {
    store: Store,
}

fn hint_key(target: &str, key: &[u8]) -> Vec<u8> {
    let mut hint_key = Vec::with_capacity(target.len() + 1 + key.len());
    hint_key.extend_from_slice(target.as_bytes());
    hint_key.push(0);
    hint_key.extend_from_slice(key);
    hint_key
}

impl HintStore {
    pub fn new(store: Store) -> HintStore {
        HintStore { store }
    }

    pub async fn add(&self, target: &str, key: Vec<u8>, record: Record) -> Result<(), StoreError> {
        self.store.apply(hint_key(target, &key), record).await.map(|_| ())
    }

    /// [`HintStore::add`], logging a failure: a lost hint only delays
    /// convergence until anti-entropy.
    pub async fn add_or_log(&self, target: &str, key: Vec<u8>, record: Record) {
        if let Err(error) = self.add(target, key, record).await {
            tracing::warn!(%target, %error, "could not keep a hint");
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
        if !detector.is_alive(peer, Instant::now()) {
            continue;
        }
        let mut done = Vec::new();
        for (key, record) in hints.pending(peer, HINTS_PER_ROUND)? {
            let expired = record.version.timestamp_ms.saturating_add(grace.as_millis() as u64) < now_ms;
            if !expired {
                match tokio::time::timeout(rpc_timeout, transport.write(peer, &key, &record)).await {
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
        let hints = HintStore::new(Store::volatile(Arc::new(MemoryStorage::new())).unwrap());
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
}
