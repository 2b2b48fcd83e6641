//! How much memory one anti-entropy exchange takes, by store size.
//!
//! A replica on sled is filled with 100-byte values (100,000 then
//! 1,000,000 keys), then answers one exchange from a peer that holds
//! nothing (every bucket differs: the worst case). The figure is the
//! process's peak RSS during the exchange minus its RSS before, with the
//! kernel's peak counter reset first (`/proc/self/clear_refs`). For
//! comparison, the same store is also read whole into memory, as every
//! exchange did before anti-entropy paged (the "snapshot" column).
//!
//! `make bench` runs it; `AE_KEYS=200000,2000000` picks other sizes.

use cluster::antientropy::{View, BUCKETS};
use cluster::record::Record;
use cluster::storage::{SledStorage, Store};
use cluster::topology::Membership;
use cluster::transport::{Digests, SyncRequest};
use cluster::version::Version;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let sizes: Vec<usize> = std::env::var("AE_KEYS")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("AE_KEYS: comma-separated key counts"))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    println!("| keys | store on disk | exchange: extra peak RSS | records sent | time | snapshot: extra peak RSS |");
    println!("|---|---|---|---|---|---|");
    for keys in sizes {
        runtime.block_on(measure(keys));
    }
}

async fn measure(keys: usize) {
    let dir = std::env::temp_dir().join(format!("ae-memory-{}-{keys}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A small cache, as a node's would be relative to a large store: the
    // store does not fit in memory, so what the exchange holds shows.
    let storage = Arc::new(SledStorage::open(&dir.join("sled"), 16 << 20).expect("open sled"));
    let store = Store::open(storage, &dir.join("wal")).expect("open the store");
    fill(&store, keys).await;
    let membership = Membership::from_seed_ids("a", &["a".to_owned(), "b".to_owned()], 64, 2);
    let view = View {
        topology: membership.load(),
        me: "a",
        now_ms: 1_000_000,
        grace_ms: 3_600_000,
        max_ahead_ms: 600_000,
        limits: Default::default(),
    };
    let request = SyncRequest { from: "b".into(), digests: Digests(vec![0; BUCKETS]) };

    let before = reset_peak();
    let started = Instant::now();
    let reply = view.answer(&store, &request).await.expect("answer");
    let elapsed = started.elapsed();
    let exchange_extra = peak_rss_bytes().saturating_sub(before);
    let sent = reply.records.len();
    drop(reply);

    let before = reset_peak();
    let snapshot = snapshot(&store);
    let snapshot_extra = peak_rss_bytes().saturating_sub(before);
    assert_eq!(snapshot.len(), keys, "the snapshot holds every key");
    drop(snapshot);

    println!(
        "| {keys} | {} MiB | {} MiB | {sent} | {:.1} s | {} MiB |",
        du_bytes(&dir) >> 20,
        exchange_extra >> 20,
        elapsed.as_secs_f64(),
        snapshot_extra >> 20
    );
    store.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn fill(store: &Store, keys: usize) {
    for chunk in (0..keys).collect::<Vec<_>>().chunks(10_000) {
        let entries = chunk
            .iter()
            .map(|i| {
                let key = format!("key-{i:09}").into_bytes();
                (key, Record::value(Version::new(1_000 + *i as u64, 1), vec![(i % 251) as u8; 100], None))
            })
            .collect();
        store.apply_many(entries).await.expect("fill the store");
    }
}

/// Every record, as exchanges read them before they paged.
fn snapshot(store: &Store) -> Vec<(Vec<u8>, Record)> {
    let mut all: Vec<(Vec<u8>, Record)> = Vec::new();
    loop {
        let page = store.scan_after(all.last().map(|(key, _)| key.as_slice()), 4096).expect("scan");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Resets the kernel's peak-RSS counter and returns the current RSS.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS (Linux 4.0+)");
    status_kib("VmRSS:") * 1024
}

fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:") * 1024
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|line| line.starts_with(field)).expect("the field is there");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number of KiB")
}

fn du_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        total += match entry.metadata() {
            Ok(meta) if meta.is_dir() => du_bytes(&path),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        };
    }
    total
}
