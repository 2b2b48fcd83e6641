//! `make bench`'s neutral yardstick: our three-node cluster and a
//! three-member etcd driven by wrk (Debian's `wrk`, a load generator nobody
//! here wrote), with the same script shape for both, in the same run.
//!
//! - Three operations, each a 100-byte base64 value over 10,000 preloaded
//!   keys: put (N=3, W=2), strong get (ours: R=2; etcd: a linearizable
//!   range) and eventual get (ours: one replica; etcd: a serializable
//!   range).
//! - Targets: our node n1 (any node coordinates: leaderless), etcd's leader
//!   and one follower, and an axum hello-world server as the machine's HTTP
//!   floor. `BENCH_ROUNDS` (3) short rounds of `BENCH_SECS` (5) s each, the
//!   targets' order reversed every other round; medians reported.
//! - CPU per operation: the whole machine's busy time over a round (wrk
//!   included) divided by its requests; steadier than ops/s here.
//! - A second opinion: the project's own generator (`common::load`) runs
//!   each operation once against ours and etcd's leader; where it and wrk
//!   differ by more than 10 %, both are printed.
//!
//! wrk must be on the PATH (`apt-get install wrk`), and etcd for the
//! comparison (`apt-get install etcd-server`); `BENCH_CONNECTIONS` (32)
//! and `BENCH_THREADS` (2) shape wrk.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::load::{run_phase, EtcdCluster, Phase, Target, KEYS};
use common::{env_or, CpuUse};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use support::LocalCluster;

/// Keys the scale rows with values over 100 bytes use.
const LARGE_VALUE_KEYS: usize = 64;

/// Where one wrk run goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Ours,
    EtcdLeader,
    EtcdFollower,
    /// axum's hello world: what HTTP alone costs on this machine.
    Floor,
}

/// What wrk reported for one run, and the machine's CPU over it.
#[derive(Clone, Copy, Debug)]
struct WrkRun {
    requests: u64,
    seconds: f64,
    /// Answers that were not 2xx/3xx, and socket errors and timeouts.
    errors: u64,
    p50_us: u64,
    p99_us: u64,
    cpu: CpuUse,
}

