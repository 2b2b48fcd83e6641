//! Background compaction: drops tombstones and expired values once they are
//! older than the grace period, so that storage does not grow forever.
//!
//! The grace period is what keeps a delete from being undone: a replica
//! that missed the tombstone must be repaired before the tombstone goes.

use crate::clock::Clock;
use crate::storage::{Store, StoreError};
use crate::version::Version;
use std::future::Future;
use std::sync::Arc;

/// Records read per scan page; bounds memory and the time a page blocks.
const PAGE_RECORDS: usize = 1_024;

/// Removes dead records whose death is older than `grace_ms`, one scan
/// page at a time, keeping only those `confirm` returns (the replication
/// layer's check that every other owner has caught up).
pub async fn compact_once<F, Fut>(
    store: &Arc<Store>,
    clock: &Clock,
    grace_ms: u64,
    confirm: F,
) -> Result<usize, StoreError>
where
    F: Fn(Vec<(Vec<u8>, Version)>) -> Fut,
    Fut: Future<Output = Vec<(Vec<u8>, Version)>>,
{
    let mut removed = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_page(after.clone(), PAGE_RECORDS).await?;
        let Some((last_key, _)) = page.last() else { break };
        after = Some(last_key.clone());
        let now_ms = clock.now_ms();
        let candidates: Vec<(Vec<u8>, Version)> = page
            .into_iter()
            .filter(|(_, record)| {
                record.dead_since_ms().is_some_and(|dead_ms| dead_ms.saturating_add(grace_ms) <= now_ms)
            })
            .map(|(key, record)| (key, record.version))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let confirmed = confirm(candidates).await;
        if !confirmed.is_empty() {
            removed += store.compact(confirmed).await?;
        }
    }
    Ok(removed)
}
