//! One scenario, end to end: a run folder, a cluster, the workload and the
//! nemesis, the history, the checks, and the verdict.
//!
//! The run folder `reports/<UTC time>-<name>/` holds `config.json` (the
//! scenario and its seed), `history.jsonl`, `logs/NODE.log`,
//! `convergence.json` (replica states after the final heal),
//! `results.json` (every check's verdict) and the HTML report
//! (`index.html`, `plots/`).

use crate::scenario::{Backend, Scenario};
use crate::system::EXTERNAL;
use crate::Workload;
use harness::checker::linearizable::{self, AfterAnomaly, Budget};
use harness::checker::{durability, session, staleness, ttl, Tally};
use harness::client::{AnyClient, Client};
use harness::db::docker::DockerDb;
use harness::db::external::ExternalDb;
use harness::db::local::LocalDb;
use harness::db::{ClusterSpec, Db};
use harness::history;
use harness::model::register::Register;
use harness::nemesis::ClusterNemesis;
use harness::runner::{self, Progress, RunConfig, RunSummary};
use harness::verdict::{merge, CheckResult, Validity};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a finished run is, and what it concluded.
#[derive(Debug)]
pub struct RunReport {
    pub folder: PathBuf,
    pub seed: u64,
    pub validity: Validity,
    pub results: Vec<CheckResult>,
    pub summary: RunSummary,
    pub elapsed: Duration,
    /// The HTML report, when it could be written.
    pub page: Option<PathBuf>,
}

/// Writes the run's HTML report from its `history` (already gathered) and
/// rewrites the index of runs. A report that cannot be drawn costs the run
/// nothing: the verdict stands, and the reason is logged.
fn write_report(folder: &Path, reports: &Path, history: harness::report::History) -> Option<PathBuf> {
    let page = harness::report::load_with_history(folder, history)
        .and_then(|run| harness::report::write(folder, &run))
        .map_err(|error| tracing::error!(%error, "no HTML report"))
        .ok();
    if let Err(error) = harness::report::index::write(reports) {
        tracing::error!(%error, "could not rewrite the index of runs");
    }
    page
}

/// `2026-11-29T05-07-00Z`, from the system clock, for folder names.
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    harness::utc::stamp(secs)
}

pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    (nanos as u64) ^ (u64::from(std::process::id()) << 32)
}

/// Runs `scenario` with its folder under `reports`.
pub async fn run_scenario(scenario: &Scenario, reports: &Path, progress: Arc<Progress>) -> anyhow::Result<RunReport> {
    let seed = scenario.seed.unwrap_or_else(fresh_seed);
    let folder = reports.join(format!("{}-{}", utc_stamp(), scenario.name));
    std::fs::create_dir_all(&folder)?;
    let config =
        serde_json::json!({ "scenario": scenario, "seed": seed, "command": reproduce_command(scenario, seed) });
    std::fs::write(folder.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    let system = crate::system::resolve(&scenario.system, scenario.adapter).map_err(anyhow::Error::msg)?;
    let client =
        AnyClient::for_system(&system, Duration::from_millis(scenario.op_timeout_ms)).map_err(anyhow::Error::msg)?;
    let inspect_replicas = system.capabilities.replica_introspection;
    let spec = ClusterSpec {
        extra_flags: scenario.node_flags.clone(),
        disks: scenario.disks(),
        ..ClusterSpec::of(system, scenario.nodes)
    };
    let started = Instant::now();
    let run = Play { client: &client, scenario, seed, inspect_replicas, folder: &folder, progress: &progress };
    let (summary, replicas) = if scenario.system == EXTERNAL {
        run.on(ExternalDb::new(&scenario.external_nodes)?).await?
    } else {
        match scenario.backend {
            Backend::Docker => run.on(DockerDb::start(&spec).await?).await?,
            Backend::Local => run.on(LocalDb::start(&spec, &folder.join("nodes")).await?).await?,
        }
    };
    std::fs::write(folder.join("convergence.json"), serde_json::to_string_pretty(&replicas)?)?;
    // Read once, a shard at a time: the checks and the report share the pass.
    let (results, history) = check_history(scenario.workload.checkers(), &folder.join("history.jsonl"), Some(&summary));
    let validity = merge(&results);
    let written = serde_json::json!({ "valid": validity, "results": results, "summary": summary });
    std::fs::write(folder.join("results.json"), serde_json::to_string_pretty(&written)?)?;
    let page = match history {
        Some(history) => write_report(&folder, reports, history),
        None => {
            tracing::error!("no HTML report: the history could not be read (see the well-formed check)");
            None
        }
    };
    Ok(RunReport { folder, seed, validity, results, summary, elapsed: started.elapsed(), page })
}

/// What a run plays against whichever cluster it gets.
struct Play<'a, C> {
    client: &'a C,
    scenario: &'a Scenario,
    seed: u64,
    inspect_replicas: bool,
    folder: &'a Path,
    progress: &'a Progress,
}

