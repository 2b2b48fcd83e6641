//! Short runs of every workload against local processes, and a short
//! partition run against containers: a run folder with a well-formed
//! history, node logs, replica states and results.

use harness::history::{self, EventType, Process};
use harness::nemesis::FaultKind;
use harness::runner::Progress;
use harness::verdict::Validity;
use std::path::Path;
use std::sync::Arc;
use workloads::run::{run_scenario, RunReport};
use workloads::scenario::{Backend, Scenario};
use workloads::WorkloadKind;

fn scenario(name: &str, workload: WorkloadKind, nemesis: Vec<FaultKind>, backend: Backend) -> Scenario {
    Scenario {
        name: name.into(),
        workload,
        nemesis,
        nodes: 3,
        concurrency: 4,
        rate: 40.0,
        time_limit_secs: 6,
        nemesis_interval_secs: 2,
        backend,
        system: "kvnode".into(),
        adapter: Default::default(),
        external_nodes: Vec::new(),
        seed: Some(11),
        node_flags: Vec::new(),
        convergence_timeout_secs: 60,
        keys: Default::default(),
        op_timeout_ms: 5_000,
    }
}

fn reports_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("workload-runs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn assert_complete_run(report: &RunReport, nemesis: bool) {
    let files = ["config.json", "history.jsonl", "convergence.json", "results.json", "logs/n1.log", "index.html"];
    for file in files {
        assert!(report.folder.join(file).is_file(), "{file} missing from {}", report.folder.display());
    }
    let events = history::read(&report.folder.join("history.jsonl")).expect("a well-formed history");
    let ok = events.iter().filter(|e| e.kind == EventType::Ok).count();
    assert!(ok >= 50, "only {ok} operations succeeded");
    let faults = events.iter().filter(|e| e.process == Process::NEMESIS).count();
    assert_eq!(faults > 0, nemesis, "nemesis events: {faults}");
    // Final strong reads of every key touched.
    let finals: Vec<&history::Event> =
        events.iter().filter(|e| matches!(e.process, Process::Client(p) if p >= 1_000_000)).collect();
    let final_keys: std::collections::BTreeSet<&str> = finals.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(final_keys.len(), report.summary.keys, "a final read of every key");
    assert!(finals.iter().filter(|e| e.kind == EventType::Ok).count() >= report.summary.keys, "final reads succeed");
    assert_eq!(report.summary.converged, Some(true), "replicas did not converge: {}", report.folder.display());
    // The correct cluster, and a history small enough for every check to
    // decide: UNKNOWN here would be a check that failed to, so it fails too.
    assert_eq!(report.validity, Validity::Valid, "{:#?}", report.results);
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.folder.join("results.json")).unwrap()).unwrap();
    assert!(results["results"].as_array().is_some_and(|r| r.len() >= 2));
    assert_eq!(report.page.as_deref(), Some(report.folder.join("index.html").as_path()), "the report is written");
    assert!(
        report.folder.join("plots/latency-raw.svg").is_file() && report.folder.join("plots/throughput.svg").is_file()
    );
    assert!(report.folder.parent().unwrap().join("index.html").is_file(), "the index of runs is rewritten");
}

async fn run(scenario: &Scenario, reports: &Path) -> RunReport {
    run_scenario(scenario, reports, Arc::new(Progress::default())).await.expect("the run completes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_against_local_processes() {
    let reports = reports_dir("local");
    let faults = vec![FaultKind::Kill, FaultKind::Clock];
    for (workload, nemesis) in [
        (WorkloadKind::Register, faults.clone()),
        (WorkloadKind::Session, vec![FaultKind::Clock, FaultKind::Pause]),
        (WorkloadKind::Durability, faults),
        (WorkloadKind::Ttl, vec![]),
    ] {
        let has_nemesis = !nemesis.is_empty();
        let report = run(&scenario(workload.name(), workload, nemesis, Backend::Local), &reports).await;
        assert_complete_run(&report, has_nemesis);
    }
}

/// The membership fault mixed with kills: the cluster grows from 3 nodes
/// and shrinks, and a dead node is replaced (its plan: add, add, leave,
/// replace) under the register workload, and the run is VALID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_grows_and_shrinks_under_load_locally() {
    let reports = reports_dir("membership");
    let mut membership =
        scenario("membership", WorkloadKind::Register, vec![FaultKind::Membership, FaultKind::Kill], Backend::Local);
    membership.time_limit_secs = 45;
    membership.nemesis_interval_secs = 3;
    let report = run(&membership, &reports).await;
    assert_complete_run(&report, true);
    let events = history::read(&report.folder.join("history.jsonl")).unwrap();
    let nemesis: Vec<&str> = events.iter().filter(|e| e.process == Process::NEMESIS).map(|e| e.f.as_str()).collect();
    for change in ["join", "leave", "replace"] {
        assert!(nemesis.contains(&change), "no {change} in {nemesis:?} ({})", report.folder.display());
    }
    let served_by_joiner = events.iter().any(|e| e.kind == EventType::Ok && e.node.as_deref() == Some("n4"));
    assert!(served_by_joiner, "the joined node n4 served no operation");
}

/// The container scenario: the register workload while the nemesis grows
/// 3 containers to 5 and shrinks them to 4, with partitions between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_cluster_grows_and_shrinks_under_partitions() {
    let reports = reports_dir("membership-docker");
    let kinds = vec![FaultKind::Membership, FaultKind::Partition];
    let mut membership = scenario("membership-docker", WorkloadKind::Register, kinds, Backend::Docker);
    membership.time_limit_secs = 36;
    membership.nemesis_interval_secs = 3;
    let report = run(&membership, &reports).await;
    assert_complete_run(&report, true);
    let events = history::read(&report.folder.join("history.jsonl")).unwrap();
    let nemesis: Vec<&str> = events.iter().filter(|e| e.process == Process::NEMESIS).map(|e| e.f.as_str()).collect();
    assert!(nemesis.contains(&"join") && nemesis.contains(&"start-partition"), "{nemesis:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_partition_run_against_containers() {
    let reports = reports_dir("docker");
    let report =
        run(&scenario("partition", WorkloadKind::Register, vec![FaultKind::Partition], Backend::Docker), &reports)
            .await;
    assert_complete_run(&report, true);
    let events = history::read(&report.folder.join("history.jsonl")).unwrap();
    assert!(events.iter().any(|e| e.f == "start-partition"), "no partition was recorded");
    assert_eq!(events.iter().rev().find(|e| e.process == Process::NEMESIS).map(|e| e.f.as_str()), Some("heal"));
}
