//! The HTML report of a run folder: `index.html` with its plots in
//! `plots/`, beside the history, results and logs it links to; and
//! `reports/index.html`, every run newest first.
//!
//! [`build`] is pure (a loaded [`Run`] in, the page and its SVG files
//! out); [`write()`] writes the files; [`render`] loads a folder and writes.

pub mod anomaly;
pub mod data;
pub mod html;
pub mod index;
pub mod plot;
mod sections;

use crate::history::{self, Event, Process};
use crate::verdict::{merge, CheckResult, Validity};
use data::Sample;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Scatter plots draw at most this many operations (honestly downsampled
/// beyond, and said so).
pub const MAX_SCATTER_POINTS: usize = 20_000;
/// Anomalies drawn on a timeline; the rest are listed.
pub const MAX_TIMELINES: usize = 12;
/// Rows of any table; the full data is in the linked files.
pub const MAX_TABLE_ROWS: usize = 100;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

/// Everything a run folder holds that the page shows.
#[derive(Debug)]
pub struct Run {
    /// The folder's name (`2026-11-29T08-37-19Z-lww-bug`).
    pub name: String,
    /// `config.json`: the scenario, the seed, the command that reproduces it.
    pub config: serde_json::Value,
    pub results: Vec<CheckResult>,
    /// `results.json`'s `summary` (the runner's `RunSummary`), if any.
    pub summary: serde_json::Value,
    pub history: History,
    /// Files beside the page to link to, relative to the folder.
    pub files: Vec<String>,
}

impl Run {
    pub fn validity(&self) -> Validity {
        merge(&self.results)
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, ReportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReportError::Read { path: path.to_owned(), message: e.to_string() })?;
    serde_json::from_str(&text).map_err(|e| ReportError::Read { path: path.to_owned(), message: e.to_string() })
}

/// A run's operations as the page draws them.
#[derive(Debug, Default)]
pub struct History {
    /// Every client operation, in invocation order; those on keys that an
    /// anomaly names carry their details.
    pub samples: Vec<Sample>,
    /// The nemesis events, in history order.
    pub nemesis: Vec<Event>,
    /// When the last event happened (ns since the start).
    pub end_ns: u64,
}

impl History {
    /// From events held in memory (small histories, tests), every
    /// operation with its details.
    pub fn from_events(events: &[Event]) -> History {
        History {
            samples: data::samples(events),
            nemesis: events.iter().filter(|e| e.process == Process::NEMESIS).cloned().collect(),
            end_ns: events.last().map_or(0, |e| e.time),
        }
    }
}

/// The history at `path`, read from disk a shard at a time
/// ([`history::shards`]) so that its size does not bound what memory
/// allows: samples of every operation, details for the keys the anomalies
/// of `results` name.
pub fn gather(path: &Path, results: &[CheckResult]) -> Result<History, ReportError> {
    let read = |e: history::HistoryError| ReportError::Read { path: path.to_owned(), message: e.to_string() };
    let shards = history::shards::split_beside(path).map_err(read)?;
    let mut samples = data::Samples::default();
    shards.for_each(|events| samples.add(events, &|_| false)).map_err(read)?;
    finish_gather(&shards, samples, results).map_err(read)
}

/// The history from its `shards` and the `samples` gathered from them:
/// the anomalies' keys are read again (their shards only) for details.
pub fn finish_gather(
    shards: &history::shards::Shards,
    samples: data::Samples,
    results: &[CheckResult],
) -> Result<History, history::HistoryError> {
    let mut samples = samples.finish();
    let keys: BTreeSet<String> = anomaly::anomalies(results).into_iter().take(MAX_TIMELINES).map(|a| a.key).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let wanted = |key: &str| keys.contains(&key);
    shards.for_each_holding(&keys, |events| data::detail(&mut samples, events, &wanted))?;
    Ok(History { samples, nemesis: shards.nemesis.clone(), end_ns: shards.end_ns })
}

/// Loads a run folder: `config.json`, `results.json`, `history.jsonl`
/// (from disk, a shard at a time: see [`gather`]).
pub fn load(folder: &Path) -> Result<Run, ReportError> {
    let mut run = load_parts(folder)?;
    run.history = gather(&folder.join("history.jsonl"), &run.results)?;
    Ok(run)
}

/// [`load`] for a caller that already holds the folder's history.
pub fn load_with_history(folder: &Path, history: History) -> Result<Run, ReportError> {
    let mut run = load_parts(folder)?;
    run.history = history;
    Ok(run)
}

/// Everything but the history.
fn load_parts(folder: &Path) -> Result<Run, ReportError> {
    let config = read_json(&folder.join("config.json"))?;
    let results_path = folder.join("results.json");
    let written = read_json(&results_path)?;
    let results: Vec<CheckResult> = serde_json::from_value(written["results"].clone())
        .map_err(|e| ReportError::Read { path: results_path, message: format!("its results: {e}") })?;
    let mut files: Vec<String> = ["config.json", "history.jsonl", "results.json", "convergence.json"]
        .into_iter()
        .filter(|f| folder.join(f).is_file())
        .map(str::to_owned)
        .collect();
    if let Ok(logs) = std::fs::read_dir(folder.join("logs")) {
        let mut logs: Vec<String> = logs
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".log"))
            .map(|name| format!("logs/{name}"))
            .collect();
        logs.sort();
        files.extend(logs);
    }
    let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Run { name, config, results, summary: written["summary"].clone(), history: History::default(), files })
}

/// A page and the plot files it refers to (paths relative to the folder).
#[derive(Debug)]
pub struct Page {
    pub html: String,
    pub plots: Vec<(String, String)>,
}

/// The report of `run`. Pure.
pub fn build(run: &Run) -> Result<Page, ReportError> {
    sections::build(run)
}

/// Loads the run folder and writes its report ([`write()`]); returns the page.
pub fn render(folder: &Path) -> Result<PathBuf, ReportError> {
    write(folder, &load(folder)?)
}

/// Writes `index.html` and `plots/` for `run` into its folder.
pub fn write(folder: &Path, run: &Run) -> Result<PathBuf, ReportError> {
    let page = build(run)?;
    let plots = folder.join("plots");
    std::fs::create_dir_all(&plots).map_err(|source| ReportError::Write { path: plots.clone(), source })?;
    for (name, svg) in &page.plots {
        let path = folder.join(name);
        std::fs::write(&path, svg).map_err(|source| ReportError::Write { path, source })?;
    }
    let path = folder.join("index.html");
    std::fs::write(&path, &page.html).map_err(|source| ReportError::Write { path: path.clone(), source })?;
    Ok(path)
}