impl<C: Client> Play<'_, C> {
    /// Plays the scenario on `db`, then saves its logs and removes it.
    async fn on<D: Db>(&self, db: D) -> anyhow::Result<(RunSummary, serde_json::Value)> {
        let outcome = self.play(&db).await;
        finish(db, self.folder, outcome).await
    }

    async fn play<D: Db>(&self, db: &D) -> anyhow::Result<(RunSummary, serde_json::Value)> {
        let Play { client, scenario, seed, inspect_replicas, folder, progress } = *self;
        let time_limit = Duration::from_secs(scenario.time_limit_secs);
        let workload = Workload::new(scenario.workload, seed, scenario.rate, time_limit, scenario.keys);
        let nemesis = (!scenario.nemesis.is_empty())
            .then(|| ClusterNemesis::new(scenario.nemesis.clone(), StdRng::seed_from_u64(seed.rotate_left(17))));
        let config = RunConfig {
            concurrency: scenario.concurrency,
            seed,
            nemesis_interval: Duration::from_secs(scenario.nemesis_interval_secs),
            convergence_timeout: Duration::from_secs(scenario.convergence_timeout_secs),
            inspect_replicas,
        };
        let history = folder.join("history.jsonl");
        Ok(runner::run(db, client, workload.generator, nemesis, &config, &history, progress).await?)
    }
}

/// Saves the logs and removes the cluster, whatever the run's outcome.
async fn finish<D: Db>(
    db: D,
    folder: &Path,
    outcome: anyhow::Result<(RunSummary, serde_json::Value)>,
) -> anyhow::Result<(RunSummary, serde_json::Value)> {
    if let Err(error) = db.collect_logs(&folder.join("logs")).await {
        tracing::warn!(%error, "could not save node logs");
    }
    let torn_down = db.teardown().await;
    let outcome = outcome?;
    torn_down?;
    Ok(outcome)
}

/// How far from `timestamp + ttl` an expiry may be seen: reads are timed
/// at the harness, expiry at the node.
pub const TTL_TOLERANCE_MS: u64 = 250;

/// The command line that replays `scenario` with `seed`.
pub fn reproduce_command(scenario: &Scenario, seed: u64) -> String {
    let backend = match scenario.backend {
        Backend::Docker => "docker",
        Backend::Local => "local",
    };
    let mut command = format!(
        "cargo run --release -p workloads --bin harness -- run --workload {} --nodes {} --concurrency {} --rate {} \
         --time-limit {} --nemesis-interval {} --backend {backend} --seed {seed} --name {}",
        scenario.workload.name(),
        scenario.nodes,
        scenario.concurrency,
        scenario.rate,
        scenario.time_limit_secs,
        scenario.nemesis_interval_secs,
        scenario.name
    );
    if !scenario.nemesis.is_empty() {
        command.push_str(&format!(" --nemesis {}", scenario.nemesis_names()));
    }
    for flag in &scenario.node_flags {
        command.push_str(&format!(" --node-flag={flag}"));
    }
    if scenario.system != "kvnode" {
        command.push_str(&format!(" --system {}", scenario.system));
    }
    if scenario.system == EXTERNAL {
        command.push_str(&format!(" --adapter {}", scenario.adapter.name()));
        for node in &scenario.external_nodes {
            command.push_str(&format!(" --node {node}"));
        }
    }
    if scenario.op_timeout_ms != crate::scenario::DEFAULT_OP_TIMEOUT_MS {
        command.push_str(&format!(" --op-timeout-ms {}", scenario.op_timeout_ms));
    }
    if let Some(active) = scenario.keys.active {
        command.push_str(&format!(" --keys {active}"));
    }
    if let Some(ops) = scenario.keys.ops_per_key {
        command.push_str(&format!(" --ops-per-key {ops}"));
    }
    if scenario.convergence_timeout_secs != 60 {
        command.push_str(&format!(" --convergence-timeout {}", scenario.convergence_timeout_secs));
    }
    command
}

