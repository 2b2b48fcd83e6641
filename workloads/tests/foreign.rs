//! Stores nobody here wrote: a three-member etcd (Debian's `etcd-server`)
//! and a Redis primary with two replicas (Debian's `redis-server`), on
//! local processes started from their system descriptions, through their
//! client adapters. Keeps the harness's seams (the `Client` trait, `Db`s
//! told what to start by a description, checks that say when they cannot
//! run) from rotting. Skipped, loudly, where a store is not installed;
//! `.ci/run` installs both.

use harness::checker::linearizable::{self, Budget};
use harness::checker::{durability, session};
use harness::client::{AnyClient, Client, Consistency, Op};
use harness::db::local::{find_binary, LocalDb};
use harness::db::{ClusterSpec, Db};
use harness::history::{self, EventType};
use harness::model::register::Register;
use harness::nemesis::{ClusterNemesis, FaultKind};
use harness::runner::{self, Progress, RunConfig};
use harness::system::SystemDescription;
use harness::verdict::Validity;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Duration;
use workloads::{Workload, WorkloadKind};

/// The store's description, if its program is installed.
fn installed(system: &str, test: &str) -> Option<SystemDescription> {
    let description = SystemDescription::builtin(system).expect("a shipped description");
    let launch = description.launch.as_ref().expect("it launches");
    match find_binary(&launch.binary, &launch.install) {
        Ok(_) => Some(description),
        Err(error) => {
            eprintln!("SKIPPED {test}: {error}");
            None
        }
    }
}

