//! The seeded-bug matrix: the evidence that the harness catches real bugs.
//!
//! A matrix file (`workloads/scenarios/bugs.toml`) gives, for every bug of
//! the node's catalogue (`kvnode --list-test-bugs`), the scenario that
//! gives it its fair chance: the workload, the faults and the sizes under
//! which its real-world original was found. Each scenario runs once per
//! seed against nodes started with the bug, and once per seed against the
//! correct nodes. A bug counts as caught in a run only when the verdict is
//! INVALID (UNKNOWN is not a catch); the correct cluster must be VALID in
//! every run. The result is `matrix.json` and an HTML page.
//!
//! Where a bug is not caught, the remedy is a sharper harness (workload,
//! generator, faults, checker), never a louder bug.

use crate::run::{run_scenario, RunReport};
use crate::scenario::{Scenario, ScenarioError};
use harness::history::{self, Event};
use harness::report::anomaly::anomalies;
use harness::report::html::{badge, esc, page, table, url_path};
use harness::runner::Progress;
use harness::verdict::{CheckResult, Validity};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One bug and the scenario that gives it its fair chance.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The `--test-bug` name.
    pub bug: String,
    /// Part of the slice `make test` runs (one seed each).
    #[serde(default)]
    pub ci: bool,
    /// Why this scenario exposes the bug, in a sentence.
    pub why: String,
    pub scenario: Scenario,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    seeds: Vec<u64>,
    case: Vec<Case>,
}

/// The seeds and the cases of a matrix file, validated.
pub fn load(path: &Path) -> Result<(Vec<u64>, Vec<Case>), ScenarioError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read { path: shown.clone(), error })?;
    let file: MatrixFile = toml::from_str(&text)
        .map_err(|error| ScenarioError::Parse { path: shown.clone(), error: error.to_string() })?;
    let invalid =
        |name: &str, problem: String| ScenarioError::Invalid { path: shown.clone(), name: name.into(), problem };
    if file.seeds.is_empty() {
        return Err(invalid("(file)", "seeds must list at least one seed".into()));
    }
    for case in &file.case {
        case.scenario.validate().map_err(|problem| invalid(&case.scenario.name, problem))?;
        if case.scenario.seed.is_some() {
            return Err(invalid(&case.scenario.name, "the matrix gives the seeds; leave seed out".into()));
        }
        if case.scenario.node_flags.iter().any(|flag| flag.starts_with("--test-bug")) {
            return Err(invalid(&case.scenario.name, "the matrix plants the bug; no --test-bug in node_flags".into()));
        }
    }
    Ok((file.seeds, file.case))
}

/// The scenario of one run: with the bug planted, or on correct nodes.
pub fn scenario_for(case: &Case, seed: u64, planted: bool) -> Scenario {
    let mut scenario = case.scenario.clone();
    scenario.seed = Some(seed);
    scenario.name = format!("{}-{}-s{seed}", scenario.name, if planted { "bug" } else { "correct" });
    if planted {
        scenario.node_flags.extend(["--test-bug".to_owned(), case.bug.clone()]);
    }
    scenario
}

/// One run of the matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub seed: u64,
    pub verdict: Validity,
    /// The run folder, relative to the matrix's folder.
    pub folder: String,
    /// Seconds from the start of traffic to the moment the first anomaly
    /// was observable (see [`first_anomaly`]).
    pub first_anomaly_s: Option<f64>,
    /// The first anomaly in one line.
    pub explanation: Option<String>,
    /// The checkers that found something.
    pub invalid_checkers: Vec<String>,
    pub elapsed_s: f64,
}

/// What one bug's runs showed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub bug: String,
    /// The catalogue's sentence: what the bug does, where it happened.
    pub origin: String,
    pub why: String,
    pub scenario: Scenario,
    pub with_bug: Vec<Cell>,
    pub without_bug: Vec<Cell>,
}

impl Row {
    pub fn detected(&self) -> usize {
        self.with_bug.iter().filter(|cell| cell.verdict == Validity::Invalid).count()
    }

    pub fn false_alarms(&self) -> usize {
        self.without_bug.iter().filter(|cell| cell.verdict != Validity::Valid).count()
    }

    /// Caught in at least two thirds of its runs, and no run of the
    /// correct cluster flagged.
    pub fn passes(&self) -> bool {
        self.detected() * 3 >= self.with_bug.len() * 2 && self.false_alarms() == 0 && !self.with_bug.is_empty()
    }
}

