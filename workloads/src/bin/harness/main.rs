//! `harness`: run Jepsen-style tests against the reference cluster.
//!
//! ```text
//! harness run --workload register --nemesis partition --nodes 5 ...
//! harness suite workloads/scenarios/partition.toml
//! harness check reports/<run>/history.jsonl
//! harness report reports/<run>
//! harness import --from jepsen history.edn --check
//! harness export --to jepsen reports/<run>/history.jsonl
//! harness serve
//! ```
//!
//! Exit codes (`output`): 0 valid, 1 an anomaly found, 2 unknown, 3 the
//! command failed (an unreadable input, a run that could not start),
//! 64 a usage error, 141 stdout closed early.

mod check;
mod interop;
mod output;
mod progress;
mod serve;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::checker::linearizable::{AfterAnomaly, Budget};
use harness::model::ModelKind;
use harness::nemesis::FaultKind;
use harness::runner::Progress;
use harness::verdict::Validity;
use output::{errln, outln, verdict_code};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use workloads::run::{fresh_seed, run_scenario, RunReport};
use workloads::scenario::{self, Backend, Scenario};
use workloads::WorkloadKind;

#[derive(Parser)]
#[command(name = "harness", version, about = "Jepsen-style tests for leaderless key-value stores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Folder for run folders.
    #[arg(long, global = true, default_value = "reports")]
    reports: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// One run, described by flags.
    Run {
        #[arg(long, value_enum, default_value = "register")]
        workload: WorkloadKind,
        /// Fault kinds, comma-separated (partition, kill, pause, clock, loss, delay, kill-all, power-loss,
        /// power-loss-all, corrupt, slow-disk, membership); none by default.
        #[arg(long, value_delimiter = ',', value_parser = parse_fault)]
        nemesis: Vec<FaultKind>,
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
        /// Operations per second, all processes together.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of traffic.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        /// Seconds between fault changes.
        #[arg(long, default_value_t = 5)]
        nemesis_interval: u64,
        /// The seed of every random choice; printed when not given.
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, value_enum, default_value = "docker")]
        backend: Backend,
        /// Names the run folder.
        #[arg(long)]
        name: Option<String>,
        /// An extra kvnode flag for every node, repeatable (e.g.
        /// `--node-flag=--test-bug --node-flag=lww` to plant a known bug).
        #[arg(long = "node-flag", allow_hyphen_values = true)]
        node_flags: Vec<String>,
        /// Seconds replicas may take to agree after the final heal.
        #[arg(long, default_value_t = 60)]
        convergence_timeout: u64,
        /// Keys active at a time (the workload's own number by default).
        #[arg(long)]
        keys: Option<usize>,
        /// Operations per key before it is retired (the workload's own by default).
        #[arg(long)]
        ops_per_key: Option<usize>,
        /// Bound on each client call (a write past it is unknown, a read failed).
        #[arg(long, default_value_t = workloads::scenario::DEFAULT_OP_TIMEOUT_MS)]
        op_timeout_ms: u64,
        /// The store under test: a description's name (kvnode, etcd,
        /// redis: systems/NAME.toml), a path to one, or `external` for
        /// nodes someone else started (give each with --node).
        #[arg(long, default_value = "kvnode")]
        system: String,
        /// With --system external: a node's base URL, repeatable
        /// (http://HOST:PORT, redis://HOST:PORT).
        #[arg(long = "node")]
        external_nodes: Vec<String>,
        /// With --system external: the client adapter (kvnode, etcd, redis).
        #[arg(long, default_value = "kvnode")]
        adapter: harness::system::Adapter,
        /// Print the outcome as one JSON document on stdout (progress
        /// stays on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Every scenario of a TOML file, one after the other.
    Suite {
        file: PathBuf,
        /// Run only the scenario with this name.
        #[arg(long)]
        only: Option<String>,
        /// An extra kvnode flag for every node of every scenario,
        /// repeatable (e.g. `--node-flag=--test-bug --node-flag=no-repair`:
        /// does the suite catch it?).
        #[arg(long = "node-flag", allow_hyphen_values = true)]
        node_flags: Vec<String>,
        /// Run every scenario once per seed (comma-separated), its name
        /// suffixed `-sSEED`; each scenario's own seed (or a fresh one) by default.
        #[arg(long, value_delimiter = ',')]
        seeds: Vec<u64>,
    },
    /// The seeded-bug matrix: every bug's scenario against nodes with the
    /// bug and against correct nodes, per seed; writes DIR/index.html and
    /// DIR/matrix.json (DIR: --out, default REPORTS/bugs).
    Bugs {
        #[arg(default_value = "workloads/scenarios/bugs.toml")]
        file: PathBuf,
        /// Only these bugs (repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// Seeds to run (comma-separated); the file's by default.
        #[arg(long, value_delimiter = ',')]
        seeds: Vec<u64>,
        /// Only the cases marked `ci`, with the first seed (what `make test` runs).
        #[arg(long)]
        ci: bool,
        /// Folder for index.html, matrix.json and the runs (REPORTS/bugs by default).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Redraws the HTML report of run folders, and the index of runs
    /// beside them.
    Report {
        /// Run folders (each with config.json, results.json, history.jsonl).
        #[arg(required = true)]
        folders: Vec<PathBuf>,
    },
    /// Checks existing history files against a model, one verdict block
    /// per file; exits with the worst verdict.
    Check {
        #[arg(required = true)]
        histories: Vec<PathBuf>,
        /// register (our API), cas-register or append-kv.
        #[arg(long, default_value = "register", value_parser = ModelKind::parse)]
        model: ModelKind,
        /// Seconds the linearizability search may spend per key.
        #[arg(long, default_value_t = 60)]
        budget_secs: u64,
        /// Search every key to its budget for the whole picture, instead of
        /// stopping at the first proven anomaly.
        #[arg(long)]
        all_anomalies: bool,
        /// Print every verdict as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Another tool's histories in our format (FILE.jsonl beside each),
    /// with the model that judges them: Jepsen's EDN (`history.edn`, a
    /// vector of op maps, Knossos' data) or jepsen.util log lines, and
    /// Porcupine's test data.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// jepsen (a failed cas did not happen, as Knossos has it) or
        /// porcupine (a failed cas returned false, as Porcupine's etcd
        /// model has it).
        #[arg(long, value_parser = harness::interop::Dialect::parse)]
        from: harness::interop::Dialect,
        /// Where to write the history (one input only).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Check each imported history too; exits with the worst verdict.
        #[arg(long)]
        check: bool,
        /// Seconds the linearizability search may spend per key.
        #[arg(long, default_value_t = 60)]
        budget_secs: u64,
    },
    /// The reports folder over HTTP (the index of runs at `/`), until
    /// Ctrl-C.
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The address to listen on; 0.0.0.0 shows the reports to the network.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
    },
    /// One of our histories as Jepsen's history.edn, for Knossos or
    /// Elle: put/delete/get become write/write nil/read on
    /// jepsen.independent `[key value]` tuples (eventual gets are left
    /// out).
    Export {
        history: PathBuf,
        /// jepsen: the only target so far.
        #[arg(long, value_parser = ["jepsen"])]
        to: String,
        /// The model the history speaks (as `check --model`).
        #[arg(long, default_value = "register", value_parser = ModelKind::parse)]
        model: ModelKind,
        /// Where to write (HISTORY.edn by default).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

fn parse_fault(text: &str) -> Result<FaultKind, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown fault {text:?}: expected one of {}", known.join(", "))
    })
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // --help and --version are not errors.
            std::process::exit(if error.use_stderr() { output::EXIT_USAGE } else { output::EXIT_VALID });
        }
    };
    let filter = std::env::var("HARNESS_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            errln!("harness: {error:#}");
            output::EXIT_ERROR
        }
    };
    std::process::exit(code);
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run {
            workload,
            nemesis,
            nodes,
            concurrency,
            rate,
            time_limit,
            nemesis_interval,
            seed,
            backend,
            name,
            node_flags,
            convergence_timeout,
            keys,
            ops_per_key,
            op_timeout_ms,
            system,
            external_nodes,
            adapter,
            json,
        } => {
            let system_name = Path::new(&system).file_stem().map_or(system.clone(), |s| s.to_string_lossy().into());
            // External nodes are as many as the URLs given.
            let nodes = if external_nodes.is_empty() { nodes } else { external_nodes.len() };
            let scenario = Scenario {
                name: name.unwrap_or_else(|| match system_name.as_str() {
                    "kvnode" => format!("{}-{}", workload.name(), backend_name(backend)),
                    "external" => format!("{}-external-{}", workload.name(), adapter.name()),
                    other => format!("{}-{other}-{}", workload.name(), backend_name(backend)),
                }),
                workload,
                nemesis,
                nodes,
                concurrency,
                rate,
                time_limit_secs: time_limit,
                nemesis_interval_secs: nemesis_interval,
                backend,
                system,
                adapter,
                external_nodes,
                seed: Some(seed.unwrap_or_else(fresh_seed)),
                node_flags,
                convergence_timeout_secs: convergence_timeout,
                keys: workloads::Keys { active: keys, ops_per_key },
                op_timeout_ms,
            };
            scenario.validate().map_err(anyhow::Error::msg)?;
            let report = run_one(&scenario, &cli.reports, json).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&run_json(&scenario, &report))?);
            }
            Ok(verdict_code(report.validity))
        }
        Command::Suite { file, only, node_flags, seeds } => {
            let mut scenarios = scenario::load(&file)?;
            for scenario in &mut scenarios {
                scenario.node_flags.extend(node_flags.iter().cloned());
            }
            if let Some(only) = only {
                scenarios.retain(|s| s.name == only);
                anyhow::ensure!(!scenarios.is_empty(), "no scenario named {only:?} in {}", file.display());
            }
            if !seeds.is_empty() {
                scenarios = scenarios
                    .iter()
                    .flat_map(|scenario| {
                        seeds.iter().map(|seed| Scenario {
                            name: format!("{}-s{seed}", scenario.name),
                            seed: Some(*seed),
                            ..scenario.clone()
                        })
                    })
                    .collect();
            }
            let mut verdicts = Vec::new();
            for scenario in &scenarios {
                let report = run_one(scenario, &cli.reports, false).await?;
                verdicts.push((scenario.name.clone(), report.validity, report.folder));
            }
            outln!("\nsuite {}:", file.display());
            for (name, validity, folder) in &verdicts {
                outln!("  {:<8} {name:<28} {}", label(*validity), folder.join("index.html").display());
            }
            outln!("  every run: {}", cli.reports.join("index.html").display());
            Ok(verdict_code(verdicts.iter().map(|(_, v, _)| *v).max().unwrap_or(Validity::Unknown)))
        }
        Command::Bugs { file, only, seeds, ci, out } => {
            let out = out.unwrap_or_else(|| cli.reports.join("bugs"));
            run_matrix(&file, &only, seeds, ci, &out).await
        }
        Command::Check { histories, model, budget_secs, all_anomalies, json } => {
            let after_anomaly = if all_anomalies { AfterAnomaly::SearchAll } else { AfterAnomaly::Stop };
            let budget = Budget { time: Duration::from_secs(budget_secs), after_anomaly, ..Budget::default() };
            Ok(check::check_files(&histories, model, &budget, json))
        }
        Command::Import { files, from, out, check, budget_secs } => {
            let budget = Budget { time: Duration::from_secs(budget_secs), ..Budget::default() };
            Ok(interop::import(&files, from, out.as_deref(), check, &budget))
        }
        Command::Serve { port, bind } => serve::serve(&cli.reports, bind, port).await,
        Command::Export { history, to: _, model, out } => interop::export(&history, model, out.as_deref()),
        Command::Report { folders } => {
            let mut parents = std::collections::BTreeSet::new();
            for folder in &folders {
                let page = harness::report::render(folder)?;
                outln!("report: {}", page.display());
                // The page links `../index.html`: the index of its own parent.
                parents.insert(folder.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf));
            }
            for parent in parents {
                let parent = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent };
                outln!("index:  {}", harness::report::index::write(&parent)?.display());
            }
            Ok(0)
        }
    }
}