fn root(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("foreign-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start(system: &SystemDescription, name: &str) -> LocalDb {
    let spec = ClusterSpec::of(system.clone(), 3);
    LocalDb::start(&spec, &root(name)).await.unwrap_or_else(|e| panic!("{} starts: {e}", system.name))
}

fn client(system: &SystemDescription, timeout: Duration) -> AnyClient {
    AnyClient::for_system(system, timeout).expect("the shipped options are valid")
}

/// Waits (bounded) until `url` answers a strong read.
async fn serving(client: &AnyClient, url: &str) {
    let get = Op::Get { key: "k".into(), consistency: Consistency::Strong, min_timestamp: None };
    for _ in 0..100 {
        if client.invoke(url, &get).await.kind == EventType::Ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{url} does not serve strong reads after 100 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_adapter_maps_each_operation() {
    let Some(etcd) = installed("etcd", "the_etcd_adapter_maps_each_operation") else { return };
    let db = start(&etcd, "etcd-adapter").await;
    let client = client(&etcd, Duration::from_secs(5));
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
    // Deleting it again removes nothing and creates no revision: no version
    // (the header's revision would repeat the first delete's).
    let again = client.invoke(&url, &Op::Delete { key: "k".into() }).await;
    assert_eq!((again.kind, again.timestamp), (EventType::Ok, None), "{again:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_adapter_writes_to_the_primary_and_reads_replicas() {
    let Some(redis) = installed("redis", "the_redis_adapter_writes_to_the_primary_and_reads_replicas") else {
        return;
    };
    let db = start(&redis, "redis-adapter").await;
    let client = client(&redis, Duration::from_secs(5));
    let nodes = db.nodes();
    let put = Op::Put { key: "k".into(), value: b"v:1".to_vec(), ttl_secs: None };
    assert_eq!(client.route("n3", &put, &nodes), "n1", "writes go to the primary");
    let primary = db.base_url("n1").unwrap();
    let written = client.invoke(&primary, &put).await;
    assert_eq!(written.kind, EventType::Ok, "{written:?}");
    let version = written.timestamp.expect("a put reports its version");
    let again = client.invoke(&primary, &put).await;
    assert!(again.timestamp.is_some_and(|t| t > version), "versions grow: {again:?}");
    let version = again.timestamp.unwrap();

    // A replica catches up within moments (until then it shows nothing or
    // an older version, refused); a read older than the session is refused.
    let get = Op::Get { key: "k".into(), consistency: Consistency::Eventual, min_timestamp: Some(version) };
    let replica = db.base_url("n2").unwrap();
    let mut read = client.invoke(&replica, &get).await;
    for _ in 0..50 {
        if read.kind == EventType::Ok && read.read.as_ref().is_some_and(Option::is_some) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        read = client.invoke(&replica, &get).await;
    }
    assert_eq!((read.kind, read.read, read.timestamp), (EventType::Ok, Some(Some(b"v:1".to_vec())), Some(version)));
    let ahead = Op::Get { key: "k".into(), consistency: Consistency::Eventual, min_timestamp: Some(version + 1) };
    assert_eq!(client.invoke(&replica, &ahead).await.kind, EventType::Fail);

    let replica_write = client.invoke(&replica, &put).await;
    assert_eq!(replica_write.kind, EventType::Fail, "a replica refuses writes (READONLY): {replica_write:?}");
    let deleted = client.invoke(&primary, &Op::Delete { key: "k".into() }).await;
    assert!(deleted.kind == EventType::Ok && deleted.timestamp.is_some_and(|t| t > version), "{deleted:?}");
    let strong = Op::Get { key: "k".into(), consistency: Consistency::Strong, min_timestamp: None };
    let gone = client.invoke(&primary, &strong).await;
    assert_eq!((gone.kind, gone.read, gone.timestamp), (EventType::Ok, Some(None), None));

    db.kill("n1").await.unwrap();
    let refused = client.invoke(&primary, &put).await;
    assert_eq!(refused.kind, EventType::Fail, "a write that was never sent did not happen: {refused:?}");
    db.teardown().await.unwrap();
}

/// A few seconds of the register workload with kills and pauses, judged
/// like any run; the convergence check says it cannot look at the replicas.
async fn short_register_run(system: &SystemDescription) {
    let dir = root(&format!("{}-run", system.name));
    let db = LocalDb::start(&ClusterSpec::of(system.clone(), 3), &dir).await.expect("the cluster starts");
    let workload = Workload::new(WorkloadKind::Register, 5, 60.0, Duration::from_secs(6), Default::default());
    let nemesis = Some(ClusterNemesis::new(vec![FaultKind::Kill, FaultKind::Pause], StdRng::seed_from_u64(5)));
    let config = RunConfig {
        concurrency: 4,
        seed: 5,
        nemesis_interval: Duration::from_secs(2),
        convergence_timeout: Duration::from_secs(10),
        inspect_replicas: false,
    };
    let client = client(system, Duration::from_secs(2));
    let path = dir.join("history.jsonl");
    let (summary, _) = runner::run(&db, &client, workload.generator, nemesis, &config, &path, &Progress::default())
        .await
        .expect("the run completes");
    db.teardown().await.unwrap();
    assert_eq!(summary.converged, None, "{}'s replicas cannot be inspected", system.name);

    let events = history::read(&path).expect("a well-formed history");
    let ok = events.iter().filter(|e| e.kind == EventType::Ok).count();
    assert!(ok >= 100, "only {ok} operations succeeded");
    let linearizable = linearizable::check(&Register, &events, &Budget::default());
    assert_eq!(linearizable.valid, Validity::Valid, "{linearizable:#?}");
    assert_eq!(durability::check(&events).valid, Validity::Valid);
    assert_ne!(session::check(&events).valid, Validity::Invalid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_register_run_against_etcd_is_linearizable() {
    if let Some(etcd) = installed("etcd", "a_short_register_run_against_etcd_is_linearizable") {
        short_register_run(&etcd).await;
    }
}

/// Strong reads go to the single primary, which a kill (without power
/// loss: the AOF was written) loses nothing of: linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_register_run_against_redis_is_linearizable() {
    if let Some(redis) = installed("redis", "a_short_register_run_against_redis_is_linearizable") {
        short_register_run(&redis).await;
    }
}

/// `--system external`: nodes someone else started (here, an etcd the test
/// starts on its own), reached only through the URLs given; the run judges
/// the history and touches no process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_external_nodes_starts_and_breaks_nothing() {
    let Some(etcd) = installed("etcd", "a_run_against_external_nodes_starts_and_breaks_nothing") else { return };
    let theirs = start(&etcd, "external").await;
    let urls: Vec<String> = theirs.nodes().iter().map(|node| theirs.base_url(node).unwrap()).collect();
    let external = harness::db::external::ExternalDb::new(&urls).expect("valid URLs");
    assert!(external.kill("n1").await.is_err(), "an external node cannot be killed");
    let described = SystemDescription::external(harness::system::Adapter::Etcd);
    let workload = Workload::new(WorkloadKind::Register, 9, 60.0, Duration::from_secs(3), Default::default());
    let config = RunConfig {
        concurrency: 3,
        seed: 9,
        nemesis_interval: Duration::from_secs(1),
        convergence_timeout: Duration::from_secs(5),
        inspect_replicas: described.capabilities.replica_introspection,
    };
    let path = root("external-history").join("history.jsonl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let client = client(&described, Duration::from_secs(2));
    // "Listening" is not "serving": a fresh etcd answers only once it has a
    // leader, and a run started before that spends its few seconds failing.
    serving(&client, &urls[0]).await;
    let no_nemesis: Option<ClusterNemesis> = None;
    let (summary, _) =
        runner::run(&external, &client, workload.generator, no_nemesis, &config, &path, &Progress::default())
            .await
            .expect("the run completes");
    external.teardown().await.unwrap();
    assert_eq!(summary.converged, None);
    // Still theirs, still serving: the harness left the nodes running.
    let after = client
        .invoke(&urls[0], &Op::Get { key: "k".into(), consistency: Consistency::Strong, min_timestamp: None })
        .await;
    assert_eq!(after.kind, EventType::Ok, "{after:?}");
    let events = history::read(&path).expect("a well-formed history");
    assert!(events.iter().filter(|e| e.kind == EventType::Ok).count() >= 50);
    assert_eq!(linearizable::check(&Register, &events, &Budget::default()).valid, Validity::Valid);
    theirs.teardown().await.unwrap();
}
