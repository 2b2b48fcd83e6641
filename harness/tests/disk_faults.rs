//! Disk faults on real `kvnode` processes whose data folders sit on the
//! power-loss file system: a power cut of every node loses nothing the
//! correct node acknowledged, and loses acknowledged writes when the node
//! acknowledges before it syncs (the `ack-before-fsync` bug); a node whose
//! log and data files are damaged repairs from its peers (or refuses, and
//! is then wiped and repairs), and no acknowledged write goes missing.
//!
//! Needs root and /dev/fuse (`KVTEST_SKIP_FUSE=1` skips, saying so).

use harness::client::{Consistency, KvClient, Op};
use harness::db::local::LocalDb;
use harness::db::{ClusterSpec, Db, Disks};
use harness::history::EventType;
use harness::nemesis::corruption::Mode;
use harness::nemesis::{ClusterNemesis, Fault, FaultKind, Nemesis};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Duration;

fn run_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-disk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// False (the test returns) when the machine cannot mount FUSE and the
/// user said to skip; panics with what is missing otherwise.
fn fuse_available() -> bool {
    let missing = if !std::path::Path::new("/dev/fuse").exists() {
        Some("/dev/fuse does not exist")
    } else if !nix::unistd::geteuid().is_root() {
        Some("mounting needs root")
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if std::env::var_os("KVTEST_SKIP_FUSE").is_some() => {
            eprintln!("SKIPPED: {why} (KVTEST_SKIP_FUSE is set)");
            false
        }
        Some(why) => panic!("the power-loss file system cannot be mounted: {why}; set KVTEST_SKIP_FUSE=1 to skip"),
    }
}

async fn cluster(name: &str, flags: &[&str]) -> LocalDb {
    let mut spec = ClusterSpec::new(3);
    spec.disks = Disks::PowerLoss;
    spec.extra_flags = flags.iter().map(|f| f.to_string()).collect();
    LocalDb::start(&spec, &run_dir(name)).await.expect("a cluster on power-loss disks starts")
}

/// Puts keys `k<i>` through n1; returns those acknowledged.
async fn put_keys(db: &LocalDb, client: &KvClient, range: std::ops::Range<usize>) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for i in range {
        let key = format!("k{i}");
        let op = Op::Put { key: key.clone(), value: format!("v{i}").into_bytes(), ttl_secs: None };
        if client.call(&db.base_url("n1").unwrap(), &op).await.kind == EventType::Ok {
            acknowledged.push(key);
        }
    }
    acknowledged
}

/// The acknowledged keys a strong read (through each of `via` in turn)
/// does not find, or finds with the wrong value.
async fn missing(db: &LocalDb, client: &KvClient, keys: &[String], via: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let node = via[i % via.len()];
        let op = Op::Get { key: key.clone(), consistency: Consistency::Strong, min_timestamp: None };
        let mut outcome = client.call(&db.base_url(node).unwrap(), &op).await;
        for _ in 0..50 {
            if outcome.kind == EventType::Ok {
                break;
            }
            // Recovering nodes refuse reads for a moment after a restart.
            tokio::time::sleep(Duration::from_millis(100)).await;
            outcome = client.call(&db.base_url(node).unwrap(), &op).await;
        }
        let expected = format!("v{}", key.trim_start_matches('k')).into_bytes();
        if outcome.kind != EventType::Ok || outcome.read != Some(Some(expected)) {
            missing.push(key.clone());
        }
    }
    missing
}

async fn power_cut_loses(flags: &[&str], name: &str) -> (usize, Vec<String>) {
    let db = cluster(name, flags).await;
    let client = KvClient::new(Duration::from_secs(3));
    let keys = put_keys(&db, &client, 0..60).await;
    let mut nemesis = ClusterNemesis::new(vec![FaultKind::PowerLossAll], StdRng::seed_from_u64(3));
    let nodes = db.nodes();
    let event = nemesis.apply(&db, Fault::PowerLoss { nodes }).await.expect("power cut");
    assert!(event.value["lost"]["n1"]["unsynced_bytes_lost"].is_u64(), "{}", event.value);
    nemesis.heal(&db).await.expect("every node restarts");
    let lost = missing(&db, &client, &keys, &["n1", "n2", "n3"]).await;
    db.teardown().await.unwrap();
    (keys.len(), lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_loses_nothing_acknowledged_unless_acks_come_before_fsync() {
    if !fuse_available() {
        return;
    }
    let (acknowledged, lost) = power_cut_loses(&[], "correct").await;
    assert!(acknowledged >= 50, "only {acknowledged} puts acknowledged");
    assert!(lost.is_empty(), "the correct node lost acknowledged writes in a power cut: {lost:?}");

    let (acknowledged, lost) = power_cut_loses(&["--test-bug", "ack-before-fsync"], "ack-before-fsync").await;
    assert!(acknowledged >= 50, "only {acknowledged} puts acknowledged");
    assert!(!lost.is_empty(), "acknowledging before fsync lost nothing in a power cut of every node");
}

/// n3 misses the second batch of writes (it is down), n1 has the tails of
/// its files damaged: together they form a read quorum that lost that
/// batch. Each must repair from its peers before answering (or refuse to
/// start, and be wiped and repair); once they have, n2 goes down and
/// strong reads from n1 and n3 must still find every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_repaired_from_peers_and_lose_nothing() {
    if !fuse_available() {
        return;
    }
    for (round, mode) in [Mode::Truncate, Mode::Bitflip].into_iter().enumerate() {
        let db = cluster(&format!("corrupt-{round}"), &[]).await;
        let client = KvClient::new(Duration::from_secs(3));
        let mut nemesis = ClusterNemesis::new(vec![FaultKind::Corrupt], StdRng::seed_from_u64(5));
        let mut keys = put_keys(&db, &client, 0..30).await;
        nemesis.apply(&db, Fault::Kill { nodes: vec!["n3".into()] }).await.unwrap();
        keys.extend(put_keys(&db, &client, 30..60).await);
        let fault = Fault::Corrupt { node: "n1".into(), mode, seed: round as u64 };
        let event = nemesis.apply(&db, fault).await.expect("corrupt");
        let damaged: Vec<&str> =
            event.value["damage"].as_array().unwrap().iter().filter_map(|d| d["file"].as_str()).collect();
        assert!(damaged.contains(&"data/wal/wal.log"), "{}", event.value);
        let healed = nemesis.heal(&db).await.expect("the nodes restart (or are wiped and restart)");
        eprintln!("{}\n{}", event.value, healed.value);
        for node in ["n1", "n3"] {
            assert!(recovered(&db.base_url(node).unwrap()).await, "{node} still recovering");
        }
        nemesis.apply(&db, Fault::Kill { nodes: vec!["n2".into()] }).await.unwrap();
        let lost = missing(&db, &client, &keys, &["n1", "n3"]).await;
        assert!(lost.is_empty(), "{mode:?}: {} acknowledged writes lost: {lost:?}", lost.len());
        db.teardown().await.unwrap();
    }
}

/// Waits until the node reports no peer left to recover from.
async fn recovered(url: &str) -> bool {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let health: serde_json::Value = client.get(format!("{url}/health")).send().await.unwrap().json().await.unwrap();
        if health.get("recovering_from").is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
