//! The HTML report of a stored run with a known anomaly (a planted
//! last-write-wins bug under clock skew): the page shows the anomalies'
//! operations and explanations, every link resolves inside the folder, and
//! a headless browser loads it from `file://` with no console error.

use harness::report;
use harness::report::anomaly::anomalies as anomalies_of;
use harness::runner::RunSummary;
use harness::verdict::{CheckResult, Validity};
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lww-bug");

/// A fresh run folder from the fixture, with results recomputed from its
/// history by today's checkers; under a fresh `reports` folder. (The
/// fixture's `results.json` keeps only the run's summary: the verdicts are
/// always today's.)
fn stored_run(name: &str) -> (PathBuf, PathBuf, Vec<CheckResult>) {
    let reports = std::env::temp_dir().join(format!("report-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&reports);
    let folder = reports.join("2026-11-29T08-45-07Z-lww-bug");
    std::fs::create_dir_all(folder.join("logs")).unwrap();
    for file in ["config.json", "history.jsonl", "convergence.json", "logs/n1.log", "logs/n2.log", "logs/n3.log"] {
        std::fs::copy(Path::new(FIXTURE).join(file), folder.join(file)).unwrap();
    }
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(FIXTURE).join("results.json")).unwrap()).unwrap();
    let summary: RunSummary = serde_json::from_value(stored["summary"].clone()).unwrap();
    let checkers = workloads::WorkloadKind::Register.checkers();
    let results = workloads::run::check(checkers, &folder.join("history.jsonl"), Some(&summary));
    let written =
        serde_json::json!({"valid": harness::verdict::merge(&results), "results": results, "summary": summary});
    std::fs::write(folder.join("results.json"), serde_json::to_string_pretty(&written).unwrap()).unwrap();
    (reports, folder, results)
}

/// Every `href="..."` and `src="..."` of a page.
fn links(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["href=\"", "src=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            found.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    found
}

fn assert_links_resolve(page: &Path, at_least: usize) {
    let html = std::fs::read_to_string(page).unwrap();
    let base = page.parent().unwrap();
    let links = links(&html);
    assert!(links.len() >= at_least, "too few links: {links:?}");
    for link in links.iter().filter(|l| !l.starts_with('#')) {
        assert!(!link.contains("://"), "{link}: a report needs no network");
        let target = base.join(link);
        assert!(target.exists(), "{link} in {} resolves to nothing", page.display());
    }
}

#[test]
fn a_stored_run_with_a_known_anomaly_renders_its_evidence() {
    let (reports, folder, results) = stored_run("evidence");
    assert!(results.iter().any(|r| r.checker == "linearizable" && r.valid == Validity::Invalid));
    let page = report::render(&folder).expect("the report renders");
    report::index::write(&reports).expect("the index is written");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("INVALID"));
    let anomalies = anomalies_of(&results);
    assert!(anomalies.len() > 3, "the fixture holds several anomalies");
    for anomaly in anomalies.iter().take(report::MAX_TIMELINES) {
        let explanation = report::html::esc(&anomaly.explanation);
        assert!(html.contains(&explanation), "the page explains: {}", anomaly.explanation);
        for index in anomaly.culprits.iter().chain(&anomaly.named) {
            assert!(html.contains(&format!("<tr><td>{index}</td>")), "operation {index} is listed");
        }
    }
    // The first anomaly's timeline names the read and the write it contradicts.
    let first = &anomalies[0];
    assert!(!first.named.is_empty(), "the register model names the contradicting write");
    let svg = std::fs::read_to_string(folder.join("plots/anomaly-1.svg")).unwrap();
    assert!(svg.contains("get strong"), "the timeline labels the read");
    assert_links_resolve(&page, 20);
    assert_links_resolve(&reports.join("index.html"), 1);
    let index = std::fs::read_to_string(reports.join("index.html")).unwrap();
    assert!(index.contains("lww-bug") && index.contains("INVALID"));
}

/// Debian's chromium (installed by `.ci/run`), or another Chrome.
fn browser() -> Option<PathBuf> {
    let names = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name))).find(|p| p.is_file())
}

/// Loads `page` headless; returns the console lines it logged.
fn load_in_browser(browser: &Path, page: &Path, screenshot: &Path) -> Vec<String> {
    // Bounded: a browser that hangs fails the test instead of CI.
    let output = Command::new("timeout")
        .args(["--kill-after=10", "120"])
        .arg(browser)
        // Root in CI needs --no-sandbox; a small /dev/shm in containers needs
        // --disable-dev-shm-usage.
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--window-size=1280,3000")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("the browser starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser failed: {stderr}");
    stderr.lines().filter(|line| line.contains(":CONSOLE")).map(str::to_owned).collect()
}

#[test]
fn the_report_loads_in_a_headless_browser_without_console_errors() {
    let Some(browser) = browser() else {
        if std::env::var("REPORT_BROWSER_CHECK").as_deref() == Ok("skip") {
            eprintln!("no browser; skipped because REPORT_BROWSER_CHECK=skip");
            return;
        }
        panic!("no chromium on PATH: `apt-get install chromium` (CI's .ci/run does), or set REPORT_BROWSER_CHECK=skip");
    };
    let (reports, folder, _) = stored_run("browser");
    let page = report::render(&folder).expect("the report renders");
    report::index::write(&reports).unwrap();
    let screenshot = folder.join("screenshot.png");
    let console = load_in_browser(&browser, &page, &screenshot);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "a screenshot of the page is saved ({size} bytes)");
    // The check itself can fail: a missing plot is reported on the console.
    std::fs::remove_file(folder.join("plots/throughput.svg")).unwrap();
    let console = load_in_browser(&browser, &page, &folder.join("broken.png"));
    assert!(console.iter().any(|l| l.contains("throughput.svg")), "a missing plot is caught: {console:#?}");
    eprintln!("screenshot: {}", screenshot.display());
}