impl WrkRun {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn cpu_us_per_op(&self) -> f64 {
        self.cpu.busy_ticks as f64 * 10_000.0 / self.requests.max(1) as f64
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A Lua table of the keys as each store spells them in a body or URL.
fn keys_table(endpoint: Endpoint, key_count: usize) -> String {
    let keys: Vec<String> = (0..key_count)
        .map(|i| {
            let key = format!("bench-{i}");
            let spelled = if endpoint == Endpoint::Ours { key } else { BASE64.encode(key) };
            format!("\"{spelled}\"")
        })
        .collect();
    format!("local keys = {{{}}}", keys.join(","))
}

/// The one line of Lua that makes a request of `phase` at `endpoint`.
fn request_line(endpoint: Endpoint, phase: Phase) -> &'static str {
    match (endpoint, phase) {
        (Endpoint::Floor, _) => r#"return wrk.format("GET", "/")"#,
        (Endpoint::Ours, Phase::Put) => {
            r#"return wrk.format("POST", "/api/v1/item", json, '{"key":"' .. key .. '","value":"' .. value .. '"}')"#
        }
        (Endpoint::Ours, Phase::StrongGet) => {
            r#"return wrk.format("GET", "/api/v1/item?key=" .. key .. "&consistency=strong")"#
        }
        (Endpoint::Ours, Phase::EventualGet) => r#"return wrk.format("GET", "/api/v1/item?key=" .. key)"#,
        (_, Phase::Put) => {
            r#"return wrk.format("POST", "/v3/kv/put", json, '{"key":"' .. key .. '","value":"' .. value .. '"}')"#
        }
        (_, Phase::StrongGet) => r#"return wrk.format("POST", "/v3/kv/range", json, '{"key":"' .. key .. '"}')"#,
        (_, Phase::EventualGet) => {
            r#"return wrk.format("POST", "/v3/kv/range", json, '{"key":"' .. key .. '","serializable":true}')"#
        }
    }
}

/// The whole script: keys, a per-thread walk through them, and a
/// `done` that prints one machine-readable line.
fn script(endpoint: Endpoint, phase: Phase, value_bytes: usize, key_count: usize) -> String {
    format!(
        r#"{keys}
local value = "{value}"
local json = {{["Content-Type"] = "application/json"}}
local threads = 0
function setup(thread)
  thread:set("offset", threads * 1000)
  threads = threads + 1
end
local counter = 0
function init(args)
  counter = offset or 0
end
function request()
  counter = counter + 1
  local key = keys[(counter * 7919) % #keys + 1]
  {line}
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"#,
        keys = keys_table(endpoint, key_count),
        value = BASE64.encode(vec![7u8; value_bytes]),
        line = request_line(endpoint, phase),
    )
}

fn wrk_installed() -> bool {
    Command::new("wrk").arg("--version").output().is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// wrk's shape: connections and threads (never more threads than
/// connections).
#[derive(Clone, Copy, Debug)]
struct Shape {
    connections: u64,
    threads: u64,
}

impl Shape {
    fn default_shape() -> Shape {
        Shape { connections: env_or("BENCH_CONNECTIONS", 32), threads: env_or("BENCH_THREADS", 2) }
    }
}

/// Runs wrk once; panics (the bench fails) when its output has no result.
fn run_wrk(url: &str, script: &Path, seconds: u64, shape: Shape) -> WrkRun {
    let connections = shape.connections.to_string();
    let threads = shape.threads.min(shape.connections).to_string();
    let before = CpuUse::now();
    let output = Command::new("wrk")
        .args(["-t", &threads, "-c", &connections, "-d", &format!("{seconds}s"), "--timeout", "5s", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs");
    let cpu = CpuUse::now().since(before);
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("WRK_RESULT "))
        .unwrap_or_else(|| panic!("no result from wrk {url}: {text}{}", String::from_utf8_lossy(&output.stderr)));
    let numbers: Vec<u64> = line.split_whitespace().map(|n| n.parse().unwrap_or(0)).collect();
    let [requests, duration_us, errors, p50_us, p99_us] = numbers[..] else { panic!("wrk's line: {line}") };
    WrkRun { requests, seconds: duration_us as f64 / 1e6, errors, p50_us, p99_us, cpu }
}

/// Writes every key once (so gets find them), through the project's
/// client: what matters is that they are there.
async fn preload(target: Target, url: &str) {
    let http = reqwest::Client::new();
    let value = BASE64.encode([7u8; 100]);
    let url = Arc::new(url.to_owned());
    let tasks: Vec<_> = (0..16)
        .map(|worker| {
            let (http, url, value) = (http.clone(), url.clone(), value.clone());
            tokio::spawn(async move {
                for i in (worker..KEYS).step_by(16) {
                    let key = format!("bench-{i}");
                    let sent = common::load::request(&http, target, Phase::Put, &url, &key, &value).send().await;
                    assert!(sent.is_ok_and(|r| r.status().is_success()), "preloading {key} into {url}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("preload task");
    }
}

/// axum's hello world on a free port, in this process.
async fn floor_server() -> String {
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "Hello, World!" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the floor server");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

struct Setup {
    urls: Vec<(Endpoint, String)>,
    scripts: PathBuf,
}

impl Setup {
    /// The script of a cell: large values go to the first
    /// [`LARGE_VALUE_KEYS`] keys only, so that the puts overwrite all of
    /// them and the gets that follow read values of that size.
    fn script(&self, endpoint: Endpoint, phase: Phase, value_bytes: usize) -> PathBuf {
        let key_count = if value_bytes > 100 { LARGE_VALUE_KEYS } else { KEYS };
        let path = self.scripts.join(format!("{endpoint:?}-{phase:?}-{value_bytes}.lua"));
        if !path.exists() {
            std::fs::write(&path, script(endpoint, phase, value_bytes, key_count)).expect("write a wrk script");
        }
        path
    }

    fn url(&self, endpoint: Endpoint) -> Option<&str> {
        self.urls.iter().find(|(e, _)| *e == endpoint).map(|(_, url)| url.as_str())
    }
}

#[tokio::main]
async fn main() {
    if !wrk_installed() {
        eprintln!("neutral bench: wrk is not on the PATH (Debian: apt-get install wrk)");
        std::process::exit(1);
    }
    let (seconds, rounds) = (env_or("BENCH_SECS", 5), env_or("BENCH_ROUNDS", 3) as usize);
    let cluster = LocalCluster::start("neutral", 3, &["--storage", "sled"]);
    let etcd = EtcdCluster::start();
    let mut urls = vec![(Endpoint::Ours, cluster.url(0)), (Endpoint::Floor, floor_server().await)];
    preload(Target::Kv, &cluster.url(0)).await;
    if let Some(etcd) = &etcd {
        etcd.wait_ready().await;
        let leader = etcd.leader().await.expect("etcd names a leader");
        urls.push((Endpoint::EtcdLeader, etcd.urls[leader].clone()));
        urls.push((Endpoint::EtcdFollower, etcd.urls[(leader + 1) % etcd.urls.len()].clone()));
        preload(Target::Etcd, &etcd.urls[leader]).await;
    } else {
        println!("no etcd on the PATH (Debian: apt-get install etcd-server): ours and the floor only");
    }
    let scripts = std::env::temp_dir().join(format!("neutral-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scripts).expect("a folder for the scripts");
    let setup = Setup { urls, scripts };
    let mut results: Vec<(Phase, Endpoint, Vec<WrkRun>)> = Vec::new();
    for phase in [Phase::Put, Phase::StrongGet, Phase::EventualGet] {
        for round in 0..rounds {
            let mut order: Vec<&(Endpoint, String)> = setup.urls.iter().collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for (endpoint, url) in order {
                let run = run_wrk(url, &setup.script(*endpoint, phase, 100), seconds, Shape::default_shape());
                match results.iter_mut().find(|(p, e, _)| *p == phase && e == endpoint) {
                    Some((_, _, runs)) => runs.push(run),
                    None => results.push((phase, *endpoint, vec![run])),
                }
            }
        }
    }
    report(&results, rounds, seconds);
    second_opinion(&results, &cluster, etcd.as_ref(), seconds).await;
    if env_or("BENCH_SCALE", 1) == 1 {
        scale(&setup, env_or("BENCH_SCALE_SECS", 4));
    }
    let _ = std::fs::remove_dir_all(&setup.scripts);
}

fn runs_of(results: &[(Phase, Endpoint, Vec<WrkRun>)], phase: Phase, endpoint: Endpoint) -> Option<&Vec<WrkRun>> {
    results.iter().find(|(p, e, _)| *p == phase && *e == endpoint).map(|(_, _, runs)| runs)
}

fn medians(runs: &[WrkRun]) -> (f64, f64, f64, u64) {
    (
        median(runs.iter().map(WrkRun::throughput).collect()),
        median(runs.iter().map(|r| r.p99_us as f64 / 1000.0).collect()),
        median(runs.iter().map(WrkRun::cpu_us_per_op).collect()),
        runs.iter().map(|r| r.errors).sum(),
    )
}

fn report(results: &[(Phase, Endpoint, Vec<WrkRun>)], rounds: usize, seconds: u64) {
    println!("\nwrk, {rounds} rounds of {seconds} s per cell, medians (cpu: the whole machine's busy time per request, wrk included)\n");
    println!("| operation | target | ops/s | p50 ms | p99 ms | cpu us/op | errors |");
    println!("|---|---|---|---|---|---|---|");
    for (phase, endpoint, runs) in results {
        let (throughput, p99_ms, cpu, errors) = medians(runs);
        let p50_ms = median(runs.iter().map(|r| r.p50_us as f64 / 1000.0).collect());
        println!("| {phase:?} | {endpoint:?} | {throughput:.0} | {p50_ms:.2} | {p99_ms:.2} | {cpu:.0} | {errors} |");
    }
    let rate = |phase, endpoint| runs_of(results, phase, endpoint).map(|runs| medians(runs).0);
    let p99 = |phase| runs_of(results, phase, Endpoint::Ours).map_or(f64::NAN, |runs| medians(runs).1);
    println!("\ntargets (issue 18), by wrk's medians:");
    let ratio = |phase| match (rate(phase, Endpoint::Ours), rate(phase, Endpoint::EtcdLeader)) {
        (Some(ours), Some(etcd)) => format!("{:.2}x etcd's leader", ours / etcd),
        _ => "no etcd".into(),
    };
    println!("  puts:          {} (target >= 3x), p99 {:.2} ms (target < 10)", ratio(Phase::Put), p99(Phase::Put));
    println!(
        "  strong gets:   {} (target >= 5x), p99 {:.2} ms (target < 5)",
        ratio(Phase::StrongGet),
        p99(Phase::StrongGet)
    );
    if let (Some(ours), Some(floor)) =
        (rate(Phase::EventualGet, Endpoint::Ours), rate(Phase::EventualGet, Endpoint::Floor))
    {
        println!("  eventual gets: {:.0}% of axum hello world's GET rate (target >= 50%)", 100.0 * ours / floor);
    }
}

/// The project's own generator, once per operation against ours and
/// etcd's leader; printed beside wrk where they disagree by over 10 %.
async fn second_opinion(
    results: &[(Phase, Endpoint, Vec<WrkRun>)],
    cluster: &LocalCluster,
    etcd: Option<&EtcdCluster>,
    seconds: u64,
) {
    let clients = env_or("BENCH_CONNECTIONS", 32) as usize;
    let leader = match etcd {
        Some(etcd) => etcd.leader().await.map(|i| etcd.urls[i].clone()),
        None => None,
    };
    println!("\nsecond opinion: the project's own generator ({clients} clients, {seconds} s), against wrk's median");
    for phase in [Phase::Put, Phase::StrongGet, Phase::EventualGet] {
        let mut targets = vec![(Target::Kv, Endpoint::Ours, cluster.url(0))];
        if let Some(leader) = &leader {
            targets.push((Target::Etcd, Endpoint::EtcdLeader, leader.clone()));
        }
        for (target, endpoint, url) in targets {
            let ours = run_phase(target, phase, Arc::new(vec![url]), clients, seconds).await.throughput();
            let Some(runs) = runs_of(results, phase, endpoint) else { continue };
            let wrk = medians(runs).0;
            let differ = (ours - wrk).abs() / wrk.max(1.0) > 0.10;
            println!(
                "  {phase:?} {endpoint:?}: wrk {wrk:.0}/s, ours {ours:.0}/s{}",
                if differ { "  <- they disagree by more than 10%" } else { "" }
            );
        }
    }
}

/// Where each store bends: puts and strong gets against ours and etcd's
/// leader, one wrk run per cell, as the connections grow (100-byte values)
/// and as the values grow (32 connections). `BENCH_SCALE=0` skips it.
fn scale(setup: &Setup, seconds: u64) {
    let endpoints: Vec<Endpoint> =
        [Endpoint::Ours, Endpoint::EtcdLeader].into_iter().filter(|e| setup.url(*e).is_some()).collect();
    let cell = |endpoint: Endpoint, phase: Phase, value_bytes: usize, connections: u64| {
        let url = setup.url(endpoint).expect("filtered above");
        let shape = Shape { connections, threads: 2 };
        run_wrk(url, &setup.script(endpoint, phase, value_bytes), seconds, shape)
    };
    let row = |label: String, runs: Vec<WrkRun>| {
        let cells: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.0}/s, p99 {:.1} ms{}", r.throughput(), r.p99_us as f64 / 1000.0, errors(r)))
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    let header = |first: &str| {
        let names: Vec<String> = [Phase::Put, Phase::StrongGet]
            .iter()
            .flat_map(|p| endpoints.iter().map(move |e| format!("{p:?} {e:?}")))
            .collect();
        println!("\n| {first} | {} |", names.join(" | "));
        println!("|---|{}", "---|".repeat(names.len()));
    };
    println!("\nscale: one {seconds} s wrk run per cell (puts write the keys the gets read)");
    header("connections (100 B values)");
    for connections in [1, 8, 32, 128, 512] {
        let runs = [Phase::Put, Phase::StrongGet]
            .iter()
            .flat_map(|p| endpoints.iter().map(move |e| (*p, *e)))
            .map(|(p, e)| cell(e, p, 100, connections))
            .collect();
        row(connections.to_string(), runs);
    }
    header("value size (32 connections)");
    for (label, bytes) in [("100 B", 100), ("10 KiB", 10 << 10), ("1 MiB", 1 << 20)] {
        let runs = [Phase::Put, Phase::StrongGet]
            .iter()
            .flat_map(|p| endpoints.iter().map(move |e| (*p, *e)))
            .map(|(p, e)| cell(e, p, bytes, 32))
            .collect();
        row(label.to_owned(), runs);
    }
}

fn errors(run: &WrkRun) -> String {
    if run.errors == 0 {
        String::new()
    } else {
        format!(", {} errors", run.errors)
    }
}
