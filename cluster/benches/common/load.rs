//! The project's own load generator (reqwest, one task per client) and a
//! three-member etcd on loopback: what `cluster_load` measures with, and
//! the second opinion beside wrk in `neutral`.

use super::CpuUse;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const KEYS: usize = 10_000;

/// What the load generator drives.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Kv,
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Put,
    StrongGet,
    EventualGet,
}

pub struct Report {
    pub phase: Phase,
    pub ops: usize,
    pub errors: usize,
    pub seconds: f64,
    pub latencies_us: Vec<u64>,
    pub cpu: CpuUse,
}

impl Report {
    /// Two runs of one phase as one.
    pub fn merge(mut self, other: Report) -> Report {
        self.ops += other.ops;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
        self.cpu = self.cpu.plus(other.cpu);
        self
    }

    /// Busy CPU time of the whole machine (load generator included) per op.
    pub fn cpu_us_per_op(&self) -> f64 {
        let tick_us = 1e6 / 100.0; // USER_HZ is 100 on Linux
        self.cpu.busy_ticks as f64 * tick_us / self.ops.max(1) as f64
    }

    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_us.len() as f64 * p).ceil() as usize).clamp(1, self.latencies_us.len()) - 1;
        self.latencies_us[index] as f64 / 1000.0
    }
}

/// One request of `phase` for `key`: our API, or etcd's v3 JSON gateway
/// (a range is linearizable unless `serializable`).
pub fn request(
    client: &reqwest::Client,
    target: Target,
    phase: Phase,
    url: &str,
    key: &str,
    value: &str,
) -> reqwest::RequestBuilder {
    match (target, phase) {
        (Target::Kv, Phase::Put) => {
            client.post(format!("{url}/api/v1/item")).json(&json!({"key": key, "value": value}))
        }
        (Target::Kv, Phase::StrongGet) => client.get(format!("{url}/api/v1/item?key={key}&consistency=strong")),
        (Target::Kv, Phase::EventualGet) => client.get(format!("{url}/api/v1/item?key={key}")),
        (Target::Etcd, Phase::Put) => {
            client.post(format!("{url}/v3/kv/put")).json(&json!({"key": BASE64.encode(key), "value": value}))
        }
        (Target::Etcd, Phase::StrongGet) => {
            client.post(format!("{url}/v3/kv/range")).json(&json!({"key": BASE64.encode(key)}))
        }
        (Target::Etcd, Phase::EventualGet) => {
            client.post(format!("{url}/v3/kv/range")).json(&json!({"key": BASE64.encode(key), "serializable": true}))
        }
    }
}

async fn client_loop(
    target: Target,
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
        match request(&client, target, phase, url, &key, &value).send().await {
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

pub async fn run_phase(target: Target, phase: Phase, urls: Arc<Vec<String>>, clients: usize, seconds: u64) -> Report {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).tcp_nodelay(true).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let cpu_before = CpuUse::now();
    let workers: Vec<_> = (0..clients)
        .map(|w| tokio::spawn(client_loop(target, phase, http.clone(), urls.clone(), w, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let cpu = CpuUse::now().since(cpu_before);
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (latencies, failed) = worker.await.unwrap();
        latencies_us.extend(latencies);
        errors += failed;
    }
    latencies_us.sort_unstable();
    let seconds = started.elapsed().as_secs_f64();
    Report { phase, ops: latencies_us.len(), errors, seconds, latencies_us, cpu }
}

/// A three-member etcd on loopback, killed (and its data removed) when dropped.
pub struct EtcdCluster {
    members: Vec<std::process::Child>,
    dir: std::path::PathBuf,
    pub urls: Vec<String>,
}

impl EtcdCluster {
    /// `None` when no `etcd` binary is on the PATH.
    pub fn start() -> Option<EtcdCluster> {
        let found = std::process::Command::new("etcd").arg("--version").output();
        if !found.is_ok_and(|output| output.status.success()) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("bench-etcd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create etcd data dir");
        // Below Linux's ephemeral range (32768+), where a client's local
        // port could already hold one of ours.
        let base = 20_000 + (std::process::id() % 1_000) as u16 * 10;
        let peer = |i: u16| format!("http://127.0.0.1:{}", base + i);
        let initial: Vec<String> = (0..3).map(|i| format!("e{i}={}", peer(i))).collect();
        let urls: Vec<String> = (0..3).map(|i| format!("http://127.0.0.1:{}", base + 5 + i)).collect();
        let members = (0..3u16)
            .map(|i| {
                let log = std::fs::File::create(dir.join(format!("e{i}.log"))).expect("create etcd log");
                std::process::Command::new("etcd")
                    .args(["--name", &format!("e{i}"), "--initial-cluster-token", "bench"])
                    .arg("--data-dir")
                    .arg(dir.join(format!("e{i}")))
                    .args(["--listen-peer-urls", &peer(i), "--initial-advertise-peer-urls", &peer(i)])
                    .args(["--listen-client-urls", &urls[i as usize], "--advertise-client-urls", &urls[i as usize]])
                    .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
                    .stdout(log.try_clone().expect("clone log handle"))
                    .stderr(log)
                    .spawn()
                    .expect("spawn etcd")
            })
            .collect();
        Some(EtcdCluster { members, dir, urls })
    }

    /// Waits until every member accepts a put (a leader is elected).
    pub async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        for url in &self.urls {
            for attempt in 0.. {
                let put = request(&http, Target::Etcd, Phase::Put, url, "ready", "").send().await;
                if put.is_ok_and(|response| response.status().is_success()) {
                    break;
                }
                assert!(attempt < 300, "etcd at {url} not ready after 30 s; logs in {}", self.dir.display());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl EtcdCluster {
    /// Which of `urls` is the Raft leader now (etcd's maintenance status:
    /// every member names the leader's id; the one whose own id it is).
    pub async fn leader(&self) -> Option<usize> {
        let http = reqwest::Client::new();
        for (i, url) in self.urls.iter().enumerate() {
            let status = http.post(format!("{url}/v3/maintenance/status")).json(&json!({})).send().await.ok()?;
            let status: serde_json::Value = status.json().await.ok()?;
            if status["header"]["member_id"] == status["leader"] {
                return Some(i);
            }
        }
        None
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
        if std::thread::panicking() {
            eprintln!("etcd's data and logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
