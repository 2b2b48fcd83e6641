//! The local backend and the nemesis schedule, without Docker: kill,
//! restart, pause and skew on real processes; a clear refusal to
//! partition; and a schedule whose final heal runs even after a failure.

use harness::db::local::LocalDb;
use harness::db::{ClusterSpec, Db, DbError};
use harness::nemesis::schedule;
use harness::nemesis::{ClusterNemesis, Event, Fault, FaultKind, Nemesis, NemesisError};
use harness::node_api::NodeApi;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn run_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-local-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn assert_all_healthy(db: &LocalDb) {
    let api = NodeApi::with_secret(Duration::from_secs(2), db.cluster_secret().as_deref());
    for node in db.nodes() {
        assert!(api.healthy(&db.base_url(&node).unwrap()).await, "{node} is not serving");
        assert_eq!(api.clock(&db.base_url(&node).unwrap()).await.unwrap().offset_ms, 0, "{node}'s clock is skewed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_kills_pauses_and_skews_but_will_not_partition() {
    let db = LocalDb::start(&ClusterSpec::new(3), &run_dir("faults")).await.unwrap();
    let mut nemesis = ClusterNemesis::new(vec![FaultKind::Kill], StdRng::seed_from_u64(1));
    let api = NodeApi::with_secret(Duration::from_millis(500), db.cluster_secret().as_deref());

    nemesis.apply(&db, Fault::Kill { nodes: vec!["n1".into()] }).await.unwrap();
    assert!(!api.healthy(&db.base_url("n1").unwrap()).await);
    nemesis.apply(&db, Fault::Pause { nodes: vec!["n2".into()] }).await.unwrap();
    assert!(!api.healthy(&db.base_url("n2").unwrap()).await);
    nemesis.apply(&db, Fault::ClockBump { node: "n3".into(), offset_ms: -4_000 }).await.unwrap();
    assert_eq!(api.clock(&db.base_url("n3").unwrap()).await.unwrap().offset_ms, -4_000);
    nemesis.heal(&db).await.unwrap();
    assert_all_healthy(&db).await;

    match db.net_namespace("n1").await {
        Err(DbError::Unsupported { why, .. }) => assert!(why.contains("docker backend"), "{why}"),
        other => panic!("the local backend must refuse to partition, got {other:?}"),
    }
    db.teardown().await.unwrap();
}

/// Injects through a [`ClusterNemesis`], and fails its third injection.
struct FailsOnThird {
    inner: ClusterNemesis,
    injections: usize,
}

impl Nemesis for FailsOnThird {
    fn kinds(&self) -> &[FaultKind] {
        self.inner.kinds()
    }

    async fn setup<D: Db>(&mut self, db: &D) -> Result<(), NemesisError> {
        self.inner.setup(db).await
    }

    async fn inject<D: Db>(&mut self, db: &D) -> Result<Event, NemesisError> {
        self.injections += 1;
        if self.injections == 3 {
            // Something was applied before the failure: it must still be healed.
            self.inner.apply(db, Fault::Pause { nodes: vec!["n1".into()] }).await?;
            return Err(NemesisError::Unsupported { fault: "test", why: "failing on purpose".into() });
        }
        self.inner.inject(db).await
    }

    async fn heal<D: Db>(&mut self, db: &D) -> Result<Event, NemesisError> {
        self.inner.heal(db).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_cycles_faults_and_always_heals_at_the_end() {
    let db = LocalDb::start(&ClusterSpec::new(3), &run_dir("schedule")).await.unwrap();
    let kinds = vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Clock];
    let events = Arc::new(Mutex::new(Vec::new()));

    // Stopped from outside: inject / heal pairs, then the final heal.
    let mut nemesis = ClusterNemesis::new(kinds.clone(), StdRng::seed_from_u64(5));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let recorder = events.clone();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        stop.send(true).unwrap();
    });
    let record = move |event: Event| recorder.lock().unwrap().push(event.f);
    schedule::run(&db, &mut nemesis, Duration::from_millis(200), stopped, record).await.unwrap();
    stopper.await.unwrap();
    let fs = std::mem::take(&mut *events.lock().unwrap());
    assert!(fs.len() >= 3, "too few events: {fs:?}");
    assert!(fs.iter().step_by(2).take(fs.len() / 2).all(|f| f != "heal"), "injections and heals alternate: {fs:?}");
    assert_eq!(fs.last().map(String::as_str), Some("heal"), "the last event is the final heal: {fs:?}");
    assert_all_healthy(&db).await;

    // A failing injection: the schedule reports it, after healing.
    let mut failing = FailsOnThird { inner: ClusterNemesis::new(kinds, StdRng::seed_from_u64(6)), injections: 0 };
    let (_keep, never) = tokio::sync::watch::channel(false);
    let recorder = events.clone();
    let record = move |event: Event| recorder.lock().unwrap().push(event.f);
    let result = schedule::run(&db, &mut failing, Duration::from_millis(100), never, record).await;
    assert!(matches!(result, Err(NemesisError::Unsupported { .. })), "{result:?}");
    assert_eq!(events.lock().unwrap().last().map(String::as_str), Some("heal"));
    assert_all_healthy(&db).await;
    db.teardown().await.unwrap();
}
