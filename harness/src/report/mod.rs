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

use crate::history::{self, Event};
use crate::verdict::{merge, CheckResult, Validity};
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
    pub events: Vec<Event>,
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

/// Loads a run folder: `config.json`, `results.json`, `history.jsonl`.
pub fn load(folder: &Path) -> Result<Run, ReportError> {
    let history_path = folder.join("history.jsonl");
    let events =
        history::read(&history_path).map_err(|e| ReportError::Read { path: history_path, message: e.to_string() })?;
    load_with_events(folder, events)
}

/// [`load`] for a caller that already holds the folder's history.
pub fn load_with_events(folder: &Path, events: Vec<Event>) -> Result<Run, ReportError> {
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
    Ok(Run { name, config, results, summary: written["summary"].clone(), events, files })
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