/// Every check that can run on the history at `history_path`; see
/// [`check_history`].
pub fn check(checkers: &[&str], history_path: &Path, summary: Option<&RunSummary>) -> Vec<CheckResult> {
    check_history(checkers, history_path, summary).0
}

/// A check's place in the results: a tally fed the history shard by
/// shard, or a verdict known without reading it.
enum Slot {
    Tally(Box<dyn Tally>),
    Done(CheckResult),
}

/// Every check that can run on the history at `history_path` today, read
/// from disk a shard at a time ([`history::shards`]) so that a long run's
/// history need not fit in memory; and, from the same pass, what its
/// report draws (`None` when the history could not be read). `checkers`
/// are the workload's; convergence is judged when the run's `summary` is
/// known. A history that could not be read is judged not well-formed.
pub fn check_history(
    checkers: &[&str],
    history_path: &Path,
    summary: Option<&RunSummary>,
) -> (Vec<CheckResult>, Option<harness::report::History>) {
    let unreadable = |error: history::HistoryError| {
        (vec![CheckResult::new("well-formed", Validity::Invalid, error.to_string())], None)
    };
    let shards = match history::shards::split_beside(history_path) {
        Ok(shards) => shards,
        Err(error) => return unreadable(error),
    };
    let reason = format!("{} events, every completion matches an invocation", shards.events);
    let mut results = vec![CheckResult::new("well-formed", Validity::Valid, reason)];
    results.extend(convergence(summary));
    let mut slots: Vec<Slot> = checkers.iter().filter(|c| **c != "convergence").map(|c| slot(c, summary)).collect();
    let mut samples = harness::report::data::Samples::default();
    let read = shards.for_each(|events| {
        for slot in &mut slots {
            if let Slot::Tally(tally) = slot {
                tally.add(events);
            }
        }
        samples.add(events, &|_| false);
    });
    if let Err(error) = read {
        return unreadable(error);
    }
    results.extend(slots.into_iter().map(|slot| match slot {
        Slot::Tally(tally) => tally.finish(),
        Slot::Done(result) => result,
    }));
    if let Some(error) = summary.and_then(|s| s.nemesis_error.as_ref()) {
        results.push(CheckResult::new("nemesis", Validity::Unknown, format!("the nemesis failed: {error}")));
    }
    let history = harness::report::finish_gather(&shards, samples, &results)
        .map_err(|error| tracing::error!(%error, "the report's history could not be gathered"))
        .ok();
    (results, history)
}

/// The convergence verdict, when the run's `summary` is known.
fn convergence(summary: Option<&RunSummary>) -> Option<CheckResult> {
    match summary.map(|summary| (summary.converged, summary.keys))? {
        (Some(true), keys) => {
            let reason = format!("every owner of the {keys} keys holds the same version");
            Some(CheckResult::new("convergence", Validity::Valid, reason))
        }
        (Some(false), _) => Some(CheckResult::new(
            "convergence",
            Validity::Invalid,
            "replicas still differ after the final heal (see convergence.json)",
        )),
        (None, _) => Some(CheckResult::new(
            "convergence",
            Validity::Unknown,
            "not available for this system (it offers no look at its replicas)",
        )),
    }
}

/// The check named `checker`.
fn slot(checker: &str, summary: Option<&RunSummary>) -> Slot {
    match checker {
        "linearizable" => {
            // A run's report may show a few anomalies: after the first,
            // the other keys share a small budget instead of each their own.
            let after_anomaly = AfterAnomaly::Share(linearizable::AFTER_ANOMALY);
            let budget = Budget { after_anomaly, ..Budget::default() };
            Slot::Tally(Box::new(linearizable::Linearizability::new(&Register, &budget)))
        }
        "durability" => Slot::Tally(Box::<durability::Durability>::default()),
        "session" => Slot::Tally(Box::<session::Sessions>::default()),
        "staleness" => Slot::Tally(Box::<staleness::Staleness>::default()),
        "ttl" => match summary {
            Some(summary) => Slot::Tally(Box::new(ttl::Ttl::new(summary.start_unix_ms, TTL_TOLERANCE_MS))),
            None => Slot::Done(CheckResult::new("ttl", Validity::Unknown, "the run's wall-clock start is unknown")),
        },
        other => {
            let reason = format!("the {other} checker is not built yet; no verdict without it");
            Slot::Done(CheckResult::new(other, Validity::Unknown, reason))
        }
    }
}
