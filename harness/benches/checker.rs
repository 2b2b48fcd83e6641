//! `make bench` (checker part): linearizability check time on generated
//! histories of growing size and concurrency, with crashed operations; then,
//! when `PORCUPINE_DIR` points at a checkout of anishathalye/porcupine,
//! every history it publishes (`test_data/kv/*.txt`, append-kv, and
//! `test_data/jepsen/etcd_*.log`, a compare-and-set register) judged by us
//! and, when a Go toolchain is installed, by Porcupine itself in the same
//! run (`benches/porcupine/`, built against that checkout), rounds
//! interleaved, medians compared.
//!
//! `BENCH_CASE=N` runs only the N-th generated case (`BENCH_CASE=none`
//! none); `BENCH_ROUNDS` sets the rounds of the comparison (default 5),
//! `BENCH_HISTORY=TEXT` keeps the published histories whose name has TEXT,
//! `GO` names the Go command (default `go`; `GO=none` times only ours).

use harness::checker::linearizable::{check, AfterAnomaly, Budget};
use harness::checker::synthetic::{history, Flavor};
use harness::history::{Event, EventType, Process, Value};
use harness::model::append_kv::AppendKv;
use harness::model::cas_register::CasRegister;
use harness::model::register::Register;
use harness::verdict::{CheckResult, Validity};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    generated();
    porcupine_comparison();
}

fn generated() {
    println!(
        "{:<10} {:>8} {:>8} {:>6} {:>8} {:>10} {:>10}",
        "model", "ops", "clients", "keys", "crashed", "check ms", "verdict"
    );
    let cases = [
        (Flavor::AppendKv, 1_700, 50, 10, 0.0),
        (Flavor::AppendKv, 1_700, 50, 10, 0.01),
        (Flavor::AppendKv, 1_700, 50, 10, 0.05),
        (Flavor::AppendKv, 10_000, 50, 50, 0.05),
        (Flavor::Register, 1_000, 10, 1, 0.05),
        (Flavor::Register, 10_000, 20, 10, 0.05),
        (Flavor::Register, 100_000, 50, 200, 0.05),
        (Flavor::Register, 2_000, 100, 1, 0.0),
        (Flavor::Register, 2_000, 100, 1, 0.05),
    ];
    let only = std::env::var("BENCH_CASE").ok();
    for (i, (flavor, ops, clients, keys, crashed)) in cases.into_iter().enumerate() {
        if only.as_ref().is_some_and(|o| *o != i.to_string()) {
            continue;
        }
        let events = history(flavor, 42, clients, ops, keys, crashed);
        let budget = Budget { time: Duration::from_secs(20), ..Budget::default() };
        let started = Instant::now();
        let result = match flavor {
            Flavor::Register => check(&Register, &events, &budget),
            Flavor::AppendKv => check(&AppendKv, &events, &budget),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let crashed = format!("{:.0}%", crashed * 100.0);
        let verdict = label(Some(result.valid));
        println!("{:<10} {ops:>8} {clients:>8} {keys:>6} {crashed:>8} {ms:>10.1} {verdict:>10}", format!("{flavor:?}"));
        assert_ne!(result.valid, Validity::Invalid, "a generated history must be linearizable");
    }
}

fn label(validity: Option<Validity>) -> &'static str {
    match validity {
        Some(Validity::Valid) => "valid",
        Some(Validity::Invalid) => "INVALID",
        Some(Validity::Unknown) => "unknown",
        None => "-",
    }
}

/// Which of our models judges a published history.
#[derive(Clone, Copy, PartialEq)]
enum Published {
    Kv,
    Etcd,
}

/// One of Porcupine's published histories, read into our events.
struct History {
    name: String,
    path: PathBuf,
    model: Published,
    events: Vec<Event>,
    /// The verdict Porcupine's own tests expect; `None` where they list none.
    expected: Option<Validity>,
}