/// The node's catalogue of known bugs: name -> its real-world sentence.
fn bug_catalogue() -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let binary = harness::db::local::kvnode_binary()?;
    let output = std::process::Command::new(&binary)
        .arg("--list-test-bugs")
        .output()
        .with_context(|| format!("running {} --list-test-bugs", binary.display()))?;
    anyhow::ensure!(output.status.success(), "{} --list-test-bugs failed", binary.display());
    let mut catalogue = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let bug: serde_json::Value = serde_json::from_str(line).context("reading the bug catalogue")?;
        catalogue
            .insert(bug["name"].as_str().unwrap_or("?").to_owned(), bug["origin"].as_str().unwrap_or("").to_owned());
    }
    Ok(catalogue)
}

async fn run_matrix(file: &Path, only: &[String], seeds: Vec<u64>, ci: bool, out: &Path) -> anyhow::Result<i32> {
    let (file_seeds, mut cases) = workloads::matrix::load(file)?;
    let catalogue = bug_catalogue()?;
    for case in &cases {
        anyhow::ensure!(
            catalogue.contains_key(&case.bug),
            "{}: no bug {:?} in kvnode's catalogue",
            file.display(),
            case.bug
        );
    }
    let uncovered: Vec<&String> = catalogue.keys().filter(|bug| !cases.iter().any(|c| &c.bug == *bug)).collect();
    anyhow::ensure!(uncovered.is_empty(), "{}: no scenario for the bugs {uncovered:?}", file.display());
    for name in only {
        anyhow::ensure!(cases.iter().any(|c| &c.bug == name), "no case for the bug {name:?} in {}", file.display());
    }
    cases.retain(|case| (only.is_empty() || only.contains(&case.bug)) && (!ci || case.ci));
    let mut seeds = if seeds.is_empty() { file_seeds } else { seeds };
    if ci {
        seeds.truncate(1);
    }
    let mut rows = Vec::new();
    for case in &cases {
        require_docker(&case.scenario).await?;
        errln!("== bug {}: {} ({} seeds each way)", case.bug, case.why, seeds.len());
        let origin = catalogue.get(&case.bug).cloned().unwrap_or_default();
        let row = workloads::matrix::run_case(case, &origin, &seeds, out, |scenario, report| {
            let found = report.results.iter().filter(|r| r.valid != Validity::Valid);
            let found: Vec<String> = found.map(|r| format!("{} {}", r.checker, label(r.valid))).collect();
            errln!(
                "   {:<44} {:<8} {:>4.0} s  {}",
                scenario.name,
                label(report.validity),
                report.elapsed.as_secs_f64(),
                found.join(", ")
            );
        })
        .await?;
        rows.push(row);
        // Written after every case: an interrupted matrix keeps what it has.
        workloads::matrix::write(out, &seeds, &rows)?;
    }
    let page = workloads::matrix::write(out, &seeds, &rows)?;
    outln!("\nseeded-bug matrix ({} seeds):", seeds.len());
    for row in &rows {
        let verdicts =
            |cells: &[workloads::matrix::Cell]| cells.iter().map(|c| label(c.verdict)).collect::<Vec<_>>().join(" ");
        outln!(
            "  {:<8} {:<22} with bug: {:<26} without: {:<26} {}",
            if row.passes() { "CAUGHT" } else { "MISSED" },
            row.bug,
            verdicts(&row.with_bug),
            verdicts(&row.without_bug),
            row.with_bug
                .iter()
                .find_map(|c| c.explanation.clone())
                .unwrap_or_default()
                .chars()
                .take(100)
                .collect::<String>()
        );
    }
    outln!("  matrix: {}", page.display());
    let all_pass = !rows.is_empty() && rows.iter().all(workloads::matrix::Row::passes);
    Ok(if all_pass { 0 } else { 1 })
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Docker => "docker",
        Backend::Local => "local",
    }
}

