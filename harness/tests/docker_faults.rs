//! Real faults on a real container cluster: partitions cut exactly the
//! chosen pairs, kills keep acknowledged data, pauses silence a node, skew
//! moves its clock, and nothing is left behind. Needs Docker and the image
//! from `make image` (which `make test` builds first).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use harness::db::docker::{connect, DockerDb};
use harness::db::{ClusterSpec, Db};
use harness::nemesis::grudge::{self, Grudge};
use harness::nemesis::{ClusterNemesis, Fault, FaultKind, Nemesis, NemesisError};
use harness::node_api::NodeApi;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use testcontainers::bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};

/// Docker tests share two cores: one cluster at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_env_filter("harness=info").with_test_writer().try_init();
}

/// Every ordered pair's reachability, probed by the nodes themselves.
async fn reachability(db: &DockerDb) -> HashMap<(String, String), bool> {
    let api = NodeApi::with_secret(Duration::from_secs(5), db.cluster_secret().as_deref());
    let nodes = db.nodes();
    let probes = nodes.iter().flat_map(|from| nodes.iter().filter(move |to| *to != from).map(move |to| (from, to)));
    let results = futures::future::join_all(probes.map(|(from, to)| {
        let api = api.clone();
        let url = db.base_url(from).unwrap();
        async move {
            let answer = api.probe(&url, to).await.expect("probe hook answers");
            ((from.clone(), to.clone()), answer.reachable)
        }
    }))
    .await;
    results.into_iter().collect()
}

async fn host_reaches_everyone(db: &DockerDb) -> bool {
    let api = NodeApi::with_secret(Duration::from_secs(2), db.cluster_secret().as_deref());
    for node in db.nodes() {
        if !api.healthy(&db.base_url(&node).unwrap()).await {
            return false;
        }
    }
    true
}

async fn assert_cut_exactly(db: &DockerDb, grudge: &Grudge, shape: &str) {
    for ((from, to), reachable) in reachability(db).await {
        let cut = grudge.get(&from).is_some_and(|cut| cut.contains(&to));
        assert_eq!(reachable, !cut, "{shape}: {from} -> {to} reachable={reachable}, grudge {grudge:?}");
    }
    assert!(host_reaches_everyone(db).await, "{shape}: the harness lost a node");
}

