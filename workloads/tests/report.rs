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

/// The browser, or `None` (skip) only when REPORT_BROWSER_CHECK=skip says
/// so: CI installs chromium, and a test that skips itself silently could
/// never fail.
fn required_browser() -> Option<PathBuf> {
    if let Some(browser) = browser() {
        return Some(browser);
    }
    if std::env::var("REPORT_BROWSER_CHECK").as_deref() == Ok("skip") {
        eprintln!("no browser; skipped because REPORT_BROWSER_CHECK=skip");
        return None;
    }
    panic!("no chromium on PATH: `apt-get install chromium` (CI's .ci/run does), or set REPORT_BROWSER_CHECK=skip");
}

/// Debian's chromium (installed by `.ci/run`), or another Chrome.
fn browser() -> Option<PathBuf> {
    let names = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name))).find(|p| p.is_file())
}

/// Loads `page` headless; returns the console lines it logged.
fn load_in_browser(browser: &Path, page: &Path, screenshot: &Path) -> Vec<String> {
    load_url_in_browser(browser, &format!("file://{}", page.display()), screenshot)
}

fn load_url_in_browser(browser: &Path, url: &str, screenshot: &Path) -> Vec<String> {
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
        .arg(url)
        .output()
        .expect("the browser starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser failed: {stderr}");
    stderr.lines().filter(|line| line.contains(":CONSOLE")).map(str::to_owned).collect()
}

#[test]
fn the_report_loads_in_a_headless_browser_without_console_errors() {
    let Some(browser) = required_browser() else { return };
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

/// Status, content type and body of a GET.
async fn fetch(url: String) -> (u16, String, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

/// Kills `harness serve` when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `harness serve` over a reports folder: the index at `/`, the run's page
/// and its raw files over HTTP, nothing outside the folder, and the page
/// loads in a headless browser from the URL with no console error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_serve_shows_the_reports_over_http() {
    use std::io::BufRead;
    let (reports, folder, _) = stored_run("serve");
    report::render(&folder).expect("the report renders");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("--reports")
        .arg(&reports)
        .args(["serve", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut first = String::new();
    std::io::BufReader::new(stdout).read_line(&mut first).unwrap();
    let base =
        first.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("{first}")).to_owned();
    let get = |path: String| fetch(format!("{base}{path}"));
    let run = folder.file_name().unwrap().to_str().unwrap().to_owned();
    let (status, kind, index) = get(String::new()).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(index.contains(&run) && index.contains("INVALID"), "the index lists the run: {index}");
    let (status, _, page) = get(format!("{run}/")).await;
    assert!(status == 200 && page.contains("INVALID"), "{status}");
    let (status, kind, history) = get(format!("{run}/history.jsonl")).await;
    assert_eq!((status, kind.as_str()), (200, "text/plain; charset=utf-8"));
    assert_eq!(history, std::fs::read_to_string(folder.join("history.jsonl")).unwrap());
    let (status, _, _) = get(format!("{run}/../../../etc/passwd")).await;
    assert!(status == 404 || status == 400, "nothing outside the folder: {status}");
    let (status, _, _) = get("no-such-run/".into()).await;
    assert_eq!(status, 404);

    let Some(browser) = required_browser() else { return };
    let url = format!("{base}{run}/index.html");
    let console = tokio::task::spawn_blocking({
        let (browser, shot) = (browser.clone(), folder.join("served.png"));
        move || load_url_in_browser(&browser, &url, &shot)
    })
    .await
    .unwrap();
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(std::fs::metadata(folder.join("served.png")).map(|m| m.len()).unwrap_or(0) > 20_000);
    drop(server);
}