fn label(validity: Validity) -> &'static str {
    match validity {
        Validity::Valid => "VALID",
        Validity::Invalid => "INVALID",
        Validity::Unknown => "UNKNOWN",
    }
}

/// Stops at once, with what to do, when the docker backend has no engine.
async fn require_docker(scenario: &Scenario) -> anyhow::Result<()> {
    if scenario.backend != Backend::Docker || scenario.system == workloads::system::EXTERNAL {
        return Ok(());
    }
    if let Err(error) = harness::db::docker::connect().await {
        anyhow::bail!(
            "scenario {:?} needs Docker, and {error}.\n\
             - Missing: a Docker engine answering on /var/run/docker.sock (or DOCKER_HOST).\n\
             - To get it on Debian: apt-get install docker.io && service docker start; then `make image`.\n\
             - Without Docker, the local-process scenarios still run (no partitions there):\n\
             \x20   cargo run --release -p workloads --bin harness -- suite workloads/scenarios/local.toml",
            scenario.name
        );
    }
    Ok(())
}

/// A run's outcome as `run --json` prints it.
fn run_json(scenario: &Scenario, report: &RunReport) -> serde_json::Value {
    serde_json::json!({
        "name": scenario.name,
        "validity": report.validity,
        "exit_code": verdict_code(report.validity),
        "seed": report.seed,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "results": report.results,
        "summary": report.summary,
        "folder": report.folder,
        "report": report.page,
        "reproduce": workloads::run::reproduce_command(scenario, report.seed),
    })
}

