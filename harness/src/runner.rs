//! The runner: plays a generator with concurrent client processes and the
//! nemesis schedule against a [`Db`], writing every event to the history as
//! it happens. After the time limit it heals every fault, waits for the
//! replicas to converge (through the nodes' status call), and reads every
//! key it touched with a strong read.
//!
//! Processes follow Jepsen: `concurrency` workers, each running one process
//! at a time. A process whose operation ended `info` (unknown) is retired
//! and the worker continues as a new process (`id + concurrency`), so no
//! process ever has two operations in flight.

use crate::client::{Client, Consistency, Op, Outcome};
use crate::db::{Db, DbError};
use crate::generator::{Context, Generator, Next};
use crate::history::{Event, EventType, HistoryError, HistoryWriter, Process, Value};
use crate::nemesis::{schedule, Nemesis, NemesisError};
use crate::node_api::NodeApi;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kvapi::wire::{ReplicaKeys, ReplicaRecords};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("nemesis: {0}")]
    Nemesis(#[from] NemesisError),
    #[error("db: {0}")]
    Db(#[from] crate::db::DbError),
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub concurrency: usize,
    pub seed: u64,
    /// Time between fault changes (inject, heal, inject, ...).
    pub nemesis_interval: Duration,
    /// How long to wait for replicas to agree after the final heal.
    pub convergence_timeout: Duration,
    /// Whether the system under test lets the harness read each replica's
    /// own record of a key (kvnode's test hooks); without it the
    /// convergence check cannot run and says so.
    pub inspect_replicas: bool,
}

/// Live counters, for progress lines while the run goes.
#[derive(Debug, Default)]
pub struct Progress {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
    /// The current fault in a few words (`nemesis::describe::line`), `""` when healed.
    pub fault: Mutex<String>,
}

impl Progress {
    fn count(&self, kind: EventType) {
        let counter = match kind {
            EventType::Ok => &self.ok,
            EventType::Fail => &self.fail,
            EventType::Info => &self.info,
            EventType::Invoke => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a run left besides its history.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// Wall-clock milliseconds at history time 0 (for the TTL check).
    pub start_unix_ms: u64,
    pub keys: usize,
    pub events: u64,
    /// Whether every touched key's owners held the same version after the
    /// final heal (see `convergence.json` in the run folder for the
    /// states); `None` when the system offers no look at its replicas.
    pub converged: Option<bool>,
    pub convergence_wait_ms: u64,
    pub nemesis_error: Option<String>,
}

/// Appends events with run-relative times; shared by all processes.
pub struct Recorder {
    writer: Mutex<HistoryWriter>,
    start: Instant,
    start_unix_ms: u64,
    events: AtomicU64,
}

impl Recorder {
    pub fn new(writer: HistoryWriter) -> Recorder {
        let start_unix_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Recorder { writer: Mutex::new(writer), start: Instant::now(), start_unix_ms, events: AtomicU64::new(0) }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn record(&self, mut event: Event) -> Result<(), HistoryError> {
        let mut writer = self.writer.lock().expect("history lock");
        // Time is read under the lock, so times follow the file's order.
        event.time = self.start.elapsed().as_nanos() as u64;
        writer.append(event)?;
        self.events.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The invocation event of `op` by `process` on `node`.
pub fn invocation(process: u64, op: &Op, node: &str) -> Event {
    let mut event = Event::new(Process::Client(process), EventType::Invoke, op.f());
    event.key = Some(op.key().to_owned());
    event.node = Some(node.to_owned());
    match op {
        Op::Put { value, ttl_secs, .. } => {
            event.value = Value::Present(BASE64.encode(value).into());
            event.ttl = *ttl_secs;
        }
        Op::Get { consistency, min_timestamp, .. } => {
            event.consistency = Some(consistency.as_str().to_owned());
            event.min_timestamp = *min_timestamp;
        }
        Op::Delete { .. } => {}
    }
    event
}

/// The completion event of `op`.
pub fn completion(process: u64, op: &Op, node: &str, outcome: &Outcome) -> Event {
    let mut event = Event::new(Process::Client(process), outcome.kind, op.f());
    event.key = Some(op.key().to_owned());
    event.node = Some(node.to_owned());
    event.timestamp = outcome.timestamp;
    event.error = outcome.error.clone();
    if let Op::Get { consistency, min_timestamp, .. } = op {
        event.consistency = Some(consistency.as_str().to_owned());
        event.min_timestamp = *min_timestamp;
        if let Some(read) = &outcome.read {
            let value = read.as_ref().map_or(serde_json::Value::Null, |bytes| BASE64.encode(bytes).into());
            event.value = Value::Present(value);
        }
    }
    event
}

/// What every worker shares.
struct Shared<'a, D, C, G> {
    db: &'a D,
    client: &'a C,
    generator: &'a Mutex<G>,
    recorder: &'a Recorder,
    progress: &'a Progress,
    concurrency: u64,
    seed: u64,
}

/// One worker: runs processes `first, first + concurrency, ...` until the
/// generator is done.
async fn worker<D: Db, C: Client, G: Generator>(shared: &Shared<'_, D, C, G>, first: u64) -> Result<(), RunError> {
    let Shared { db, client, generator, recorder, progress, concurrency, seed } = *shared;
    let mut rng = StdRng::seed_from_u64(seed ^ first.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut process = first;
    loop {
        let next = generator.lock().expect("generator lock").next(&Context { elapsed: recorder.elapsed(), process });
        let Next::Op { op, at } = next else { return Ok(()) };
        let wait = at.saturating_sub(recorder.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let (node, url) = pick_node(db, client, &op, &mut rng)?;
        let node = node.as_str();
        recorder.record(invocation(process, &op, node))?;
        let outcome = client.invoke(&url, &op).await;
        recorder.record(completion(process, &op, node, &outcome))?;
        progress.count(outcome.kind);
        generator.lock().expect("generator lock").observe(process, &op, &outcome);
        if outcome.kind == EventType::Info {
            process += concurrency;
        }
    }
}

/// A node for `op`, from the nodes as they are now (the membership fault
/// adds and retires them), and its URL. One retired between the two calls
/// is drawn again, a few times at most.
fn pick_node<D: Db, C: Client>(db: &D, client: &C, op: &Op, rng: &mut StdRng) -> Result<(String, String), RunError> {
    let mut last = None;
    for _ in 0..PICKS {
        let nodes = db.nodes();
        let node = client.route(&nodes[rng.random_range(0..nodes.len())], op, &nodes).to_owned();
        match db.base_url(&node) {
            Ok(url) => return Ok((node, url)),
            Err(error @ DbError::UnknownNode(_)) => last = Some(error),
            Err(error) => return Err(error.into()),
        }
    }
    Err(last.expect("PICKS > 0").into())
}

/// Draws of a node before a worker gives up.
const PICKS: usize = 8;

/// Plays `generator` through `client` (and `nemesis`, if any) against
/// `db`, writing the history to `history_path`; then heals, waits for
/// convergence and does the final reads. Returns the touched keys' replica
/// states as JSON too.
pub async fn run<D: Db, C: Client, G: Generator, N: Nemesis>(
    db: &D,
    client: &C,
    generator: G,
    mut nemesis: Option<N>,
    config: &RunConfig,
    history_path: &Path,
    progress: &Progress,
) -> Result<(RunSummary, serde_json::Value), RunError> {
    let recorder = Recorder::new(HistoryWriter::create(history_path)?);
    let generator = Mutex::new(generator);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if let Some(nemesis) = nemesis.as_mut() {
        nemesis.setup(db).await?;
    }
    let concurrency = config.concurrency as u64;
    let shared =
        Shared { db, client, generator: &generator, recorder: &recorder, progress, concurrency, seed: config.seed };
    let clients = async {
        let workers = (0..concurrency).map(|first| worker(&shared, first));
        let results = futures::future::join_all(workers).await;
        let _ = stop.send(true);
        results.into_iter().collect::<Result<Vec<()>, RunError>>()
    };
    let faults = async {
        let Some(nemesis) = nemesis.as_mut() else { return Ok(()) };
        let record = |event: crate::nemesis::Event| {
            *progress.fault.lock().expect("progress lock") = if event.f == "heal" {
                String::new()
            } else {
                crate::nemesis::describe::line(&event.f, Some(&event.value))
            };
            let mut line = Event::new(Process::NEMESIS, EventType::Info, &event.f);
            line.value = Value::Present(event.value);
            if let Err(error) = recorder.record(line) {
                tracing::error!(%error, "could not record a nemesis event");
            }
        };
        schedule::run(db, nemesis, config.nemesis_interval, stopped, record).await
    };
    let (clients, faults) = tokio::join!(clients, faults);
    clients?;
    let nemesis_error = faults.err().map(|error| error.to_string());
    if let Some(error) = &nemesis_error {
        tracing::error!(%error, "the nemesis failed; the final heal ran");
    }

    let keys: BTreeSet<String> = generator.lock().expect("generator lock").keys_touched();
    let wait_started = Instant::now();
    let (converged, replicas) = match config.inspect_replicas {
        true => {
            let (converged, replicas) = await_convergence(db, &keys, config).await;
            (Some(converged), replicas)
        }
        false => (None, serde_json::json!({"not_available": "the system offers no look at its replicas"})),
    };
    let convergence_wait_ms = wait_started.elapsed().as_millis() as u64;
    final_reads(db, client, &recorder, &keys, concurrency * 1_000_000).await?;
    let summary = RunSummary {
        start_unix_ms: recorder.start_unix_ms,
        keys: keys.len(),
        events: recorder.events.load(Ordering::Relaxed),
        converged,
        convergence_wait_ms,
        nemesis_error,
    };
    Ok((summary, replicas))
}

/// Polls every node's local records of `keys` until every key's owners
/// hold the same version, or the timeout. Returns whether they did, and
/// the last states seen (`{key: {node: record}}`).
async fn await_convergence<D: Db>(db: &D, keys: &BTreeSet<String>, config: &RunConfig) -> (bool, serde_json::Value) {
    let nodes = db.nodes();
    let http = crate::node_api::hook_client(Duration::from_secs(10), db.cluster_secret().as_deref());
    let deadline = Instant::now() + config.convergence_timeout;
    let all: Vec<String> = keys.iter().cloned().collect();
    let chunks: Vec<&[String]> = all.chunks(5_000).collect();
    loop {
        let mut states: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
        let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for node in &nodes {
            let Ok(url) = db.base_url(node) else { continue };
            for chunk in &chunks {
                let body = ReplicaKeys { keys: chunk.to_vec() };
                let answer = http.post(format!("{url}/test/v1/replica")).json(&body).send().await;
                let Ok(records) = answer.and_then(|a| a.error_for_status()) else { continue };
                let Ok(records) = records.json::<ReplicaRecords>().await else { continue };
                for record in records.records {
                    // The node says who owns the key (its own ring), so a
                    // cluster configured otherwise is still judged right.
                    owners.entry(record.key.clone()).or_default().extend(record.owners.iter().cloned());
                    if record.owners.contains(node) {
                        let state = serde_json::json!({"present": record.present, "timestamp": record.timestamp,
                            "tiebreak": record.tiebreak, "tombstone": record.tombstone});
                        states.entry(record.key).or_default().insert(node.clone(), state);
                    }
                }
            }
        }
        let recovered = nodes_recovered(db, &nodes).await;
        let agree = recovered
            && keys.iter().all(|key| {
                let (Some(owners), Some(by_node)) = (owners.get(key), states.get(key)) else { return false };
                let distinct: BTreeSet<String> = by_node.values().map(|v| v.to_string()).collect();
                owners.iter().all(|owner| by_node.contains_key(owner)) && distinct.len() <= 1
            });
        if agree || Instant::now() >= deadline {
            return (agree, serde_json::to_value(states).expect("states serialize"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether every node answers `/health` and none is still recovering from
/// its peers after an unclean stop (it would refuse the final reads).
pub async fn nodes_recovered<D: Db>(db: &D, nodes: &[String]) -> bool {
    let api = NodeApi::new(Duration::from_secs(2));
    for node in nodes {
        let Ok(url) = db.base_url(node) else { return false };
        if !matches!(api.recovering(&url).await, Ok(false)) {
            return false;
        }
    }
    true
}

/// A strong read of every key, each by a process of its own, recorded in
/// the history like any other operation.
async fn final_reads<D: Db, C: Client>(
    db: &D,
    client: &C,
    recorder: &Recorder,
    keys: &BTreeSet<String>,
    first_process: u64,
) -> Result<(), RunError> {
    let nodes = db.nodes();
    for (i, key) in keys.iter().enumerate() {
        let op = Op::Get { key: key.clone(), consistency: Consistency::Strong, min_timestamp: None };
        let node = client.route(&nodes[i % nodes.len()], &op, &nodes);
        let url = db.base_url(node)?;
        let process = first_process + i as u64;
        for attempt in 1..=FINAL_READ_ATTEMPTS {
            recorder.record(invocation(process, &op, node))?;
            let outcome = client.invoke(&url, &op).await;
            recorder.record(completion(process, &op, node, &outcome))?;
            // A failed read changed nothing (an unknown one is not retried:
            // its process is done); a node may still be settling.
            if outcome.kind != EventType::Fail || attempt == FINAL_READ_ATTEMPTS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}

/// Tries per key for the final read.
const FINAL_READ_ATTEMPTS: u32 = 3;
