//! The slice of the seeded-bug matrix that `make test` runs (the cases of
//! `workloads/scenarios/bugs.toml` marked `ci`, first seed): each planted
//! bug must be caught (INVALID), and the same scenario on correct nodes
//! must be VALID. A kit that never says INVALID, or that cries wolf, fails
//! here. `make test-bugs` runs all of it.

use harness::db::Disks;
use harness::verdict::Validity;
use std::path::Path;
use workloads::matrix;

fn bugs_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/bugs.toml")
}

/// The node's catalogue of bugs, from the kvnode binary this build made.
fn catalogue() -> Vec<String> {
    let binary = harness::db::local::kvnode_binary().expect("kvnode is built with the workspace");
    let output = std::process::Command::new(binary).arg("--list-test-bugs").output().expect("kvnode runs");
    assert!(output.status.success());
    let lines = String::from_utf8(output.stdout).unwrap();
    let name =
        |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["name"].as_str().unwrap().to_owned();
    lines.lines().map(name).collect()
}

#[test]
fn every_bug_of_the_catalogue_has_a_scenario_and_ci_runs_some() {
    let (seeds, cases) = matrix::load(&bugs_file()).expect("bugs.toml loads");
    assert_eq!(seeds.len(), 3, "the matrix runs three seeds");
    let catalogue = catalogue();
    assert!(catalogue.len() >= 8, "{catalogue:?}");
    for bug in &catalogue {
        assert_eq!(cases.iter().filter(|c| c.bug == *bug).count(), 1, "one scenario for {bug}");
    }
    assert!(cases.iter().filter(|c| c.ci).count() >= 3, "make test runs a slice of the matrix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_slice_catches_every_planted_bug_and_passes_the_correct_cluster() {
    let (seeds, cases) = matrix::load(&bugs_file()).expect("bugs.toml loads");
    let dir = std::env::temp_dir().join(format!("bug-matrix-ci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rows = Vec::new();
    let skip_fuse = std::env::var_os("KVTEST_SKIP_FUSE").is_some();
    for case in cases.iter().filter(|c| c.ci) {
        if skip_fuse && case.scenario.disks() == Disks::PowerLoss {
            eprintln!("SKIPPED {}: it needs the power-loss file system and KVTEST_SKIP_FUSE is set", case.bug);
            continue;
        }
        let row = matrix::run_case(case, "", &seeds[..1], &dir, |scenario, report| {
            eprintln!("{}: {:?} {:?}", scenario.name, report.validity, report.folder)
        })
        .await
        .expect("the runs complete");
        rows.push(row);
    }
    let page = matrix::write(&dir, &seeds[..1], &rows).unwrap();
    for row in &rows {
        let with: Vec<Validity> = row.with_bug.iter().map(|c| c.verdict).collect();
        let without: Vec<Validity> = row.without_bug.iter().map(|c| c.verdict).collect();
        assert_eq!(with, [Validity::Invalid], "{} was not caught: {:#?}", row.bug, row.with_bug);
        assert_eq!(
            without,
            [Validity::Valid],
            "{} scenario flags the correct cluster: {:#?}",
            row.bug,
            row.without_bug
        );
        assert!(row.with_bug[0].first_anomaly_s.is_some() && row.with_bug[0].explanation.is_some());
    }
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains(&format!("{} of {} bugs", rows.len(), rows.len())), "the page says all were caught");
}