/// The cell of a finished run: its verdict, and its first anomaly read
/// from the checkers' evidence and the history's times.
pub fn cell(report: &RunReport, seed: u64, matrix_dir: &Path) -> Cell {
    let events = history::read(&report.folder.join("history.jsonl")).unwrap_or_default();
    let (first_anomaly_s, explanation) = first_anomaly(&report.results, &events);
    let folder = report.folder.strip_prefix(matrix_dir).unwrap_or(&report.folder).display().to_string();
    let invalid_checkers =
        report.results.iter().filter(|r| r.valid == Validity::Invalid).map(|r| r.checker.clone()).collect();
    Cell {
        seed,
        verdict: report.validity,
        folder,
        first_anomaly_s,
        explanation,
        invalid_checkers,
        elapsed_s: report.elapsed.as_secs_f64(),
    }
}

/// The first anomaly to become observable, and when: an anomaly is proven
/// once the last operation it involves has happened (the stale read, the
/// final read that misses a write), so its time is the latest of its
/// operations' times; the first is the one proven earliest. For a check
/// that names no operation (convergence): the end of traffic.
pub fn first_anomaly(results: &[CheckResult], events: &[Event]) -> (Option<f64>, Option<String>) {
    let seconds = |index: u64| events.get(index as usize).map(|e| e.time as f64 / 1e9);
    let earliest = anomalies(results)
        .into_iter()
        .filter_map(|a| Some((a.culprits.iter().chain(&a.named).filter_map(|i| seconds(*i)).reduce(f64::max)?, a)))
        .min_by(|(a, _), (b, _)| a.total_cmp(b));
    if let Some((at, anomaly)) = earliest {
        return (Some(at), Some(format!("{}: {}", anomaly.checker, anomaly.explanation)));
    }
    let end_of_traffic = events.iter().filter(|e| e.process != history::Process::NEMESIS).map(|e| e.time).max();
    let unexplained = results.iter().find(|r| r.valid == Validity::Invalid);
    match unexplained {
        Some(result) => {
            (end_of_traffic.map(|ns| ns as f64 / 1e9), Some(format!("{}: {}", result.checker, result.reason)))
        }
        None => (None, None),
    }
}

/// Runs one case: every seed with the bug, then every seed without.
/// `on_run` hears of each finished run (for progress lines).
pub async fn run_case(
    case: &Case,
    origin: &str,
    seeds: &[u64],
    matrix_dir: &Path,
    mut on_run: impl FnMut(&Scenario, &RunReport),
) -> anyhow::Result<Row> {
    let runs_dir = matrix_dir.join("runs");
    let mut row = Row {
        bug: case.bug.clone(),
        origin: origin.to_owned(),
        why: case.why.clone(),
        scenario: case.scenario.clone(),
        with_bug: Vec::new(),
        without_bug: Vec::new(),
    };
    for planted in [true, false] {
        for seed in seeds {
            let scenario = scenario_for(case, *seed, planted);
            let report = run_scenario(&scenario, &runs_dir, Arc::new(Progress::default())).await?;
            on_run(&scenario, &report);
            let cell = cell(&report, *seed, matrix_dir);
            match planted {
                true => row.with_bug.push(cell),
                false => row.without_bug.push(cell),
            }
        }
    }
    Ok(row)
}

/// Writes `matrix.json` and `index.html` into `dir`; returns the page.
pub fn write(dir: &Path, seeds: &[u64], rows: &[Row]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::json!({ "seeds": seeds, "rows": rows, "all_pass": rows.iter().all(Row::passes) });
    std::fs::write(dir.join("matrix.json"), serde_json::to_string_pretty(&json)?)?;
    let path = dir.join("index.html");
    std::fs::write(&path, build_page(seeds, rows))?;
    Ok(path)
}

fn cell_html(cell: &Cell) -> String {
    let at = cell.first_anomaly_s.map_or(String::new(), |s| format!(" at {s:.1} s"));
    format!("<a href=\"{}/index.html\">{}</a>{at}", url_path(&cell.folder), badge(cell.verdict))
}

fn scenario_words(scenario: &Scenario) -> String {
    format!(
        "{} under [{}], {} nodes ({:?}), {} processes at {} ops/s for {} s",
        scenario.workload.name(),
        scenario.nemesis_names().replace(',', ", "),
        scenario.nodes,
        scenario.backend,
        scenario.concurrency,
        scenario.rate,
        scenario.time_limit_secs
    )
    .to_lowercase()
}

