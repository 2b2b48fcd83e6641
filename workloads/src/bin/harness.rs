//! `harness`: run Jepsen-style tests against the reference cluster.
//!
//! ```text
//! harness run --workload register --nemesis partition --nodes 5 ...
//! harness suite workloads/scenarios/partition.toml
//! harness check reports/<run>/history.jsonl
//! harness report reports/<run>
//! ```
//!
//! Exit codes: 0 valid, 1 anomalies found, 2 unknown or the run failed.

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::checker::linearizable::{self, AfterAnomaly, Budget};
use harness::checker::{durability, session, staleness, ttl};
use harness::model::append_kv::AppendKv;
use harness::model::cas_register::CasRegister;
use harness::model::register::Register;
use harness::model::ModelKind;
use harness::nemesis::FaultKind;
use harness::runner::Progress;
use harness::verdict::{exit_code, merge, Validity};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    },
}

fn parse_fault(text: &str) -> Result<FaultKind, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown fault {text:?}: expected one of {}", known.join(", "))
    })
}

fn main() {
    let cli = Cli::parse();
    let filter = std::env::var("HARNESS_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("harness: {error:#}");
            2
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
            let report = run_one(&scenario, &cli.reports).await?;
            Ok(exit_code(report.validity))
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
                let report = run_one(scenario, &cli.reports).await?;
                verdicts.push((scenario.name.clone(), report.validity, report.folder));
            }
            println!("\nsuite {}:", file.display());
            for (name, validity, folder) in &verdicts {
                println!("  {:<8} {name:<28} {}", label(*validity), folder.join("index.html").display());
            }
            println!("  every run: {}", cli.reports.join("index.html").display());
            Ok(exit_code(verdicts.iter().map(|(_, v, _)| *v).max().unwrap_or(Validity::Unknown)))
        }
        Command::Bugs { file, only, seeds, ci, out } => {
            let out = out.unwrap_or_else(|| cli.reports.join("bugs"));
            run_matrix(&file, &only, seeds, ci, &out).await
        }
        Command::Check { histories, model, budget_secs, all_anomalies } => {
            let after_anomaly = if all_anomalies { AfterAnomaly::SearchAll } else { AfterAnomaly::Stop };
            let budget = Budget { time: Duration::from_secs(budget_secs), after_anomaly, ..Budget::default() };
            Ok(check_files(&histories, model, &budget))
        }
        Command::Report { folders } => {
            let mut parents = std::collections::BTreeSet::new();
            for folder in &folders {
                let page = harness::report::render(folder)?;
                println!("report: {}", page.display());
                // The page links `../index.html`: the index of its own parent.
                parents.insert(folder.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf));
            }
            for parent in parents {
                let parent = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent };
                println!("index:  {}", harness::report::index::write(&parent)?.display());
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
        eprintln!("== bug {}: {} ({} seeds each way)", case.bug, case.why, seeds.len());
        let origin = catalogue.get(&case.bug).cloned().unwrap_or_default();
        let row = workloads::matrix::run_case(case, &origin, &seeds, out, |scenario, report| {
            let found = report.results.iter().filter(|r| r.valid != Validity::Valid);
            let found: Vec<String> = found.map(|r| format!("{} {}", r.checker, label(r.valid))).collect();
            eprintln!(
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
    println!("\nseeded-bug matrix ({} seeds):", seeds.len());
    for row in &rows {
        let verdicts =
            |cells: &[workloads::matrix::Cell]| cells.iter().map(|c| label(c.verdict)).collect::<Vec<_>>().join(" ");
        println!(
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
    println!("  matrix: {}", page.display());
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

async fn run_one(scenario: &Scenario, reports: &Path) -> anyhow::Result<RunReport> {
    require_docker(scenario).await?;
    let seed = scenario.seed.unwrap_or_else(fresh_seed);
    let scenario = Scenario { seed: Some(seed), ..scenario.clone() };
    eprintln!(
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
    let ticker = tokio::spawn(show_progress(progress.clone(), Instant::now()));
    let report = run_scenario(&scenario, reports, progress).await;
    ticker.abort();
    eprintln!();
    let report = report.with_context(|| format!("scenario {} failed to run", scenario.name))?;
    print_summary(&scenario, &report);
    Ok(report)
}

async fn show_progress(progress: Arc<Progress>, started: Instant) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let fault = progress.fault.lock().map(|f| f.clone()).unwrap_or_default();
        eprint!(
            "\r[{:>4}s] ok {:>6}  fail {:>5}  info {:>5}  fault: {:<24}",
            started.elapsed().as_secs(),
            progress.ok.load(Ordering::Relaxed),
            progress.fail.load(Ordering::Relaxed),
            progress.info.load(Ordering::Relaxed),
            if fault.is_empty() { "none" } else { &fault },
        );
    }
}

fn print_summary(scenario: &Scenario, report: &RunReport) {
    println!(
        "{} {} (seed {}, {:.0} s)",
        label(report.validity),
        scenario.name,
        report.seed,
        report.elapsed.as_secs_f64()
    );
    for result in &report.results {
        println!("  {:<8} {:<14} {}", label(result.valid), result.checker, result.reason);
    }
    println!(
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
    println!("  run folder: {}", report.folder.display());
    match &report.page {
        Some(page) => println!("  report:     {}", page.display()),
        None => println!("  report:     not written (see the error above)"),
    }
    println!("  reproduce:  {}", workloads::run::reproduce_command(scenario, report.seed));
}

/// The wall-clock start of the run whose folder holds `history`, from its
/// `results.json`, if there is one.
fn run_start(history: &Path) -> Option<u64> {
    let results = std::fs::read(history.parent()?.join("results.json")).ok()?;
    serde_json::from_slice::<serde_json::Value>(&results).ok()?["summary"]["start_unix_ms"].as_u64()
}

/// Checks each history in turn, one verdict block each, and a summary line
/// when there are several; the exit code is the worst verdict's (a file
/// that cannot be read counts as unknown).
fn check_files(paths: &[PathBuf], model: ModelKind, budget: &Budget) -> i32 {
    let mut verdicts = Vec::new();
    for path in paths {
        let validity = match check_file(path, model, budget) {
            Ok(validity) => validity,
            Err(error) => {
                println!("ERROR   {}: {error:#}", path.display());
                Validity::Unknown
            }
        };
        verdicts.push(validity);
    }
    let worst = verdicts.iter().copied().max().unwrap_or(Validity::Unknown);
    if paths.len() > 1 {
        let count = |v: Validity| verdicts.iter().filter(|x| **x == v).count();
        println!(
            "{} histories: {} valid, {} invalid, {} unknown; worst {}",
            paths.len(),
            count(Validity::Valid),
            count(Validity::Invalid),
            count(Validity::Unknown),
            label(worst)
        );
    }
    exit_code(worst)
}

fn check_file(path: &Path, model: ModelKind, budget: &Budget) -> anyhow::Result<Validity> {
    let started = Instant::now();
    let events = harness::history::read(path).with_context(|| format!("reading {}", path.display()))?;
    let keys: std::collections::BTreeSet<_> = events.iter().filter_map(|e| e.key.clone()).collect();
    let mut results = vec![harness::verdict::CheckResult::new(
        "well-formed",
        Validity::Valid,
        format!("{} events, every completion matches an invocation", events.len()),
    )];
    match model {
        ModelKind::Register => {
            // Our API's histories: every checker that needs only the history,
            // and the TTL check when the run's results.json gives its start.
            results.push(linearizable::check(&Register, &events, budget));
            results.push(durability::check(&events));
            if events.iter().any(|e| e.min_timestamp.is_some()) {
                results.push(session::check(&events));
            }
            if events.iter().any(|e| e.consistency.as_deref() == Some("eventual")) {
                results.push(staleness::check(&events));
            }
            if let Some(start_unix_ms) = run_start(path) {
                results.push(ttl::check(&events, start_unix_ms, workloads::run::TTL_TOLERANCE_MS));
            }
        }
        ModelKind::CasRegister => results.push(linearizable::check(&CasRegister, &events, budget)),
        ModelKind::AppendKv => results.push(linearizable::check(&AppendKv, &events, budget)),
    }
    println!(
        "{} {} ({} events, {} keys, model {model:?}, {:.1} ms)",
        label(merge(&results)),
        path.display(),
        events.len(),
        keys.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    for result in &results {
        print_result(result);
    }
    Ok(merge(&results))
}

/// One checker's line, and the anomalies it found with the operations
/// around each; says when keys were left unsearched after the first.
fn print_result(result: &harness::verdict::CheckResult) {
    println!("  {:<8} {:<14} {}", label(result.valid), result.checker, result.reason);
    for anomaly in result.evidence["anomalies"].as_array().into_iter().flatten().take(5) {
        println!("           - {}", anomaly["explanation"].as_str().unwrap_or("?"));
        for op in anomaly["window"].as_array().into_iter().flatten() {
            println!(
                "               {:>9.3} s  process {:<6} {}",
                op["invoke_s"].as_f64().unwrap_or(0.0),
                op["process"],
                op["op"].as_str().unwrap_or("?")
            );
        }
    }
    if result.evidence["not_searched_keys"].as_array().is_some_and(|keys| !keys.is_empty()) {
        println!("           (stopped at the first anomaly; --all-anomalies searches every key)");
    }
}
