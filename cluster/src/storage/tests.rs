//! Properties every [`Storage`] must have, run against both implementations.

use super::*;
use crate::record::Record;
use crate::version::Version;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("storage-{name}-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn with_each_storage(name: &str, check: impl Fn(&dyn Storage)) {
    check(&MemoryStorage::new());
    let dir = temp_dir(name);
    check(&SledStorage::open(&dir, 8 << 20).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

pub(crate) fn random_record(rng: &mut StdRng) -> Record {
    let version = Version::new(rng.random_range(1..50), rng.random_range(0..4));
    if rng.random_bool(0.3) {
        Record::tombstone(version)
    } else {
        let value = (0..rng.random_range(0..8)).map(|_| rng.random()).collect();
        Record::value(version, value, rng.random_bool(0.3).then(|| rng.random_range(1..100)))
    }
}

#[test]
fn newest_version_wins_whatever_the_arrival_order() {
    with_each_storage("order", |storage| {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let key = format!("key-{seed}").into_bytes();
            let mut records: Vec<Record> = (0..20).map(|_| random_record(&mut rng)).collect();
            // Distinct versions, so "the newest" is well defined.
            records.sort_by_key(|r| r.version);
            records.dedup_by_key(|r| r.version);
            let newest = records.last().unwrap().clone();
            records.shuffle(&mut rng);
            for record in &records {
                storage.apply(&key, record).unwrap();
            }
            assert_eq!(storage.get(&key).unwrap(), Some(newest), "seed {seed}");
        }
    });
}

/// The record count (the store-size metric) follows new keys, newer
/// versions of held keys (no change), stale writes and removals, and a
/// reopened sled counts what it holds.
#[test]
fn the_record_count_follows_adds_and_removals() {
    let check = |storage: &dyn Storage| {
        let records = || storage.size().records;
        let value = |ms| Record::value(Version::new(ms, 0), b"v".to_vec(), None);
        assert_eq!(records(), 0);
        storage.apply(b"a", &value(1)).unwrap();
        storage.apply(b"b", &value(1)).unwrap();
        assert_eq!(records(), 2);
        storage.apply(b"a", &value(2)).unwrap();
        storage.apply(b"b", &value(1)).unwrap();
        storage.apply(b"c", &Record::tombstone(Version::new(3, 0))).unwrap();
        assert_eq!(records(), 3, "a newer version and a stale one add no key; a tombstone is a record");
        assert!(!storage.remove_if_version(b"a", Version::new(1, 0)).unwrap());
        assert_eq!(records(), 3, "not that version: nothing removed");
        assert!(storage.remove_if_version(b"a", Version::new(2, 0)).unwrap());
        assert!(!storage.remove_if_version(b"zz", Version::new(2, 0)).unwrap());
        assert_eq!(records(), 2);
    };
    check(&MemoryStorage::new());
    let dir = temp_dir("record-count");
    check(&SledStorage::open(&dir, 8 << 20).unwrap());
    // sled's flusher thread lets go of the file lock a moment after the
    // last handle is dropped: bounded retries.
    let mut reopened = SledStorage::open(&dir, 8 << 20);
    for _ in 0..100 {
        if reopened.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        reopened = SledStorage::open(&dir, 8 << 20);
    }
    let reopened = reopened.unwrap();
    assert_eq!(reopened.size().records, 2);
    assert!(reopened.size().disk_bytes.is_some_and(|bytes| bytes > 0));
    drop(reopened);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn equal_or_older_versions_change_nothing() {
    with_each_storage("stale", |storage| {
        let held = Record::value(Version::new(10, 1), b"held".to_vec(), None);
        assert_eq!(storage.apply(b"k", &held).unwrap(), ApplyOutcome::Applied);
        let same_version = Record::value(Version::new(10, 1), b"other".to_vec(), None);
        assert_eq!(storage.apply(b"k", &same_version).unwrap(), ApplyOutcome::Stale);
        assert_eq!(storage.apply(b"k", &Record::tombstone(Version::new(9, 9))).unwrap(), ApplyOutcome::Stale);
        assert_eq!(storage.get(b"k").unwrap(), Some(held));
    });
}

/// A one-round put's write is stored only over records of earlier
/// milliseconds; a write decided on a read that is no longer current is
/// decided again on what is held.
#[test]
fn the_millisecond_rule_refuses_every_version_of_the_held_millisecond() {
    with_each_storage("millisecond", |storage| {
        let apply = |ms, tiebreak, newer| {
            let record = Record::value(Version::new(ms, tiebreak), b"v".to_vec(), None);
            storage.apply_over(b"k", &storage.read_held(b"k").unwrap(), &record, newer).unwrap()
        };
        assert_eq!(apply(10, 1, Newer::Millisecond), ApplyOutcome::Applied);
        assert_eq!(apply(10, 5, Newer::Millisecond), ApplyOutcome::Stale, "the same millisecond");
        assert_eq!(apply(9, 5, Newer::Millisecond), ApplyOutcome::Stale, "older");
        assert_eq!(storage.read_held(b"k").unwrap().version, Some(Version::new(10, 1)));
        assert_eq!(apply(10, 5, Newer::Version), ApplyOutcome::Applied, "newer wins by the tie-break");
        assert_eq!(apply(11, 0, Newer::Millisecond), ApplyOutcome::Applied);
        let outdated = storage.read_held(b"k").unwrap();
        assert_eq!(apply(12, 0, Newer::Version), ApplyOutcome::Applied);
        let late = Record::value(Version::new(11, 9), b"late".to_vec(), None);
        assert_eq!(storage.apply_over(b"k", &outdated, &late, Newer::Version).unwrap(), ApplyOutcome::Stale);
        assert_eq!(storage.read_held(b"k").unwrap().version, Some(Version::new(12, 0)));
        assert_eq!(storage.read_held(b"absent").unwrap().version, None);
    });
}

#[test]
fn tombstones_shadow_older_values_and_yield_to_newer_ones() {
    with_each_storage("tombstone", |storage| {
        storage.apply(b"k", &Record::value(Version::new(1, 0), b"a".to_vec(), None)).unwrap();
        storage.apply(b"k", &Record::tombstone(Version::new(2, 0))).unwrap();
        storage.apply(b"k", &Record::value(Version::new(1, 5), b"late".to_vec(), None)).unwrap();
        let held = storage.get(b"k").unwrap().unwrap();
        assert!(held.tombstone && !held.is_live_at(0));
        storage.apply(b"k", &Record::value(Version::new(3, 0), b"b".to_vec(), None)).unwrap();
        assert_eq!(storage.get(b"k").unwrap().unwrap().value, b"b");
    });
}

#[test]
fn removal_only_takes_the_checked_version() {
    with_each_storage("remove", |storage| {
        storage.apply(b"k", &Record::tombstone(Version::new(2, 0))).unwrap();
        storage.apply(b"k", &Record::value(Version::new(3, 0), b"live".to_vec(), None)).unwrap();
        assert!(!storage.remove_if_version(b"k", Version::new(2, 0)).unwrap());
        assert_eq!(storage.get(b"k").unwrap().unwrap().value, b"live");
        assert!(storage.remove_if_version(b"k", Version::new(3, 0)).unwrap());
        assert_eq!(storage.get(b"k").unwrap(), None);
    });
}

#[test]
fn scans_page_through_every_key_in_order() {
    with_each_storage("scan", |storage| {
        let mut expected = BTreeMap::new();
        for i in 0..257u32 {
            let key = format!("{:05}", (i * 7919) % 1000).into_bytes();
            let record = Record::value(Version::new(u64::from(i) + 1, 0), i.to_be_bytes().to_vec(), None);
            storage.apply(&key, &record).unwrap();
            expected.insert(key, record);
        }
        let mut seen = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = storage.scan_after(after.as_deref(), 10).unwrap();
            if page.is_empty() {
                break;
            }
            after = Some(page.last().unwrap().0.clone());
            seen.extend(page);
        }
        assert_eq!(seen, expected.into_iter().collect::<Vec<_>>());
    });
}

#[tokio::test]
async fn store_replays_its_log_after_a_crash() {
    let dir = temp_dir("replay");
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let store = Store::open(storage, &dir.join("wal")).unwrap();
    let record = Record::value(Version::new(5, 0), b"durable".to_vec(), None);
    store.apply(b"k".to_vec(), record.clone()).await.unwrap();
    // A crash: the memory is gone, the log is not (no shutdown checkpoint).
    std::mem::forget(store);
    let fresh: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let store = Store::open(fresh, &dir.join("wal")).unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(record));
    store.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Over nothing held, a write older than its `fresh_from_ms` is refused
/// (a write abandoned and delivered after the delete that replaced it was
/// compacted), and not logged: a replay must not store it either. Over a
/// held record the version decides, as ever. Both the logged and the
/// volatile store.
#[tokio::test]
async fn a_write_too_old_over_nothing_held_is_refused_and_not_logged() {
    let old = |key: &[u8], ms| Write {
        key: key.to_vec(),
        record: Record::value(Version::new(ms, 0), b"late".to_vec(), None),
        newer: Newer::Version,
        fresh_from_ms: 1_000,
    };
    let dir = temp_dir("too-old");
    let logged = Store::open(Arc::new(MemoryStorage::new()), &dir.join("wal")).unwrap();
    let volatile = Store::volatile(Arc::new(MemoryStorage::new())).unwrap();
    for store in [&logged, &volatile] {
        assert_eq!(store.apply_one(old(b"absent", 999)).await.unwrap(), ApplyOutcome::TooOld);
        assert_eq!(store.apply_one(old(b"absent", 1_000)).await.unwrap(), ApplyOutcome::Applied, "at the floor");
        store.apply(b"held".to_vec(), Record::value(Version::new(5, 0), b"v".to_vec(), None)).await.unwrap();
        assert_eq!(store.apply_one(old(b"held", 6)).await.unwrap(), ApplyOutcome::Applied, "over a held record");
        assert_eq!(store.get(b"held").unwrap().map(|r| r.version.timestamp_ms), Some(6));
    }
    // A batch whose first write of a key is too old and whose second is
    // not: the second is decided over nothing, as the first stored nothing.
    let outcomes = logged.apply_each(vec![old(b"batch", 10), old(b"batch", 2_000)]).await;
    assert_eq!(
        outcomes.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [ApplyOutcome::TooOld, ApplyOutcome::Applied]
    );
    std::mem::forget(logged);
    let replayed = Store::open(Arc::new(MemoryStorage::new()), &dir.join("wal")).unwrap();
    assert_eq!(replayed.get(b"absent").unwrap().map(|r| r.version.timestamp_ms), Some(1_000), "only the fresh one");
    assert_eq!(replayed.get(b"batch").unwrap().map(|r| r.version.timestamp_ms), Some(2_000));
    replayed.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A write the store refused as not the newest by the millisecond was
/// answered "not stored": it must not be in the log either, or a replay
/// after a crash would store it.
#[tokio::test]
async fn a_write_refused_as_not_newest_is_not_logged() {
    let dir = temp_dir("not-newest");
    let store = Store::open(Arc::new(MemoryStorage::new()), &dir.join("wal")).unwrap();
    let held = Record::value(Version::new(5, 0), b"held".to_vec(), None);
    assert_eq!(store.apply(b"k".to_vec(), held.clone()).await.unwrap(), ApplyOutcome::Applied);
    let same_ms = Record::value(Version::new(5, 9), b"refused".to_vec(), None);
    let write = Write { key: b"k".to_vec(), record: same_ms, newer: Newer::Millisecond, fresh_from_ms: 0 };
    assert_eq!(store.apply_one(write).await.unwrap(), ApplyOutcome::Stale);
    std::mem::forget(store);
    let store = Store::open(Arc::new(MemoryStorage::new()), &dir.join("wal")).unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(held), "the refused write came back in the replay");
    store.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes of one key offered together (most often one batch of the
/// writer) are decided in order, each against the ones before it, and
/// the log replays to the same state.
#[tokio::test]
async fn writes_of_one_key_in_one_batch_are_decided_in_order() {
    let dir = temp_dir("one-batch");
    let store =
        Store::open(Arc::new(SledStorage::open(&dir.join("sled"), 8 << 20).unwrap()), &dir.join("wal")).unwrap();
    let record =
        |ms, tiebreak| Record::value(Version::new(ms, tiebreak), format!("{ms}.{tiebreak}").into_bytes(), None);
    for round in 0..20u64 {
        let key = format!("k{round}").into_bytes();
        let at =
            |ms, tiebreak, newer| Write { key: key.clone(), record: record(ms, tiebreak), newer, fresh_from_ms: 0 };
        let outcomes = store
            .apply_each(vec![
                at(5, 0, Newer::Millisecond),
                at(5, 3, Newer::Millisecond),
                at(5, 2, Newer::Version),
                at(5, 1, Newer::Version),
                at(5, 4, Newer::Version),
                at(6, 0, Newer::Millisecond),
                at(4, 0, Newer::Version),
            ])
            .await;
        let outcomes: Vec<ApplyOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
        use ApplyOutcome::{Applied, Stale};
        assert_eq!(outcomes, [Applied, Stale, Applied, Stale, Applied, Applied, Stale], "round {round}");
        assert_eq!(store.get(&key).unwrap(), Some(record(6, 0)));
    }
    std::mem::forget(store);
    let replayed = Store::open(Arc::new(MemoryStorage::new()), &dir.join("wal")).unwrap();
    assert_eq!(replayed.get(b"k7").unwrap(), Some(record(6, 0)));
    replayed.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn compaction_never_drops_a_newer_live_value() {
    let dir = temp_dir("compact");
    let store = Store::open(Arc::new(MemoryStorage::new()), &dir).unwrap();
    store.apply(b"dead".to_vec(), Record::tombstone(Version::new(1, 0))).await.unwrap();
    store.apply(b"revived".to_vec(), Record::tombstone(Version::new(1, 0))).await.unwrap();
    store.apply(b"revived".to_vec(), Record::value(Version::new(2, 0), b"x".to_vec(), None)).await.unwrap();
    let candidates = vec![(b"dead".to_vec(), Version::new(1, 0)), (b"revived".to_vec(), Version::new(1, 0))];
    assert_eq!(store.compact(candidates).await.unwrap(), 1);
    assert_eq!(store.get(b"dead").unwrap(), None);
    assert_eq!(store.get(b"revived").unwrap().unwrap().value, b"x");
    store.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Memory storage whose `flush` (the checkpoint's fsync) fails once told to.
struct FailingFlush {
    inner: MemoryStorage,
    fail: std::sync::atomic::AtomicBool,
}

impl Storage for FailingFlush {
    fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        self.inner.get(key)
    }
    fn read_held(&self, key: &[u8]) -> Result<Held, StorageError> {
        self.inner.read_held(key)
    }
    fn apply_over(&self, key: &[u8], held: &Held, record: &Record, newer: Newer) -> Result<ApplyOutcome, StorageError> {
        self.inner.apply_over(key, held, record, newer)
    }
    fn remove_if_version(&self, key: &[u8], version: Version) -> Result<bool, StorageError> {
        self.inner.remove_if_version(key, version)
    }
    fn scan_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Record)>, StorageError> {
        self.inner.scan_after(after, limit)
    }
    fn flush(&self) -> Result<(), StorageError> {
        match self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err(StorageError::Io(std::io::Error::other("injected: fsync failed (EIO)"))),
            false => self.inner.flush(),
        }
    }
    fn size(&self) -> Size {
        self.inner.size()
    }
}

/// An fsync error during a checkpoint: the store says why it failed (what
/// `/health` answers with 503), refuses every later write, takes no final
/// checkpoint, and a restart replays the log: nothing acknowledged is lost.
#[tokio::test]
async fn after_a_sync_error_writes_are_refused_with_the_reason_and_the_log_still_replays() {
    let dir = temp_dir("sync-error");
    let storage = Arc::new(FailingFlush { inner: MemoryStorage::new(), fail: false.into() });
    let store = Store::open(storage.clone(), &dir.join("wal")).unwrap();
    let acknowledged = Record::value(Version::new(5, 0), b"durable".to_vec(), None);
    store.apply(b"k".to_vec(), acknowledged.clone()).await.unwrap();
    assert_eq!(store.failure(), None);
    storage.fail.store(true, std::sync::atomic::Ordering::Relaxed);
    // Compaction checkpoints first; the checkpoint's flush fails.
    assert!(store.compact(vec![(b"k".to_vec(), Version::new(5, 0))]).await.is_err());
    let reason = store.failure().expect("the store reports its failure");
    assert!(reason.contains("injected: fsync failed") && reason.contains("refused"), "{reason}");
    let later = store.apply(b"later".to_vec(), Record::value(Version::new(6, 0), b"x".to_vec(), None)).await;
    assert!(later.is_err(), "a write after the failure must fail, not be acknowledged");
    assert!(!store.shutdown(), "a failed store reports an unclean shutdown (no final checkpoint)");
    let fresh: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let store = Store::open(fresh, &dir.join("wal")).unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(acknowledged), "the log replays what was acknowledged");
    assert_eq!(store.get(b"later").unwrap(), None);
    store.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A checkpoint that fails when the log is full is not retried by later
/// batches: a retry whose flush "succeeds" would empty the log of writes
/// the storage may never have made durable (it did, before).
#[tokio::test]
async fn a_failed_checkpoint_is_never_retried_into_an_empty_log() {
    let dir = temp_dir("checkpoint-retry");
    let storage = Arc::new(FailingFlush { inner: MemoryStorage::new(), fail: false.into() });
    let store = Store::open(storage.clone(), &dir.join("wal")).unwrap();
    storage.fail.store(true, std::sync::atomic::Ordering::Relaxed);
    let record = |i: u64| Record::value(Version::new(i + 1, 0), vec![i as u8; 1 << 20], None);
    let mut acknowledged = 0;
    for i in 0..80 {
        match store.apply(format!("k{i}").into_bytes(), record(i)).await {
            Ok(_) => acknowledged += 1,
            Err(_) => break,
        }
    }
    assert!(store.failure().is_some(), "the full log's checkpoint failed");
    assert!(acknowledged >= 60, "about 64 MiB was acknowledged first: {acknowledged}");
    // The disk "recovers"; later writes must still be refused, and must not
    // checkpoint on their way.
    storage.fail.store(false, std::sync::atomic::Ordering::Relaxed);
    for i in 100..103 {
        assert!(store.apply(format!("k{i}").into_bytes(), record(i)).await.is_err());
    }
    assert!(!store.shutdown());
    let fresh: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let store = Store::open(fresh, &dir.join("wal")).unwrap();
    for i in 0..acknowledged {
        assert_eq!(store.get(format!("k{i}").as_bytes()).unwrap(), Some(record(i)), "acknowledged write {i} lost");
    }
    store.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A record too large for a log frame (a peer's, since the client API caps
/// values at 16 MiB) fails alone; the store keeps taking writes and stays
/// healthy (it used to panic its writer thread).
#[tokio::test]
async fn a_record_over_the_frame_limit_fails_alone() {
    let dir = temp_dir("oversize");
    let store = Store::open(Arc::new(MemoryStorage::new()), &dir.join("wal")).unwrap();
    let huge = Record::value(Version::new(1, 0), vec![7; super::wal::MAX_PAYLOAD_BYTES], None);
    let error = store.apply(b"huge".to_vec(), huge.clone()).await.unwrap_err();
    assert!(error.to_string().contains("frame limit"), "{error}");
    let small = Record::value(Version::new(2, 0), b"fine".to_vec(), None);
    let outcomes = store
        .apply_each(vec![
            Write::newer_version(b"huge".to_vec(), huge),
            Write::newer_version(b"small".to_vec(), small.clone()),
        ])
        .await;
    assert!(outcomes[0].is_err() && outcomes[1].is_ok(), "{outcomes:?}");
    assert_eq!(store.get(b"small").unwrap(), Some(small));
    assert_eq!(store.failure(), None);
    assert!(store.shutdown());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A flipped bit in the middle of the log: the store replays the writes
/// before it, says what it could not replay (the node then recovers those
/// from its peers, see `crate::recovery`), and keeps the damaged file.
#[tokio::test]
async fn a_damaged_log_stops_at_the_damage_keeps_the_file_and_says_so() {
    let dir = temp_dir("damaged-log");
    let store = Store::open(Arc::new(MemoryStorage::new()), &dir.join("wal")).unwrap();
    let record = |i: u64| Record::value(Version::new(i, 0), format!("value-{i}").into_bytes(), None);
    for i in 1..=5 {
        store.apply(format!("key-{i}").into_bytes(), record(i)).await.unwrap();
    }
    std::mem::forget(store);
    let path = dir.join("wal").join("wal.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(7).position(|w| w == b"value-2").expect("the second write is in the log");
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let store = Store::open(Arc::new(MemoryStorage::new()), &dir.join("wal")).unwrap();
    let damage = store.log_damage().expect("the frames past the damage are reported").to_owned();
    assert!(damage.contains("3 intact frame(s)"), "{damage}");
    assert_eq!(store.get(b"key-1").unwrap(), Some(record(1)));
    for i in 2..=5 {
        assert_eq!(store.get(format!("key-{i}").as_bytes()).unwrap(), None, "key-{i} is the peers' to restore");
    }
    store.shutdown();
    let kept: Vec<_> = std::fs::read_dir(dir.join("wal")).unwrap().flatten().map(|e| e.path()).collect();
    let kept = kept.iter().find(|p| p.to_string_lossy().contains("wal.log.damaged-")).expect("the file is kept");
    let salvaged = salvage_log_image(&std::fs::read(kept).unwrap()).unwrap();
    assert_eq!(salvaged.len(), 4, "frames 1 and 3-5 are still readable from the kept copy");
    let store = Store::open(Arc::new(MemoryStorage::new()), &dir.join("wal")).unwrap();
    assert_eq!(store.log_damage(), None, "the log was emptied once replayed; the damage stays in the kept copy");
    store.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}
