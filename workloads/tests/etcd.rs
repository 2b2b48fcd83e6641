//! A store nobody here wrote: a three-member etcd (Debian's `etcd-server`)
//! on local processes, through the etcd client adapter. Keeps the harness's
//! seams (the `Client` trait, a second kind of local cluster, checks that
//! say when they cannot run) from rotting. Skipped, loudly, where etcd is
//! not installed; `.ci/run` installs it.

use harness::checker::linearizable::{self, Budget};
use harness::checker::{durability, session};
use harness::client::etcd::EtcdClient;
use harness::client::{Client, Consistency, Op};
use harness::db::local::{etcd_binary, LocalDb};
use harness::db::Db;
use harness::history::{self, EventType};
use harness::model::register::Register;
use harness::nemesis::{ClusterNemesis, FaultKind};
use harness::runner::{self, Progress, RunConfig};
use harness::verdict::Validity;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Duration;
use workloads::{Workload, WorkloadKind};

fn etcd_installed(test: &str) -> bool {
    match etcd_binary() {
        Ok(_) => true,
        Err(error) => {
            eprintln!("SKIPPED {test}: {error}");
            false
        }
    }
}

fn root(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("etcd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_adapter_maps_each_operation() {
    if !etcd_installed("the_etcd_adapter_maps_each_operation") {
        return;
    }
    let db = LocalDb::start_etcd(3, &root("adapter")).await.expect("etcd starts");
    let client = EtcdClient::new(Duration::from_secs(5));
    let url = db.base_url("n2").unwrap();
    let put = Op::Put { key: "k".into(), value: b"v1".to_vec(), ttl_secs: None };
    let written = client.invoke(&url, &put).await;
    assert_eq!(written.kind, EventType::Ok, "{written:?}");
    let revision = written.timestamp.expect("a put reports its revision");

    for consistency in [Consistency::Strong, Consistency::Eventual] {
        let get = Op::Get { key: "k".into(), consistency, min_timestamp: Some(revision) };
        let read = client.invoke(&db.base_url("n1").unwrap(), &get).await;
        assert_eq!(
            (read.kind, read.read.clone(), read.timestamp),
            (EventType::Ok, Some(Some(b"v1".to_vec())), Some(revision))
        );
    }
    let deleted = client.invoke(&url, &Op::Delete { key: "k".into() }).await;
    assert_eq!(deleted.kind, EventType::Ok);
    assert!(deleted.timestamp.is_some_and(|t| t > revision), "revisions grow: {deleted:?}");
    let gone =
        client.invoke(&url, &Op::Get { key: "k".into(), consistency: Consistency::Strong, min_timestamp: None }).await;
    assert_eq!((gone.kind, gone.read, gone.timestamp), (EventType::Ok, Some(None), None));

    let ttl = client.invoke(&url, &Op::Put { key: "t".into(), value: b"x".to_vec(), ttl_secs: Some(5) }).await;
    assert_eq!(ttl.kind, EventType::Fail, "no per-put TTL in etcd: {ttl:?}");

    db.kill("n2").await.unwrap();
    let refused = client.invoke(&url, &put).await;
    assert_eq!(refused.kind, EventType::Fail, "a write that was never sent did not happen: {refused:?}");
    db.teardown().await.unwrap();
}

/// A few seconds of the register workload with kills, judged like any run;
/// the convergence check says it cannot look at etcd's replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_register_run_against_etcd_is_linearizable() {
    if !etcd_installed("a_short_register_run_against_etcd_is_linearizable") {
        return;
    }
    let dir = root("run");
    let db = LocalDb::start_etcd(3, &dir).await.expect("etcd starts");
    let workload = Workload::new(WorkloadKind::Register, 5, 60.0, Duration::from_secs(6), Default::default());
    let nemesis = Some(ClusterNemesis::new(vec![FaultKind::Kill, FaultKind::Pause], StdRng::seed_from_u64(5)));
    let config = RunConfig {
        concurrency: 4,
        seed: 5,
        nemesis_interval: Duration::from_secs(2),
        convergence_timeout: Duration::from_secs(10),
        inspect_replicas: false,
    };
    let client = EtcdClient::new(Duration::from_secs(2));
    let path = dir.join("history.jsonl");
    let (summary, _) = runner::run(&db, &client, workload.generator, nemesis, &config, &path, &Progress::default())
        .await
        .expect("the run completes");
    db.teardown().await.unwrap();
    assert_eq!(summary.converged, None, "etcd's replicas cannot be inspected");

    let events = history::read(&path).expect("a well-formed history");
    let ok = events.iter().filter(|e| e.kind == EventType::Ok).count();
    assert!(ok >= 100, "only {ok} operations succeeded");
    let linearizable = linearizable::check(&Register, &events, &Budget::default());
    assert_eq!(linearizable.valid, Validity::Valid, "{linearizable:#?}");
    assert_eq!(durability::check(&events).valid, Validity::Valid);
    assert_ne!(session::check(&events).valid, Validity::Invalid);
}