/// Medians over the rounds, per history.
#[derive(Default)]
struct Timings {
    ours_ns: Vec<u64>,
    ours: Option<Validity>,
    theirs_ns: Vec<u64>,
    theirs: Option<Validity>,
}

fn porcupine_comparison() {
    let Some(dir) = std::env::var_os("PORCUPINE_DIR").map(PathBuf::from) else {
        println!("\n(set PORCUPINE_DIR to a checkout of anishathalye/porcupine to judge its published histories)");
        return;
    };
    let mut histories = match published(&dir) {
        Ok(histories) => histories,
        Err(error) => panic!("PORCUPINE_DIR={}: {error}", dir.display()),
    };
    if let Ok(only) = std::env::var("BENCH_HISTORY") {
        histories.retain(|h| h.name.contains(&only));
    }
    let driver = go_driver(&dir);
    if let Err(why) = &driver {
        println!("\n(Porcupine itself is not timed: {why})");
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut timings: Vec<Timings> = histories.iter().map(|_| Timings::default()).collect();
    for round in 0..rounds {
        let mut theirs = driver.as_ref().ok().map(|driver| Porcupine::start(driver, &histories));
        // Every history once untimed (the Go side does the same as it
        // starts), so neither side's first file pays for the other's caches.
        for history in &histories {
            std::hint::black_box(our_check(history));
        }
        // Interleaved file by file, who goes first alternating by round: a
        // drift of this machine's speed falls on both alike.
        for (history, timing) in histories.iter().zip(&mut timings) {
            match theirs.as_mut() {
                Some(theirs) if round % 2 == 0 => {
                    theirs.time(history, timing);
                    our_time(history, timing);
                }
                Some(theirs) => {
                    our_time(history, timing);
                    theirs.time(history, timing);
                }
                None => our_time(history, timing),
            }
        }
    }
    print_comparison(&histories, &timings, rounds, driver.is_ok());
}

/// Untimed checks of a file right before its timed ones, and timed checks
/// per file and round, on both sides: steady-state times, as Go's own
/// benchmarks measure (a process's first checks also pay for its
/// allocator's and caches' warming, on either side).
const WARMUP: usize = 3;
const REPS: usize = 3;

/// Our checker on one history: `WARMUP` times untimed, `REPS` times timed.
fn our_time(history: &History, timing: &mut Timings) {
    for _ in 0..WARMUP {
        std::hint::black_box(our_check(history));
    }
    for _ in 0..REPS {
        let started = Instant::now();
        let verdict = our_check(history);
        timing.ours_ns.push(started.elapsed().as_nanos() as u64);
        timing.ours = Some(verdict);
    }
}

/// Our check of one history: parsed events in, verdict out, as Porcupine's
/// side is timed; it stops at the first anomaly, as Porcupine does.
fn our_check(history: &History) -> Validity {
    let budget = Budget { after_anomaly: AfterAnomaly::Stop, ..Budget::default() };
    let result: CheckResult = match history.model {
        Published::Kv => check(&AppendKv, &history.events, &budget),
        Published::Etcd => check(&CasRegister, &history.events, &budget),
    };
    result.valid
}

/// Every published history: kv logs, then Jepsen's etcd logs, by name.
fn published(dir: &Path) -> Result<Vec<History>, String> {
    let expected_etcd = expected_etcd_verdicts(dir)?;
    let mut histories = Vec::new();
    for (folder, model) in [("test_data/kv", Published::Kv), ("test_data/jepsen", Published::Etcd)] {
        let folder = dir.join(folder);
        let entries = std::fs::read_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.retain(|p| match model {
            Published::Kv => p.extension().is_some_and(|x| x == "txt"),
            Published::Etcd => p.extension().is_some_and(|x| x == "log"),
        });
        paths.sort();
        for path in paths {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let (events, expected) = match model {
                Published::Kv => (kv_events(&text), kv_expected(&name)),
                Published::Etcd => {
                    (etcd_events(&text), etcd_number(&name).and_then(|n| expected_etcd.get(&n).copied()))
                }
            };
            histories.push(History { name, path, model, events, expected });
        }
    }
    if histories.is_empty() {
        return Err("no test_data/kv/*.txt or test_data/jepsen/*.log in it".into());
    }
    Ok(histories)
}

/// `c50-ok` is linearizable, `c50-bad` is not.
fn kv_expected(name: &str) -> Option<Validity> {
    if name.ends_with("-ok") {
        Some(Validity::Valid)
    } else if name.ends_with("-bad") {
        Some(Validity::Invalid)
    } else {
        None
    }
}

fn etcd_number(name: &str) -> Option<u32> {
    name.strip_prefix("etcd_")?.parse().ok()
}

/// Porcupine's tests list each etcd log's verdict as
/// `checkJepsen(t, 12, false)`: read from its test file, not copied here.
fn expected_etcd_verdicts(dir: &Path) -> Result<BTreeMap<u32, Validity>, String> {
    let path = dir.join("porcupine_test.go");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut expected = BTreeMap::new();
    for call in text.split("checkJepsen(t, ").skip(1) {
        let Some((args, _)) = call.split_once(')') else { continue };
        let Some((number, linearizable)) = args.split_once(", ") else { continue };
        let Ok(number) = number.trim().parse() else { continue };
        let verdict = match linearizable.trim() {
            "true" => Validity::Valid,
            "false" => Validity::Invalid,
            _ => continue,
        };
        expected.insert(number, verdict);
    }
    if expected.is_empty() {
        return Err(format!("{}: no checkJepsen(t, N, verdict) calls", path.display()));
    }
    Ok(expected)
}

/// Porcupine's key-value logs: lines like
/// `{:process 6, :type :invoke, :f :append, :key "0", :value "x 6 0 y"}`;
/// the line number is the time, as in Porcupine's own parser.
fn kv_events(text: &str) -> Vec<Event> {
    text.lines().enumerate().filter_map(|(i, line)| kv_event(i, line)).collect()
}

fn kv_event(line_no: usize, line: &str) -> Option<Event> {
    let field = |name: &str| -> Option<&str> {
        let start = line.find(name)? + name.len();
        let rest = &line[start..];
        Some(rest[..rest.find([',', '}'])?].trim())
    };
    let process: u64 = field(":process ")?.parse().ok()?;
    let kind = match field(":type :")? {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        _ => EventType::Info,
    };
    let mut event = Event::new(Process::Client(process), kind, field(":f :")?);
    event.index = line_no as u64;
    event.time = line_no as u64;
    event.key = Some(field(":key ")?.trim_matches('"').to_owned());
    event.value = match field(":value ")? {
        "nil" if kind == EventType::Ok && event.f == "get" => Value::Present(serde_json::json!("")),
        "nil" => Value::Absent,
        quoted => Value::Present(serde_json::json!(quoted.trim_matches('"'))),
    };
    Some(event)
}

/// Jepsen's etcd logs: lines like `INFO  jepsen.util - 3 :ok :cas [3 0]` (tabs between the last fields),
/// read with the semantics of Porcupine's `parseJepsenLog`: an `:ok` cas
/// swapped and a `:fail` cas did not (it returned false: the register did
/// not hold the expected value); a failed read (`:timed-out`) took no part
/// (Porcupine lets it return anything, which constrains nothing); `:info`
/// leaves the call's outcome unknown (Porcupine closes it at the very end of
/// the history: it may take effect any time after its call, or never).
fn etcd_events(text: &str) -> Vec<Event> {
    text.lines().enumerate().filter_map(|(i, line)| etcd_event(i, line)).collect()
}

fn etcd_event(line_no: usize, line: &str) -> Option<Event> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [_, "jepsen.util", "-", process, kind, f, args @ ..] = fields.as_slice() else { return None };
    let process: u64 = process.parse().ok()?;
    let f = f.strip_prefix(':')?;
    let number = |text: &str| -> Option<serde_json::Value> {
        if text == "nil" {
            return Some(serde_json::Value::Null);
        }
        text.trim_matches(['[', ']']).parse::<i64>().ok().map(serde_json::Value::from)
    };
    let (kind, value) = match (*kind, f, args) {
        (":invoke", "read", _) => (EventType::Invoke, Value::Absent),
        (":invoke", "write", [v]) => (EventType::Invoke, Value::Present(number(v)?)),
        (":invoke", "cas", [a, b]) => (EventType::Invoke, Value::Present(serde_json::json!([number(a)?, number(b)?]))),
        (":ok", "read", [v]) => (EventType::Ok, Value::Present(number(v)?)),
        (":ok", "write", _) => (EventType::Ok, Value::Absent),
        (":ok" | ":fail", "cas", _) => (EventType::Ok, Value::Present(serde_json::json!(*kind == ":ok"))),
        (":fail", "read", _) => (EventType::Fail, Value::Absent),
        (":info", _, _) => (EventType::Info, Value::Absent),
        _ => return None,
    };
    let mut event = Event::new(Process::Client(process), kind, f);
    event.index = line_no as u64;
    event.time = line_no as u64;
    event.value = value;
    Some(event)
}