async fn leftovers(run_id: &str) -> (usize, usize) {
    let docker = connect().await.unwrap();
    let filters = HashMap::from([("label".to_owned(), vec![format!("org.kvtest.run={run_id}")])]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let containers = docker.list_containers(Some(options)).await.unwrap().len();
    let filters = HashMap::from([("name".to_owned(), vec![run_id.to_owned()])]);
    let networks = docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await.unwrap().len();
    (containers, networks)
}

async fn partitions_on(nodes: usize) {
    let _serial = ONE_AT_A_TIME.lock().await;
    init_logs();
    let db = DockerDb::start(&ClusterSpec::new(nodes)).await.expect("docker cluster starts");
    let run_id = db.run_id().to_owned();
    let mut nemesis = ClusterNemesis::new(vec![FaultKind::Partition], StdRng::seed_from_u64(nodes as u64));
    nemesis.setup(&db).await.unwrap();
    let all = db.nodes();
    let mut rng = StdRng::seed_from_u64(42);
    let mut shapes: Vec<(&'static str, Grudge)> = vec![
        ("isolate-one", grudge::isolate_one(&all, &mut rng)),
        ("random-halves", grudge::random_halves(&all, &mut rng)),
        ("bridge", grudge::bridge(&all, &mut rng)),
    ];
    if nodes >= 5 {
        shapes.push(("majorities-ring", grudge::majorities_ring(&all, &mut rng)));
    }
    for (shape, grudge) in shapes {
        nemesis.apply(&db, Fault::Partition { shape, grudge: grudge.clone() }).await.unwrap();
        assert_cut_exactly(&db, &grudge, shape).await;
        nemesis.heal(&db).await.unwrap();
        assert_cut_exactly(&db, &Grudge::new(), &format!("{shape} healed")).await;
    }
    db.teardown().await.unwrap();
    assert_eq!(leftovers(&run_id).await, (0, 0), "containers or networks left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_cut_exactly_the_chosen_pairs_on_three_nodes() {
    partitions_on(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_cut_exactly_the_chosen_pairs_on_five_nodes() {
    partitions_on(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_pauses_skew_and_loss_do_what_they_say() {
    let _serial = ONE_AT_A_TIME.lock().await;
    init_logs();
    let db = DockerDb::start(&ClusterSpec::new(3)).await.expect("docker cluster starts");
    let run_id = db.run_id().to_owned();
    let mut nemesis = ClusterNemesis::new(FaultKind::ALL.to_vec(), StdRng::seed_from_u64(7));
    nemesis.setup(&db).await.unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let api = NodeApi::with_secret(Duration::from_secs(1), db.cluster_secret().as_deref());

    // Kill -9 of every node, restart: acknowledged data is all there.
    let mut acked = Vec::new();
    for i in 0..20 {
        let url = format!("{}/api/v1/item", db.base_url(&format!("n{}", i % 3 + 1)).unwrap());
        let body = json!({"key": format!("k{i}"), "value": BASE64.encode(format!("v{i}"))});
        let answer: Value = client.post(url).json(&body).send().await.unwrap().json().await.unwrap();
        acked.push((format!("k{i}"), answer["timestamp"].as_u64().expect("acknowledged")));
    }
    nemesis.apply(&db, Fault::Kill { nodes: db.nodes() }).await.unwrap();
    assert!(!api.healthy(&db.base_url("n1").unwrap()).await, "a killed node answered");
    nemesis.heal(&db).await.unwrap();
    // Every node stopped uncleanly, so each repairs from its peers before
    // it answers reads again (cluster::recovery); wait for that.
    let mut waited = 0;
    while !harness::runner::nodes_recovered(&db, &db.nodes()).await {
        assert!(waited < 300, "nodes still recovering from their peers after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    for (i, (key, timestamp)) in acked.iter().enumerate() {
        let url = format!("{}/api/v1/item?key={key}&consistency=strong", db.base_url("n2").unwrap());
        let answer: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["value"], BASE64.encode(format!("v{i}")), "{key} lost in kill -9");
        assert_eq!(answer["timestamp"], *timestamp);
    }

    // Pause: silent while frozen, back on resume.
    nemesis.apply(&db, Fault::Pause { nodes: vec!["n2".into()] }).await.unwrap();
    assert!(!api.healthy(&db.base_url("n2").unwrap()).await, "a paused node answered");
    assert!(api.healthy(&db.base_url("n1").unwrap()).await);
    nemesis.heal(&db).await.unwrap();
    assert!(api.healthy(&db.base_url("n2").unwrap()).await, "a resumed node is silent");

    // Skew: the node's clock moves by the asked amount, and back.
    nemesis.apply(&db, Fault::ClockBump { node: "n3".into(), offset_ms: 7_000 }).await.unwrap();
    let host_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let clock = api.clock(&db.base_url("n3").unwrap()).await.unwrap();
    assert_eq!(clock.offset_ms, 7_000);
    let skew = clock.now_ms as i64 - host_ms;
    assert!((6_000..8_000).contains(&skew), "n3's clock is {skew} ms off, asked 7000");
    nemesis.heal(&db).await.unwrap();
    assert_eq!(api.clock(&db.base_url("n3").unwrap()).await.unwrap().offset_ms, 0);

    // Total packet loss into n1 cuts it from its peers, not from the harness.
    nemesis.apply(&db, Fault::Loss { nodes: vec!["n1".into()], probability: 1.0 }).await.unwrap();
    let reach = reachability(&db).await;
    assert!(!reach[&("n1".to_owned(), "n2".to_owned())] && !reach[&("n1".to_owned(), "n3".to_owned())]);
    assert!(reach[&("n2".to_owned(), "n3".to_owned())]);
    assert!(host_reaches_everyone(&db).await);
    nemesis.heal(&db).await.unwrap();
    assert!(reachability(&db).await.values().all(|reachable| *reachable));

    // Delay needs netem; where the kernel lacks it, the nemesis says so.
    match nemesis.apply(&db, Fault::Delay { nodes: vec!["n1".into()], delay_ms: 50 }).await {
        Ok(_) => eprintln!("netem is available: delay injected"),
        Err(NemesisError::Unsupported { why, .. }) => assert!(why.contains("netem"), "{why}"),
        Err(other) => panic!("delay failed without saying why: {other}"),
    }
    nemesis.heal(&db).await.unwrap();

    let logs = std::env::temp_dir().join(format!("{run_id}-logs"));
    db.collect_logs(&logs).await.unwrap();
    let n1_log = std::fs::read_to_string(logs.join("n1.log")).unwrap();
    assert_eq!(n1_log.matches("kvnode ready").count(), 2, "n1's log shows both of its starts");
    db.teardown().await.unwrap();
    assert_eq!(leftovers(&run_id).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_that_fails_leaves_nothing_behind() {
    let _serial = ONE_AT_A_TIME.lock().await;
    init_logs();
    let (tell, run_id) = tokio::sync::oneshot::channel();
    let failing = tokio::spawn(async move {
        let db = DockerDb::start(&ClusterSpec::new(3)).await.expect("docker cluster starts");
        tell.send(db.run_id().to_owned()).unwrap();
        assert!(db.nodes().is_empty(), "failing on purpose, with the cluster up");
    });
    assert!(failing.await.unwrap_err().is_panic());
    let run_id = run_id.await.unwrap();
    // Removal on drop is synchronous; the network follows its last container.
    let mut left = leftovers(&run_id).await;
    for _ in 0..50 {
        if left == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = leftovers(&run_id).await;
    }
    assert_eq!(left, (0, 0), "a panicking test left containers or networks behind");
}