async fn run_one(scenario: &Scenario, reports: &Path, json: bool) -> anyhow::Result<RunReport> {
    require_docker(scenario).await?;
    let seed = scenario.seed.unwrap_or_else(fresh_seed);
    let scenario = Scenario { seed: Some(seed), ..scenario.clone() };
    errln!(
        "== {}: {} on {}, nemesis [{}], {} nodes ({}), {} processes, {} ops/s for {} s, seed {seed}",
        scenario.name,
        scenario.workload.name(),
        scenario.system,
        scenario.nemesis_names().replace(',', ", "),
        scenario.nodes,
        backend_name(scenario.backend),
        scenario.concurrency,
        scenario.rate,
        scenario.time_limit_secs,
    );
    let progress = Arc::new(Progress::default());
    let ticker = tokio::spawn(progress::show(progress.clone(), scenario.time_limit_secs));
    let report = run_scenario(&scenario, reports, progress).await;
    ticker.abort();
    let _ = ticker.await; // the bar is left as it was last drawn
    let report = report.with_context(|| format!("scenario {} failed to run", scenario.name))?;
    if !json {
        print_summary(&scenario, &report);
    }
    Ok(report)
}

fn print_summary(scenario: &Scenario, report: &RunReport) {
    outln!(
        "{} {} (seed {}, {:.0} s)",
        label(report.validity),
        scenario.name,
        report.seed,
        report.elapsed.as_secs_f64()
    );
    for result in &report.results {
        outln!("  {:<8} {:<14} {}", label(result.valid), result.checker, result.reason);
    }
    outln!(
        "  {} events over {} keys; replicas {} after {} ms",
        report.summary.events,
        report.summary.keys,
        match report.summary.converged {
            Some(true) => "converged",
            Some(false) => "did NOT converge",
            None => "not inspected (not available for this system)",
        },
        report.summary.convergence_wait_ms
    );
    outln!("  run folder: {}", report.folder.display());
    match &report.page {
        Some(page) => outln!("  report:     {}", page.display()),
        None => outln!("  report:     not written (see the error above)"),
    }
    outln!("  reproduce:  {}", workloads::run::reproduce_command(scenario, report.seed));
}