/// Builds `benches/porcupine/` against the checkout in `dir`, when `go`
/// is installed. No network: Porcupine needs no module but itself.
fn go_driver(dir: &Path) -> Result<PathBuf, String> {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("porcupinebench");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/porcupine");
    for file in ["go.mod", "main.go", "models.go"] {
        std::fs::copy(source.join(file), work.join(file)).map_err(|e| format!("copying {file}: {e}"))?;
    }
    let checkout = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    let replace = format!("-replace=github.com/anishathalye/porcupine={}", checkout.display());
    go(&work, &["mod", "edit", &replace])?;
    go(&work, &["build", "-o", "porcupinebench", "."])?;
    Ok(work.join("porcupinebench"))
}

fn go(work: &Path, args: &[&str]) -> Result<(), String> {
    let mut command = Command::new(std::env::var_os("GO").unwrap_or_else(|| "go".into()));
    command.args(args).current_dir(work).env("GOFLAGS", "-mod=mod").env("GOTOOLCHAIN", "local").env("GOPROXY", "off");
    for (var, folder) in [("GOCACHE", "go-cache"), ("GOPATH", "go-path")] {
        if std::env::var_os(var).is_none() {
            command.env(var, work.join(folder));
        }
    }
    let output = command.output().map_err(|e| format!("no Go toolchain (`go {}`: {e})", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!("`go {}` failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

/// Porcupine's side: our Go driver, which loads and checks every history
/// once as it starts, then times one history per request, as ours is timed
/// (see `our_time`).
struct Porcupine {
    child: Child,
    requests: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
}

impl Porcupine {
    fn start(driver: &Path, histories: &[History]) -> Porcupine {
        let mut child = Command::new(driver)
            .args(["-warmup", &WARMUP.to_string(), "-reps", &REPS.to_string()])
            .args(histories.iter().map(|h| &h.path))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", driver.display()));
        let (requests, answers) = (child.stdin.take(), child.stdout.take().map(BufReader::new));
        let answers = answers.unwrap_or_else(|| panic!("{}: no standard output", driver.display()));
        Porcupine { child, requests, answers }
    }

    fn time(&mut self, history: &History, timing: &mut Timings) {
        let requests = self.requests.as_mut().expect("requests are open until the driver is dropped");
        writeln!(requests, "{}", history.path.display())
            .and_then(|()| requests.flush())
            .expect("asking porcupinebench");
        let mut line = String::new();
        self.answers.read_line(&mut line).expect("porcupinebench's answer");
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        let [path, _events, verdict, times] = fields.as_slice() else { panic!("porcupinebench answered {line:?}") };
        assert_eq!(Path::new(path), history.path, "porcupinebench answers the file asked");
        timing.theirs = Some(match *verdict {
            "valid" => Validity::Valid,
            "invalid" => Validity::Invalid,
            _ => Validity::Unknown,
        });
        timing.theirs_ns.extend(times.split(',').filter_map(|t| t.parse::<u64>().ok()));
    }
}

impl Drop for Porcupine {
    /// Closing the requests ends the driver.
    fn drop(&mut self) {
        self.requests.take();
        let _ = self.child.wait();
    }
}

fn median_ms(ns: &[u64]) -> Option<f64> {
    let mut sorted = ns.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).map(|&m| m as f64 / 1e6)
}

fn print_comparison(histories: &[History], timings: &[Timings], rounds: usize, timed_theirs: bool) {
    println!(
        "\nPorcupine's published histories: median ms of {rounds} rounds x {REPS} checks after {WARMUP} untimed \
         (parsed events in, verdict out; both stop at the first anomaly):"
    );
    println!(
        "{:<10} {:>7} {:>10} {:>14} {:>7} {:>8} {:>10} {:>9}",
        "history", "events", "ours ms", "porcupine ms", "ratio", "ours", "porcupine", "expected"
    );
    let (mut fast, mut slowest) = (0, (0.0_f64, String::new()));
    let (mut agree, mut disagreements, mut unreferenced) = (0, Vec::new(), Vec::new());
    for (history, timing) in histories.iter().zip(timings) {
        let ratio = print_row(history, timing);
        fast += usize::from(ratio.is_some_and(|r| r < 0.5));
        if let Some(ratio) = ratio.filter(|r| *r > slowest.0) {
            slowest = (ratio, history.name.clone());
        }
        match agreement(history, timing, timed_theirs) {
            Some(true) => agree += 1,
            Some(false) => disagreements.push(history.name.clone()),
            None => unreferenced.push(history.name.clone()),
        }
    }
    let n = histories.len();
    if timed_theirs {
        let verdict = if fast == n { "yes" } else { "NO" };
        let (worst, name) = slowest;
        let worst = format!("worst ratio {worst:.2}, {name}");
        println!("every history judged in less than half of Porcupine's time: {verdict} ({fast} of {n}; {worst})");
    }
    let verdict = if disagreements.is_empty() { "yes" } else { "NO" };
    let referenced = n - unreferenced.len();
    let detail = format!("disagree: {disagreements:?}; no reference: {unreferenced:?}");
    println!("every verdict matches the expected one: {verdict} ({agree} of {referenced}; {detail})");
    assert!(disagreements.is_empty(), "verdicts disagree on {disagreements:?}: a bug to find, ours or a parser's");
}

/// One history's line of the table; its ratio of our time to Porcupine's.
fn print_row(history: &History, timing: &Timings) -> Option<f64> {
    let ours = median_ms(&timing.ours_ns).unwrap_or(f64::NAN);
    let theirs = median_ms(&timing.theirs_ns);
    let ratio = theirs.map(|t| ours / t);
    let theirs_text = theirs.map_or("-".into(), |t| format!("{t:.3}"));
    let ratio_text = ratio.map_or("-".into(), |r| format!("{r:.2}"));
    println!(
        "{:<10} {:>7} {ours:>10.3} {theirs_text:>14} {ratio_text:>7} {:>8} {:>10} {:>9}",
        history.name,
        history.events.len(),
        label(timing.ours),
        label(timing.theirs),
        label(history.expected),
    );
    ratio
}

/// Whether our verdict, and Porcupine's when it ran, are the reference
/// one: what Porcupine's tests expect or, where they list none (etcd_095,
/// an empty log), Porcupine's own. `None` without any reference.
fn agreement(history: &History, timing: &Timings, timed_theirs: bool) -> Option<bool> {
    let reference = history.expected.or(timing.theirs)?;
    Some(timing.ours == Some(reference) && (!timed_theirs || timing.theirs == Some(reference)))
}
