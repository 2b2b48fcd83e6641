//! `reports/index.html`: every run folder, newest first, with its date,
//! scenario, verdict and a link to its page. Rewritten after each run.

use super::html::{badge, esc, page, table, url_path};
use super::ReportError;
use crate::verdict::Validity;
use std::path::{Path, PathBuf};

/// One row of the index.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub folder: String,
    pub started: String,
    pub scenario: String,
    /// "register under partition, kill".
    pub what: String,
    pub seed: String,
    pub validity: Option<Validity>,
    pub reason: String,
    pub events: Option<u64>,
    pub has_page: bool,
}

fn json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// What a run folder says of itself; `None` when it is no run folder.
fn entry(folder: &Path) -> Option<Entry> {
    let config = json(&folder.join("config.json"))?;
    let name = folder.file_name()?.to_string_lossy().into_owned();
    let results = json(&folder.join("results.json"));
    let validity = results.as_ref().and_then(|r| serde_json::from_value(r["valid"].clone()).ok());
    let start_ms = results.as_ref().and_then(|r| r["summary"]["start_unix_ms"].as_u64());
    let reason = match &results {
        None => "no results: the run did not finish".to_owned(),
        Some(r) => r["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["valid"] != "valid")
            .map(|c| format!("{}: {}", c["checker"].as_str().unwrap_or("?"), c["reason"].as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Some(Entry {
        started: start_ms.map_or_else(|| name.chars().take(20).collect(), crate::utc::text_from_unix_ms),
        scenario: config["scenario"]["name"].as_str().unwrap_or("?").to_owned(),
        what: describe_scenario(&config["scenario"]),
        seed: config["seed"].to_string(),
        validity,
        reason,
        events: results.as_ref().and_then(|r| r["summary"]["events"].as_u64()),
        has_page: folder.join("index.html").is_file(),
        folder: name,
    })
}

/// The workload and its faults, in words.
fn describe_scenario(scenario: &serde_json::Value) -> String {
    let workload = scenario["workload"].as_str().unwrap_or("?");
    let faults: Vec<&str> = scenario["nemesis"].as_array().into_iter().flatten().filter_map(|f| f.as_str()).collect();
    let nodes = scenario["nodes"].as_u64().map_or(String::new(), |n| format!(", {n} nodes"));
    if faults.is_empty() {
        format!("{workload}, no faults{nodes}")
    } else {
        format!("{workload} under {}{nodes}", faults.join(", "))
    }
}

/// The index page of `entries`. Pure.
pub fn build(entries: &[Entry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let link = if e.has_page { format!("{}/index.html", e.folder) } else { format!("{}/", e.folder) };
            vec![
                esc(&e.started),
                format!("<a href=\"{}\">{}</a>", esc(&url_path(&link)), esc(&e.scenario)),
                esc(&e.what),
                e.validity.map_or("<span class=\"badge unknown\">UNFINISHED</span>".into(), badge),
                e.events.map_or("–".into(), |n| n.to_string()),
                esc(&e.seed),
                esc(&e.reason),
            ]
        })
        .collect();
    let body = format!(
        "<header><h1>Runs</h1><p>{} runs, newest first. Each links to its report.</p></header>{}",
        entries.len(),
        table(&["started", "scenario", "what ran", "verdict", "events", "seed", "what failed or is unknown"], &rows)
    );
    page("Runs", &body)
}

/// Rewrites `reports/index.html` from the run folders in `reports`.
pub fn write(reports: &Path) -> Result<PathBuf, ReportError> {
    let listing = std::fs::read_dir(reports)
        .map_err(|e| ReportError::Read { path: reports.to_owned(), message: e.to_string() })?;
    let mut entries: Vec<Entry> = listing.filter_map(|e| e.ok()).filter_map(|e| entry(&e.path())).collect();
    // Folder names start with their UTC start time: newest first, also for
    // runs that never wrote results.
    entries.sort_by(|a, b| b.folder.cmp(&a.folder));
    let path = reports.join("index.html");
    std::fs::write(&path, build(&entries)).map_err(|source| ReportError::Write { path: path.clone(), source })?;
    Ok(path)
}
