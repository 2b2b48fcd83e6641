//! `make bench`: throughput and latency of a local three-node cluster under
//! 32 concurrent clients, for puts, strong gets and eventual gets.
//!
//! Targets (issue 3): p99 under 10 ms for eventual gets and under 50 ms for
//! strong gets; throughput at least twice a three-node etcd's on the same
//! machine (measured at about 4,800 puts/s and 7,600 linearizable gets/s).
//! `BENCH_SECS` sets each phase's length (default 10), `BENCH_CLIENTS` the
//! concurrency (default 32).

#[path = "../tests/support/mod.rs"]
mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::LocalCluster;

const KEYS: usize = 10_000;

#[derive(Clone, Copy, Debug)]
enum Phase {
    Put,
    StrongGet,
    EventualGet,
}

struct Report {
    phase: Phase,
    ops: usize,
    errors: usize,
    seconds: f64,
    latencies_us: Vec<u64>,
}

impl Report {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_us.len() as f64 * p).ceil() as usize).clamp(1, self.latencies_us.len()) - 1;
        self.latencies_us[index] as f64 / 1000.0
    }
}

async fn client_loop(
    phase: Phase,
    client: reqwest::Client,
    urls: Arc<Vec<String>>,
    worker: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<u64>, usize) {
    let value = BASE64.encode([7u8; 100]);
    let (mut latencies, mut errors, mut i) = (Vec::new(), 0, worker);
    while !stop.load(Ordering::Relaxed) {
        let url = &urls[i % urls.len()];
        let key = format!("bench-{}", (i * 7919) % KEYS);
        let started = Instant::now();
        let request = match phase {
            Phase::Put => client.post(format!("{url}/api/v1/item")).json(&json!({"key": key, "value": value})),
            Phase::StrongGet => client.get(format!("{url}/api/v1/item?key={key}&consistency=strong")),
            Phase::EventualGet => client.get(format!("{url}/api/v1/item?key={key}")),
        };
        match request.send().await {
            Ok(response) if response.status().is_success() || response.status() == 404 => {
                let _ = response.bytes().await;
                latencies.push(started.elapsed().as_micros() as u64);
            }
            _ => errors += 1,
        }
        i += 32;
    }
    (latencies, errors)
}

async fn run_phase(phase: Phase, urls: Arc<Vec<String>>, clients: usize, seconds: u64) -> Report {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).tcp_nodelay(true).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> =
        (0..clients).map(|w| tokio::spawn(client_loop(phase, http.clone(), urls.clone(), w, stop.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (latencies, failed) = worker.await.unwrap();
        latencies_us.extend(latencies);
        errors += failed;
    }
    latencies_us.sort_unstable();
    Report { phase, ops: latencies_us.len(), errors, seconds: started.elapsed().as_secs_f64(), latencies_us }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let seconds = env_or("BENCH_SECS", 10);
    let clients = env_or("BENCH_CLIENTS", 32) as usize;
    let storage = std::env::var("BENCH_STORAGE").unwrap_or_else(|_| "sled".into());
    let cluster = LocalCluster::start("bench", 3, &["--storage", &storage]);
    let urls = Arc::new((0..3).map(|i| cluster.url(i)).collect::<Vec<_>>());
    println!("local 3-node cluster (N=3 W=2 R=2, storage {storage}), {clients} clients, {seconds} s per phase");
    println!("{:<14} {:>10} {:>8} {:>9} {:>9} {:>9}", "operation", "ops/s", "errors", "p50 ms", "p99 ms", "max ms");
    for phase in [Phase::Put, Phase::StrongGet, Phase::EventualGet] {
        let report = run_phase(phase, urls.clone(), clients, seconds).await;
        println!(
            "{:<14} {:>10.0} {:>8} {:>9.2} {:>9.2} {:>9.2}",
            format!("{:?}", report.phase),
            report.ops as f64 / report.seconds,
            report.errors,
            report.percentile_ms(0.50),
            report.percentile_ms(0.99),
            report.percentile_ms(1.0),
        );
    }
    println!("targets: Put >= 9600 ops/s; StrongGet >= 15200 ops/s, p99 < 50 ms; EventualGet p99 < 10 ms");
}
