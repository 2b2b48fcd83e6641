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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::{random_record, temp_dir};
    use crate::storage::{MemoryStorage, SledStorage};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    /// Random records under many keys, compacted at a random "now": live values
    /// always stay, records dead for longer than the grace period go, records
    /// dead for less stay. Same on both storages.
    #[tokio::test]
    async fn compaction_drops_only_records_dead_past_the_grace_period() {
        for (name, sled) in [("memory", false), ("sled", true)] {
            for seed in 0..20 {
                let dir = temp_dir(&format!("compact-prop-{name}-{seed}"));
                let store = if sled {
                    Store::open(Arc::new(SledStorage::open(&dir.join("sled"), 8 << 20).unwrap()), &dir.join("wal"))
                        .unwrap()
                } else {
                    Store::volatile(Arc::new(MemoryStorage::new())).unwrap()
                };
                let store = Arc::new(store);
                let mut rng = StdRng::seed_from_u64(seed);
                let mut expected = BTreeMap::new();
                for i in 0..300u32 {
                    let key = format!("k{i:04}").into_bytes();
                    // Seconds apart, so the milliseconds the test itself takes
                    // cannot move a record across the boundary.
                    let mut record = random_record(&mut rng);
                    record.version.timestamp_ms *= 1000;
                    record.expires_at_ms = record.expires_at_ms.map(|ms| ms * 1000);
                    store.apply(key.clone(), record.clone()).await.unwrap();
                    expected.insert(key, record);
                }
                let clock = Clock::new();
                let now_ms = clock.now_ms();
                // Put "now" at 60 s in record time.
                clock.set_offset_ms(60_000 - now_ms as i64);
                let grace_ms = rng.random_range(0..40) * 1000 + 500;
                compact_once(&store, &clock, grace_ms, |c| async { c }).await.unwrap();
                let now_ms = 60_000;
                for (key, record) in expected {
                    let held = store.get(&key).unwrap();
                    let gone = record.dead_since_ms().is_some_and(|dead| dead + grace_ms <= now_ms);
                    if gone {
                        assert_eq!(held, None, "{name} seed {seed}: {record:?} should be compacted");
                    } else {
                        assert_eq!(held, Some(record), "{name} seed {seed}: compaction took a record it must keep");
                    }
                }
                store.shutdown();
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}
