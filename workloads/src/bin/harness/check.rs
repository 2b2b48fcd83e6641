//! `harness check`: existing histories judged against a model, one verdict
//! block per file (or one JSON document with `--json`).

use crate::output::{outln, worst_code};
use anyhow::Context;
use harness::checker::linearizable::{self, Budget};
use harness::checker::{durability, session, staleness, ttl};
use harness::history::Event;
use harness::model::append_kv::AppendKv;
use harness::model::cas_register::CasRegister;
use harness::model::register::Register;
use harness::model::ModelKind;
use harness::verdict::{merge, CheckResult, Validity};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One history's outcome.
#[derive(Serialize)]
pub struct Checked {
    pub path: PathBuf,
    /// `None` when the file could not be read.
    pub verdict: Option<Validity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub events: usize,
    pub keys: usize,
    pub model: ModelKind,
    pub elapsed_ms: f64,
    pub results: Vec<CheckResult>,
}

/// Checks each history in turn and prints what it found; returns the exit
/// code (`output::worst_code`).
pub fn check_files(paths: &[PathBuf], model: ModelKind, budget: &Budget, json: bool) -> i32 {
    let mut all = Vec::new();
    for path in paths {
        let started = Instant::now();
        let checked = match harness::history::read(path).with_context(|| format!("reading {}", path.display())) {
            Ok(events) => judge(path, &events, model, budget, started),
            Err(error) => Checked {
                path: path.clone(),
                verdict: None,
                error: Some(format!("{error:#}")),
                events: 0,
                keys: 0,
                model,
                elapsed_ms: 0.0,
                results: Vec::new(),
            },
        };
        if !json {
            print_checked(&checked);
        }
        all.push(checked);
    }
    let outcomes: Vec<Option<Validity>> = all.iter().map(|c| c.verdict).collect();
    let code = worst_code(&outcomes);
    if json {
        let document = serde_json::json!({ "histories": all, "exit_code": code });
        outln!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
    } else if paths.len() > 1 {
        let count = |v: Option<Validity>| outcomes.iter().filter(|x| **x == v).count();
        outln!(
            "{} histories: {} valid, {} invalid, {} unknown, {} unreadable; exit code {code}",
            paths.len(),
            count(Some(Validity::Valid)),
            count(Some(Validity::Invalid)),
            count(Some(Validity::Unknown)),
            count(None),
        );
    }
    code
}

/// Every checker `model`'s histories can take.
pub fn judge(path: &Path, events: &[Event], model: ModelKind, budget: &Budget, started: Instant) -> Checked {
    let keys: std::collections::BTreeSet<_> = events.iter().filter_map(|e| e.key.clone()).collect();
    let mut results = vec![CheckResult::new(
        "well-formed",
        Validity::Valid,
        format!("{} events, every completion matches an invocation", events.len()),
    )];
    match model {
        ModelKind::Register => {
            // Our API's histories: every checker that needs only the history,
            // and the TTL check when the run's results.json gives its start.
            results.push(linearizable::check(&Register, events, budget));
            results.push(durability::check(events));
            if events.iter().any(|e| e.min_timestamp.is_some()) {
                results.push(session::check(events));
            }
            if events.iter().any(|e| e.consistency.as_deref() == Some("eventual")) {
                results.push(staleness::check(events));
            }
            if let Some(start_unix_ms) = run_start(path) {
                results.push(ttl::check(events, start_unix_ms, workloads::run::TTL_TOLERANCE_MS));
            }
        }
        ModelKind::CasRegister => results.push(linearizable::check(&CasRegister, events, budget)),
        ModelKind::AppendKv => results.push(linearizable::check(&AppendKv, events, budget)),
    }
    Checked {
        path: path.to_owned(),
        verdict: Some(merge(&results)),
        error: None,
        events: events.len(),
        keys: keys.len(),
        model,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        results,
    }
}

/// The wall-clock start of the run whose folder holds `history`, from its
/// `results.json`, if there is one.
fn run_start(history: &Path) -> Option<u64> {
    let results = std::fs::read(history.parent()?.join("results.json")).ok()?;
    serde_json::from_slice::<serde_json::Value>(&results).ok()?["summary"]["start_unix_ms"].as_u64()
}

pub fn label(verdict: Option<Validity>) -> &'static str {
    match verdict {
        Some(Validity::Valid) => "VALID",
        Some(Validity::Invalid) => "INVALID",
        Some(Validity::Unknown) => "UNKNOWN",
        None => "ERROR",
    }
}

pub fn print_checked(checked: &Checked) {
    if let Some(error) = &checked.error {
        outln!("ERROR   {}: {error}", checked.path.display());
        return;
    }
    outln!(
        "{} {} ({} events, {} keys, model {:?}, {:.1} ms)",
        label(checked.verdict),
        checked.path.display(),
        checked.events,
        checked.keys,
        checked.model,
        checked.elapsed_ms
    );
    for result in &checked.results {
        print_result(result);
    }
}

/// One checker's line, and the anomalies it found with the operations
/// around each; says when keys were left unsearched after the first.
pub fn print_result(result: &CheckResult) {
    outln!("  {:<8} {:<14} {}", label(Some(result.valid)), result.checker, result.reason);
    for anomaly in result.evidence["anomalies"].as_array().into_iter().flatten().take(5) {
        outln!("           - {}", anomaly["explanation"].as_str().unwrap_or("?"));
        for op in anomaly["window"].as_array().into_iter().flatten() {
            outln!(
                "               {:>9.3} s  process {:<6} {}",
                op["invoke_s"].as_f64().unwrap_or(0.0),
                op["process"],
                op["op"].as_str().unwrap_or("?")
            );
        }
    }
    if result.evidence["not_searched_keys"].as_array().is_some_and(|keys| !keys.is_empty()) {
        outln!("           (stopped at the first anomaly; --all-anomalies searches every key)");
    }
}