/// The matrix page. Pure.
pub fn build_page(seeds: &[u64], rows: &[Row]) -> String {
    let passing = rows.iter().filter(|row| row.passes()).count();
    let header = ["bug", "what it is, and where it happened", "scenario", "with the bug", "without", "first anomaly"];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let cells = |cells: &[Cell]| cells.iter().map(cell_html).collect::<Vec<_>>().join("<br>");
            let first = row.with_bug.iter().find_map(|c| c.explanation.clone()).unwrap_or_else(|| "none".into());
            vec![
                format!("<b>{}</b><br>{} of {} caught", esc(&row.bug), row.detected(), row.with_bug.len()),
                esc(&row.origin),
                format!("{}<br><span class=\"note\">{}</span>", esc(&scenario_words(&row.scenario)), esc(&row.why)),
                cells(&row.with_bug),
                cells(&row.without_bug),
                esc(&first),
            ]
        })
        .collect();
    let verdict = match passing == rows.len() && !rows.is_empty() {
        true => badge(Validity::Valid),
        false => badge(Validity::Invalid),
    };
    let body = format!(
        "<h1>Seeded-bug detection matrix {verdict}</h1>\n\
         <p>{passing} of {} bugs caught in at least two thirds of their runs with no false alarm on the correct \
         cluster. Seeds: {}. A catch is an INVALID verdict; UNKNOWN is not one. Each verdict links its run's report; \
         <a href=\"matrix.json\">matrix.json</a> holds the same data.</p>\n{}",
        rows.len(),
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        table(&header, &body)
    );
    page("Seeded-bug detection matrix", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> Case {
        let text = r#"
            seeds = [1, 2, 3]
            [[case]]
            bug = "lww"
            ci = true
            why = "clock skew reorders writes"
            [case.scenario]
            name = "bug-lww"
            workload = "register"
            nemesis = ["clock"]
            backend = "local"
        "#;
        let file: MatrixFile = toml::from_str(text).unwrap();
        file.case.into_iter().next().unwrap()
    }

    fn cell(seed: u64, verdict: Validity) -> Cell {
        let folder = format!("runs/x-{seed}");
        Cell {
            seed,
            verdict,
            folder,
            first_anomaly_s: None,
            explanation: None,
            invalid_checkers: vec![],
            elapsed_s: 1.0,
        }
    }

    #[test]
    fn the_shipped_matrix_loads_with_a_case_per_bug() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/bugs.toml");
        let (_, cases) = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(cases.len() >= 8, "a case for each bug of the catalogue: {}", cases.len());
    }

    #[test]
    fn the_bug_is_planted_only_in_the_runs_with_it() {
        let case = case();
        let planted = scenario_for(&case, 7, true);
        assert_eq!(planted.node_flags, ["--test-bug", "lww"]);
        assert_eq!((planted.seed, planted.name.as_str()), (Some(7), "bug-lww-bug-s7"));
        let correct = scenario_for(&case, 7, false);
        assert!(correct.node_flags.is_empty());
        assert_eq!(correct.name, "bug-lww-correct-s7");
    }

    #[test]
    fn a_row_passes_with_two_of_three_caught_and_no_false_alarm() {
        let case = case();
        let mut row = Row {
            bug: case.bug.clone(),
            origin: "o".into(),
            why: case.why.clone(),
            scenario: case.scenario.clone(),
            with_bug: vec![cell(1, Validity::Invalid), cell(2, Validity::Unknown), cell(3, Validity::Invalid)],
            without_bug: vec![cell(1, Validity::Valid), cell(2, Validity::Valid), cell(3, Validity::Valid)],
        };
        assert!(row.passes());
        row.with_bug[0].verdict = Validity::Unknown;
        assert!(!row.passes(), "UNKNOWN is not a catch");
        row.with_bug[0].verdict = Validity::Invalid;
        row.without_bug[2].verdict = Validity::Unknown;
        assert!(!row.passes(), "the correct cluster must be VALID in every run");
        let page = build_page(&[1, 2, 3], &[row]);
        assert!(page.contains("runs/x-1/index.html") && page.contains("0 of 1 bugs"), "{page}");
    }

    #[test]
    fn the_first_anomaly_is_the_one_observable_earliest() {
        use harness::history::{EventType, Process};
        let mut events: Vec<Event> = (0..4).map(|_| Event::new(Process::Client(0), EventType::Invoke, "get")).collect();
        for (i, event) in events.iter_mut().enumerate() {
            event.time = (i as u64 + 1) * 1_000_000_000;
        }
        let mut late = CheckResult::new("durability", Validity::Invalid, "1 lost");
        late.evidence = serde_json::json!({"lost": [{"key": "k", "explanation": "lost", "write_index": 0,
            "final_read_index": 3}]});
        let mut early = CheckResult::new("session", Validity::Invalid, "1 violation");
        early.evidence = serde_json::json!({"violations": [{"key": "k", "explanation": "stale", "index": 1}]});
        let (at, words) = first_anomaly(&[late, early], &events);
        assert_eq!((at, words.as_deref()), (Some(2.0), Some("session: stale")));
        let convergence = CheckResult::new("convergence", Validity::Invalid, "replicas differ");
        let (at, words) = first_anomaly(&[convergence], &events);
        assert_eq!((at, words.as_deref()), (Some(4.0), Some("convergence: replicas differ")));
        assert_eq!(first_anomaly(&[], &events), (None, None));
    }
}
