//! `make soak`: a long mixed load plus a steady trickle of bad requests
//! against a local three-node cluster, to find what only time finds: memory
//! that grows, descriptors that leak, a crash on the millionth request, an
//! acknowledged write that is gone at the end.
//!
//! It starts three `kvnode` processes on loopback (sled in a temp folder,
//! real peers and a cluster secret, no test hooks: as an operator runs
//! them), then for `SOAK_SECS` drives from `SOAK_CLIENTS` tasks puts
//! (values of 1 B to 32 KiB, and some of ~100 KiB), strong gets, eventual
//! gets (half with `min_timestamp`), deletes and TTL puts over a bounded
//! key space, each to a random node; and `SOAK_BAD_PER_SEC` bad requests:
//! malformed JSON, bad base64, oversized keys and values, bad queries,
//! unknown paths, wrong methods, internal paths without the secret, huge
//! headers, garbage bytes, half-sent requests held open, and connections
//! opened and dropped. Every `SOAK_SAMPLE_SECS` it reads each node's RSS
//! and open descriptors from `/proc`, checks that it still runs, and asks
//! its `/health`.
//!
//! At the end it reads every key written back with a strong read (or, once
//! a node's store has failed, with an eventual read with `min_timestamp`,
//! which writes nothing): a key whose newest acknowledged write (put or
//! delete) is not reflected is a lost write. Then it prints RSS over time,
//! throughput and latency per operation, errors by kind, the bad requests'
//! outcomes and what the nodes logged.
//!
//! Exit status 1 (and the reasons) if a node exited or said on `/health`
//! that its store failed, an acknowledged write
//! was lost, a bad request got a 5xx or a 2xx or no answer at all, a
//! well-formed request got a 4xx or a 5xx other than 503, a strong read (or
//! a read with `min_timestamp`) returned something older than a write
//! acknowledged before it started, a value came back corrupted, or an
//! expired TTL value was still readable. 503s under load are reported, not
//! failed: the API allows them.
//!
//! `SOAK_SEED` replays a run's choices (one seed drives every random
//! choice; the interleaving of concurrent requests still varies).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::{env_or, CpuUse};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{ClusterOptions, LocalCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Client-side bound on every request: the node's own timeout (5 s) plus
/// room for a 100 KiB body on a loaded machine.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys that only TTL puts write, so that expiry never looks like a loss.
const TTL_KEYS: usize = 500;
const MAX_TTL_SECS: u64 = 5;
/// A fifth of the operations go to these few keys, so that concurrent
/// writes to one key (and the timestamp rule between them) are common.
const HOT_KEYS: usize = 50;
/// Half-sent requests held open at once, and for how long at most: enough
/// to hold server resources, bounded so the soak stays a soak. Past the
/// node's header and body read timeouts (30 s by default), so that some
/// holds meet them.
const MAX_HELD: usize = 8;
const MAX_HOLD: Duration = Duration::from_secs(45);
/// Bad requests in flight at once; beyond it a tick is skipped (counted).
const MAX_BAD_INFLIGHT: usize = 64;
/// Examples kept of each kind of problem.
const MAX_EXAMPLES: usize = 8;
/// Distinct error labels kept; more are lumped together (labels are
/// normalised, so this is only a guard).
const MAX_ERROR_LABELS: usize = 200;
/// The largest response status line we wait for before calling an answer
/// garbled.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The node's default limits (docs/SPEC.md section 1).
const MAX_KEY_BYTES: usize = 1024;
const MAX_VALUE_BYTES: usize = 1024 * 1024;

struct Settings {
    secs: u64,
    clients: usize,
    keys: usize,
    bad_per_sec: u64,
    sample_secs: u64,
    row_secs: u64,
    seed: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let secs = env_or("SOAK_SECS", 600).max(1);
        let clock_seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |elapsed| elapsed.as_nanos() as u64);
        Settings {
            secs,
            clients: env_or("SOAK_CLIENTS", 32).clamp(1, 1024) as usize,
            keys: env_or("SOAK_KEYS", 5_000).clamp(HOT_KEYS as u64, 1_000_000) as usize,
            bad_per_sec: env_or("SOAK_BAD_PER_SEC", 20).clamp(1, 1_000),
            sample_secs: env_or("SOAK_SAMPLE_SECS", 5).max(1),
            // Ten rows for a short run, one a minute for the real one.
            row_secs: env_or("SOAK_ROW_SECS", (secs / 10).clamp(5, 60)).max(1),
            seed: env_or("SOAK_SEED", clock_seed),
        }
    }
}

/// The `n`th independent random stream of this run.
fn rng_for(seed: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ (stream + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

// ---------------------------------------------------------------------------
// Well-formed load

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Op {
    Put,
    BigPut,
    TtlPut,
    StrongGet,
    EventualGet,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::BigPut => "put ~100KiB",
            Op::TtlPut => "put ttl",
            Op::StrongGet => "get strong",
            Op::EventualGet => "get eventual",
            Op::Delete => "delete",
        }
    }

    /// The mix, in percent.
    fn pick(rng: &mut StdRng) -> Op {
        match rng.random_range(0..100) {
            0..30 => Op::Put,
            30..32 => Op::BigPut,
            32..38 => Op::TtlPut,
            38..63 => Op::StrongGet,
            63..90 => Op::EventualGet,
            _ => Op::Delete,
        }
    }
}

/// Latencies in buckets 2% wide: memory stays bounded however long the run.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

const HISTOGRAM_GROWTH: f64 = 1.02;
/// 1.02^1000 us is far beyond any timeout.
const HISTOGRAM_BUCKETS: usize = 1000;

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram { counts: vec![0; HISTOGRAM_BUCKETS], total: 0, max_us: 0 }
    }
}

impl Histogram {
    fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().clamp(1, u64::MAX as u128) as u64;
        let bucket = ((us as f64).ln() / HISTOGRAM_GROWTH.ln()) as usize;
        self.counts[bucket.min(HISTOGRAM_BUCKETS - 1)] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, other: &Histogram) {
        self.counts.iter_mut().zip(&other.counts).for_each(|(mine, theirs)| *mine += theirs);
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The upper bound of the bucket holding the `p` quantile, in ms
    /// (within 2% of the true value).
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let rank = ((self.total as f64 * p).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let upper_us = HISTOGRAM_GROWTH.powi(bucket as i32 + 1);
                return upper_us.min(self.max_us as f64) / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }
}

#[derive(Clone, Default)]
struct OpStats {
    ok: u64,
    errors: u64,
    latency: Histogram,
}

/// Problems that fail the soak, each with a few examples.
#[derive(Default)]
struct Problems {
    counts: BTreeMap<&'static str, u64>,
    examples: Vec<String>,
}

impl Problems {
    fn add(&mut self, kind: &'static str, example: String) {
        *self.counts.entry(kind).or_default() += 1;
        if self.examples.len() < MAX_EXAMPLES * 4
            && self.examples.iter().filter(|e| e.starts_with(kind)).count() < MAX_EXAMPLES
        {
            self.examples.push(format!("{kind}: {example}"));
        }
    }

    fn merge(&mut self, other: Problems) {
        for (kind, count) in other.counts {
            *self.counts.entry(kind).or_default() += count;
        }
        for example in other.examples {
            if self.examples.len() < MAX_EXAMPLES * 4 {
                self.examples.push(example);
            }
        }
    }
}

/// What one load task saw.
#[derive(Default)]
struct LoadStats {
    ops: BTreeMap<Op, OpStats>,
    errors: BTreeMap<String, u64>,
    problems: Problems,
}

impl LoadStats {
    fn error(&mut self, label: String) {
        let label = if self.errors.len() >= MAX_ERROR_LABELS && !self.errors.contains_key(&label) {
            "(other errors)".to_owned()
        } else {
            label
        };
        *self.errors.entry(label).or_default() += 1;
    }

    fn merge(&mut self, other: LoadStats) {
        for (op, stats) in other.ops {
            let mine = self.ops.entry(op).or_default();
            mine.ok += stats.ok;
            mine.errors += stats.errors;
            mine.latency.merge(&stats.latency);
        }
        for (label, count) in other.errors {
            *self.errors.entry(label).or_default() += count;
        }
        self.problems.merge(other.problems);
    }
}

/// The newest acknowledged write of a key.
#[derive(Clone, Copy, Debug)]
struct Acked {
    timestamp: u64,
    deleted: bool,
}

/// Every acknowledged write, as the newest per key: what the final reads
/// must find.
#[derive(Default)]
struct Ledger {
    keys: Mutex<HashMap<String, Acked>>,
    /// TTL keys that got an acknowledged put, and when the newest expires
    /// (ms since the epoch, by the server's timestamp).
    ttl_expiry: Mutex<HashMap<String, u64>>,
}

impl Ledger {
    fn ack(&self, key: &str, timestamp: u64, deleted: bool) {
        let mut keys = self.keys.lock().expect("ledger lock");
        let entry = keys.entry(key.to_owned()).or_insert(Acked { timestamp, deleted });
        if timestamp > entry.timestamp {
            *entry = Acked { timestamp, deleted };
        } else if timestamp == entry.timestamp {
            // Two writes in one millisecond: the tie-break that orders them
            // is not in the API, so either may have won.
            entry.deleted |= deleted;
        }
    }

    fn newest(&self, key: &str) -> Option<Acked> {
        self.keys.lock().expect("ledger lock").get(key).copied()
    }

    fn ack_ttl(&self, key: &str, expires_ms: u64) {
        let mut expiry = self.ttl_expiry.lock().expect("ledger lock");
        let entry = expiry.entry(key.to_owned()).or_insert(expires_ms);
        *entry = (*entry).max(expires_ms);
    }
}

/// A value that says what it should be: `key|len|salt|` then a pattern of
/// `len` bytes in all, so a read can tell a mixed-up or damaged value.
fn make_value(key: &str, len: usize, salt: u8) -> Vec<u8> {
    let mut value = format!("{key}|{len}|{salt}|").into_bytes();
    let start = value.len();
    value.extend((start..len.max(start)).map(|i| pattern(salt, i)));
    value
}

fn pattern(salt: u8, i: usize) -> u8 {
    ((salt as usize + i * 31) % 251) as u8
}

/// Why `value`, read for `key`, is not one this soak wrote, if it is not.
fn check_value(key: &str, value: &[u8]) -> Option<String> {
    let mut fields = value.splitn(4, |&b| b == b'|');
    let (Some(owner), Some(len), Some(salt), Some(_)) = (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Some(format!("{} bytes without the soak's header", value.len()));
    };
    if owner != key.as_bytes() {
        return Some(format!("the value of {:?}", String::from_utf8_lossy(owner)));
    }
    let parse = |field: &[u8]| std::str::from_utf8(field).ok().and_then(|text| text.parse::<usize>().ok());
    let (Some(len), Some(salt)) = (parse(len), parse(salt)) else {
        return Some("a damaged header".to_owned());
    };
    let start = key.len() + len.to_string().len() + salt.to_string().len() + 3;
    let expected_len = len.max(start);
    if value.len() != expected_len {
        return Some(format!("{} bytes, written as {expected_len}", value.len()));
    }
    let salt = salt as u8;
    (start..value.len())
        .find(|&i| value[i] != pattern(salt, i))
        .map(|i| format!("byte {i} of {} differs from what was written", value.len()))
}

fn value_len(rng: &mut StdRng, big: bool) -> usize {
    if big {
        return rng.random_range(96 * 1024..=112 * 1024);
    }
    match rng.random_range(0..100) {
        0..60 => rng.random_range(1..=256),
        60..92 => rng.random_range(257..=4096),
        _ => rng.random_range(4097..=32 * 1024),
    }
}

fn pick_key(rng: &mut StdRng, keys: usize) -> String {
    let index = if rng.random_bool(0.2) { rng.random_range(0..HOT_KEYS) } else { rng.random_range(0..keys) };
    format!("soak-{index}")
}

/// An error message as a class: numbers elided, so that one kind of error
/// is one line however many timestamps and keys it named.
fn message_class(message: &str) -> String {
    let mut class = String::new();
    let mut in_number = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                class.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            class.push(c);
        }
        if class.len() >= 120 {
            class.push_str("...");
            break;
        }
    }
    class
}

/// An HTTP answer, or why there was none.
enum Answer {
    Http { status: u16, body: Value },
    Transport(String),
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Answer::Transport(transport_class(&error)),
    };
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(bytes) => Answer::Http { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) },
        Err(error) => Answer::Transport(transport_class(&error)),
    }
}

fn transport_class(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else {
        "request"
    };
    // The innermost cause says what happened (reset, refused, ...).
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    format!("transport {kind}: {}", message_class(&cause.to_string()))
}

struct LoadContext {
    urls: Vec<String>,
    http: reqwest::Client,
    keys: usize,
    ledger: Ledger,
    stop: AtomicBool,
    ops_done: AtomicU64,
    errors_seen: AtomicU64,
}

async fn load_worker(ctx: Arc<LoadContext>, mut rng: StdRng) -> LoadStats {
    let mut stats = LoadStats::default();
    while !ctx.stop.load(Ordering::Relaxed) {
        let node = rng.random_range(0..ctx.urls.len());
        let op = Op::pick(&mut rng);
        let started = Instant::now();
        let ok = one_op(&ctx, &mut rng, &mut stats, op, node).await;
        let entry = stats.ops.entry(op).or_default();
        if ok {
            entry.ok += 1;
            entry.latency.record(started.elapsed());
        } else {
            entry.errors += 1;
            ctx.errors_seen.fetch_add(1, Ordering::Relaxed);
        }
        ctx.ops_done.fetch_add(1, Ordering::Relaxed);
    }
    stats
}

/// One operation; true if it got an answer the API calls success.
async fn one_op(ctx: &LoadContext, rng: &mut StdRng, stats: &mut LoadStats, op: Op, node: usize) -> bool {
    let url = format!("{}/api/v1/item", ctx.urls[node]);
    let (key, request) = match op {
        Op::Put | Op::BigPut | Op::TtlPut => {
            let key = match op {
                Op::TtlPut => format!("soak-ttl-{}", rng.random_range(0..TTL_KEYS)),
                _ => pick_key(rng, ctx.keys),
            };
            let len = value_len(rng, op == Op::BigPut);
            let value = BASE64.encode(make_value(&key, len, rng.random()));
            let mut body = json!({"key": key, "value": value});
            let ttl = (op == Op::TtlPut).then(|| rng.random_range(1..=MAX_TTL_SECS));
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            let answer = send(ctx.http.post(&url).json(&body)).await;
            return match expect(stats, op, node, &key, answer, 201) {
                Some(body) => match body["timestamp"].as_u64() {
                    Some(timestamp) => {
                        match ttl {
                            Some(ttl) => ctx.ledger.ack_ttl(&key, timestamp.saturating_add(ttl * 1000)),
                            None => ctx.ledger.ack(&key, timestamp, false),
                        }
                        true
                    }
                    None => {
                        stats.problems.add("malformed answer", format!("put {key} on n{}: {body}", node + 1));
                        false
                    }
                },
                None => false,
            };
        }
        Op::Delete => {
            let key = pick_key(rng, ctx.keys);
            let answer = send(ctx.http.delete(&url).query(&[("key", &key)])).await;
            return match expect(stats, op, node, &key, answer, 200) {
                Some(body) => match body["timestamp"].as_u64() {
                    Some(timestamp) => {
                        ctx.ledger.ack(&key, timestamp, true);
                        true
                    }
                    None => {
                        stats.problems.add("malformed answer", format!("delete {key} on n{}: {body}", node + 1));
                        false
                    }
                },
                None => false,
            };
        }
        Op::StrongGet | Op::EventualGet => {
            // One get in ten reads a TTL key: expiry on the read path.
            let key = match rng.random_bool(0.1) {
                true => format!("soak-ttl-{}", rng.random_range(0..TTL_KEYS)),
                false => pick_key(rng, ctx.keys),
            };
            let mut query = vec![("key", key.clone())];
            if op == Op::StrongGet {
                query.push(("consistency", "strong".to_owned()));
            }
            (key, query)
        }
    };
    // A get: what was acknowledged before it started, it must see (strong
    // reads, and eventual reads that name it with min_timestamp).
    let prior = match key.starts_with("soak-ttl-") {
        true => None,
        false => ctx.ledger.newest(&key),
    };
    let mut query = request;
    let checked = match (op, prior) {
        (Op::StrongGet, Some(_)) => true,
        (Op::EventualGet, Some(acked)) if rng.random_bool(0.5) => {
            query.push(("min_timestamp", acked.timestamp.to_string()));
            true
        }
        _ => false,
    };
    let answer = send(ctx.http.get(&url).query(&query)).await;
    let found = match answer {
        Answer::Http { status: 404, body } => {
            let timestamp = body["timestamp"].as_u64();
            if let (true, Some(acked)) = (checked, prior) {
                // A tombstone at least as new is fine; so is no version at
                // all after a delete (its tombstone may be compacted).
                let fresh = timestamp.is_some_and(|t| t >= acked.timestamp) || (timestamp.is_none() && acked.deleted);
                if !fresh {
                    stats.problems.add(
                        "stale read",
                        format!(
                            "{} {key} on n{}: not found (timestamp {timestamp:?}), but {acked:?} was acknowledged \
                             before the read",
                            op.name(),
                            node + 1
                        ),
                    );
                }
            }
            return true;
        }
        answer => expect(stats, op, node, &key, answer, 200),
    };
    let Some(body) = found else { return false };
    let (Some(encoded), Some(timestamp)) = (body["value"].as_str(), body["timestamp"].as_u64()) else {
        stats.problems.add("malformed answer", format!("{} {key} on n{}: {body}", op.name(), node + 1));
        return false;
    };
    let problem = match BASE64.decode(encoded) {
        Ok(value) => check_value(&key, &value),
        Err(error) => Some(format!("not base64: {error}")),
    };
    if let Some(problem) = problem {
        stats.problems.add("corrupt value", format!("{} {key} on n{}: {problem}", op.name(), node + 1));
    }
    if let (true, Some(acked)) = (checked, prior) {
        if timestamp < acked.timestamp {
            stats.problems.add(
                "stale read",
                format!(
                    "{} {key} on n{}: found timestamp {timestamp}, but {acked:?} was acknowledged before the read",
                    op.name(),
                    node + 1
                ),
            );
        }
    }
    true
}

/// The body of an answer with status `success`; anything else is counted
/// as an error by kind, and as a problem when the API does not allow it
/// for a well-formed request (a 4xx, a 5xx other than 503).
fn expect(stats: &mut LoadStats, op: Op, node: usize, key: &str, answer: Answer, success: u16) -> Option<Value> {
    match answer {
        Answer::Http { status, body } if status == success => Some(body),
        Answer::Http { status, body } => {
            let message = body["error"].as_str().map_or_else(|| body.to_string(), str::to_owned);
            let label = format!("{} -> {status} {}", op.name(), message_class(&message));
            if status != 503 {
                stats.problems.add(
                    "well-formed request refused",
                    format!("{} {key} on n{}: {status} {message}", op.name(), node + 1),
                );
            }
            stats.error(label);
            None
        }
        Answer::Transport(class) => {
            stats.error(format!("{} -> {class}", op.name()));
            None
        }
    }
}

// ---------------------------------------------------------------------------
// Bad requests

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum BadKind {
    MalformedJson,
    BadBase64,
    OversizedKey,
    OversizedValue,
    BadQuery,
    UnknownPath,
    WrongMethod,
    InternalNoSecret,
    HugeHeader,
    Garbage,
    HalfSent,
    ConnectDrop,
}

impl BadKind {
    const ALL: [BadKind; 12] = [
        BadKind::MalformedJson,
        BadKind::BadBase64,
        BadKind::OversizedKey,
        BadKind::OversizedValue,
        BadKind::BadQuery,
        BadKind::UnknownPath,
        BadKind::WrongMethod,
        BadKind::InternalNoSecret,
        BadKind::HugeHeader,
        BadKind::Garbage,
        BadKind::HalfSent,
        BadKind::ConnectDrop,
    ];

    fn name(self) -> &'static str {
        match self {
            BadKind::MalformedJson => "malformed JSON",
            BadKind::BadBase64 => "bad base64",
            BadKind::OversizedKey => "oversized key",
            BadKind::OversizedValue => "oversized value",
            BadKind::BadQuery => "bad query",
            BadKind::UnknownPath => "unknown path",
            BadKind::WrongMethod => "wrong method",
            BadKind::InternalNoSecret => "internal, no secret",
            BadKind::HugeHeader => "huge header",
            BadKind::Garbage => "garbage bytes",
            BadKind::HalfSent => "half-sent, held",
            BadKind::ConnectDrop => "opened, dropped",
        }
    }

    /// Relative frequency: the megabyte-sized ones rarer, so the trickle
    /// stays a trickle.
    fn weight(self) -> u32 {
        match self {
            BadKind::OversizedValue | BadKind::HugeHeader => 3,
            BadKind::HalfSent => 5,
            _ => 10,
        }
    }

    fn pick(rng: &mut StdRng) -> BadKind {
        let total: u32 = BadKind::ALL.iter().map(|bad| bad.weight()).sum();
        let mut roll = rng.random_range(0..total);
        for bad in BadKind::ALL {
            if roll < bad.weight() {
                return bad;
            }
            roll -= bad.weight();
        }
        BadKind::Garbage
    }
}

/// What to do on one connection, decided up front by the driver (so the
/// seed decides it).
enum Plan {
    /// Send the bytes and read the answer's status line; `finish` also
    /// closes our sending side (garbage that might look like the start of
    /// a request is then known to be complete).
    Exchange { request: Arc<Vec<u8>>, finish: bool },
    /// Send a request's beginning (all at once, or a byte a second) and
    /// hold the connection open, up to `hold`.
    Hold { prefix: Vec<u8>, hold: Duration, drip: bool },
    /// Connect, send `prefix`, hang up without reading.
    Drop { prefix: Vec<u8> },
}

/// What became of a bad request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Status(u16),
    /// The server closed or reset the connection without an answer.
    Closed,
    /// Held until we let go, unanswered (no read timeout on the server).
    HeldOpen,
    /// The server closed a held connection (a read timeout).
    HeldClosedByServer,
    Dropped,
    /// A complete request got neither an answer nor a close in time.
    NoAnswer,
    NoConnection,
    Garbled,
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Status(status) => status.to_string(),
            Outcome::Closed => "closed".into(),
            Outcome::HeldOpen => "held open".into(),
            Outcome::HeldClosedByServer => "closed by server".into(),
            Outcome::Dropped => "dropped".into(),
            Outcome::NoAnswer => "NO ANSWER".into(),
            Outcome::NoConnection => "NO CONNECTION".into(),
            Outcome::Garbled => "GARBLED".into(),
        }
    }

    /// Why this outcome fails the soak, if it does.
    fn failure(&self) -> Option<&'static str> {
        match self {
            Outcome::Status(400..=499) => None,
            Outcome::Status(500..=599) => Some("5xx to a bad request"),
            Outcome::Status(_) => Some("bad request not refused"),
            Outcome::Closed | Outcome::HeldOpen | Outcome::HeldClosedByServer | Outcome::Dropped => None,
            Outcome::NoAnswer => Some("bad request hung"),
            Outcome::NoConnection => Some("no connection"),
            Outcome::Garbled => Some("garbled answer"),
        }
    }
}

/// Bodies over a megabyte, made once.
struct BigBodies {
    value_one_over: Arc<Vec<u8>>,
    body_far_over: Arc<Vec<u8>>,
    huge_header: Arc<Vec<u8>>,
}

impl BigBodies {
    fn new() -> BigBodies {
        let one_over = json!({"key": "soak-bad", "value": BASE64.encode(vec![7u8; MAX_VALUE_BYTES + 1])});
        let one_over = raw_request("POST", "/api/v1/item", &[], one_over.to_string().as_bytes());
        // Well past the node's body limit, so it refuses before reading it all.
        let far_over = format!("{{\"key\":\"soak-bad\",\"value\":\"{}\"}}", "A".repeat(3 * MAX_VALUE_BYTES));
        let far_over = raw_request("POST", "/api/v1/item", &[], far_over.as_bytes());
        let junk = format!("x-junk: {}", "j".repeat(MAX_VALUE_BYTES));
        let huge_header = raw_request("GET", "/api/v1/item?key=soak-bad", &[&junk], b"");
        BigBodies {
            value_one_over: Arc::new(one_over),
            body_far_over: Arc::new(far_over),
            huge_header: Arc::new(huge_header),
        }
    }
}

/// One HTTP/1.1 request; `Connection: close` so that the answer is the
/// last thing on the connection.
fn raw_request(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nconnection: close\r\n"
    );
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

fn pick<'a>(rng: &mut StdRng, choices: &[&'a str]) -> &'a str {
    choices[rng.random_range(0..choices.len())]
}

fn plan(bad: BadKind, rng: &mut StdRng, big: &BigBodies) -> Plan {
    let exchange = |request: Vec<u8>| Plan::Exchange { request: Arc::new(request), finish: false };
    let put = |body: &[u8]| exchange(raw_request("POST", "/api/v1/item", &[], body));
    match bad {
        BadKind::MalformedJson => {
            let bodies: &[&[u8]] = &[
                b"{\"key\": \"soak-bad\", \"value\": ",
                b"not json at all",
                b"[]",
                b"",
                b"null",
                b"{\"key\": 5, \"value\": \"AA==\"}",
                b"{\"value\": \"AA==\"}",
                b"{\"key\": \"soak-bad\"}",
                b"{\"key\": \"\", \"value\": \"AA==\"}",
                b"{\"key\": \"soak-bad\", \"value\": \"AA==\", \"ttl\": -1}",
                b"{\"key\": \"soak-bad\", \"value\": \"AA==\", \"ttl\": 1.5}",
                b"{\"key\": \"soak-bad\", \"value\": \"AA==\", \"ttl\": \"10\"}",
                b"{\"key\": \"soak-bad\", \"value\": \"AA==\", \"ttl\": 0}",
                b"{\"key\": \"soak-bad\", \"value\": \"AA==\", \"ttl\": 99999999999}",
                b"{\"key\": \"soak-\xff\xfe\", \"value\": \"AA==\"}",
                b"{\"key\": \"soak-bad\", \"value\": \"AA==\"",
                b"{\"key\": \"soak-bad\", \"value\": null}",
            ];
            put(bodies[rng.random_range(0..bodies.len())])
        }
        BadKind::BadBase64 => {
            let value = pick(rng, &["not base64!", "AAA", "A===", "@@@@", "AA==AA==", "QUJD\u{e9}", "QUJDRA=", "===="]);
            put(json!({"key": "soak-bad", "value": value}).to_string().as_bytes())
        }
        BadKind::OversizedKey => {
            let key = "k".repeat(rng.random_range(MAX_KEY_BYTES + 1..=4 * MAX_KEY_BYTES));
            match rng.random_range(0..3) {
                0 => put(json!({"key": key, "value": "AA=="}).to_string().as_bytes()),
                1 => exchange(raw_request("GET", &format!("/api/v1/item?key={key}&consistency=strong"), &[], b"")),
                _ => exchange(raw_request("DELETE", &format!("/api/v1/item?key={key}"), &[], b"")),
            }
        }
        BadKind::OversizedValue => {
            let request = match rng.random_bool(0.5) {
                true => big.value_one_over.clone(),
                false => big.body_far_over.clone(),
            };
            Plan::Exchange { request, finish: false }
        }
        BadKind::BadQuery => {
            let target = pick(
                rng,
                &[
                    "/api/v1/item",
                    "/api/v1/item?consistency=strong",
                    "/api/v1/item?key=",
                    "/api/v1/item?key=a&key=b",
                    "/api/v1/item?key=soak-1&consistency=bogus",
                    "/api/v1/item?key=soak-1&min_timestamp=0",
                    "/api/v1/item?key=soak-1&min_timestamp=-5",
                    "/api/v1/item?key=soak-1&min_timestamp=abc",
                    "/api/v1/item?key=soak-1&min_timestamp=99999999999999999999999",
                    "/api/v1/item?key=%ZZ",
                    "/api/v1/item?key=%FF%FE",
                ],
            );
            let method = if rng.random_bool(0.2) { "DELETE" } else { "GET" };
            // DELETE takes only `key`: keep its bad queries about the key.
            let target = if method == "DELETE" {
                pick(rng, &["/api/v1/item", "/api/v1/item?key=", "/api/v1/item?key=a&key=b"])
            } else {
                target
            };
            exchange(raw_request(method, target, &[], b""))
        }
        BadKind::UnknownPath => {
            let target = pick(
                rng,
                &[
                    "/",
                    "/api/v1/items",
                    "/api/v2/item",
                    "/api/v1/item/soak-1",
                    "/%2e%2e/etc/passwd",
                    "/health/x",
                    "/internal",
                ],
            );
            let method = pick(rng, &["GET", "POST", "DELETE"]);
            exchange(raw_request(method, target, &[], if method == "POST" { b"{}" } else { b"" }))
        }
        BadKind::WrongMethod => {
            let (method, target) = match rng.random_range(0..4) {
                0 => ("PUT", "/api/v1/item"),
                1 => ("PATCH", "/api/v1/item?key=soak-1"),
                2 => ("POST", "/health"),
                _ => ("DELETE", "/health"),
            };
            exchange(raw_request(method, target, &[], b"{\"key\": \"soak-bad\", \"value\": \"AA==\"}"))
        }
        BadKind::InternalNoSecret => {
            let path = pick(
                rng,
                &[
                    cluster::rpc::BATCH_PATH,
                    cluster::rpc::WRITE_BATCH_PATH,
                    cluster::rpc::SYNC_PATH,
                    cluster::rpc::PING_PATH,
                    "/test/v1/clock",
                ],
            );
            // No secret, the wrong one, or the old public default.
            let header = format!("{}: wrong-secret-of-enough-length", cluster::rpc::SECRET_HEADER);
            let old = format!("{}: leaderless-kv-internal", cluster::rpc::SECRET_HEADER);
            let headers: Vec<&str> = match rng.random_range(0..3) {
                0 => vec![],
                1 => vec![&header],
                _ => vec![&old],
            };
            let mut body = vec![0u8; rng.random_range(0..4096)];
            rng.fill(&mut body[..]);
            // Another method too: to a caller without the secret, an
            // internal path is an unknown one whatever the method.
            let method = if rng.random_bool(0.2) { "GET" } else { "POST" };
            exchange(raw_request(method, path, &headers, &body))
        }
        BadKind::HugeHeader => Plan::Exchange { request: big.huge_header.clone(), finish: false },
        BadKind::Garbage => {
            let mut bytes = vec![0u8; rng.random_range(1..=4096)];
            rng.fill(&mut bytes[..]);
            if rng.random_bool(0.3) {
                // Starts like a request, so the parser gets further. The
                // byte after the request line is a control character, never
                // a line end: random bytes starting with `\n` completed a
                // valid GET in one run (and got its 200).
                bytes[0] = 0x01;
                let start = b"GET /api/v1/item?key=soak-1 HTTP/1.1\r\n";
                bytes.splice(0..0, start.iter().copied());
            }
            Plan::Exchange { request: Arc::new(bytes), finish: true }
        }
        BadKind::HalfSent => {
            let hold = Duration::from_millis(rng.random_range(1_000..=MAX_HOLD.as_millis() as u64));
            let prefix = match rng.random_range(0..3) {
                0 => b"POST /api/v1/item HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-le".to_vec(),
                1 => {
                    // Headers done, a tenth of the promised body.
                    let mut request =
                        b"POST /api/v1/item HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 10000\r\n\r\n".to_vec();
                    request.extend_from_slice(&[b'{'; 1000]);
                    request
                }
                _ => b"GET /api/v1/item?key=soak-1 HTTP/1.1\r\nhost: 127.0.0.1\r\n".to_vec(),
            };
            Plan::Hold { prefix, hold, drip: rng.random_bool(0.3) }
        }
        BadKind::ConnectDrop => {
            let prefix: &[u8] = match rng.random_range(0..3) {
                0 => b"",
                1 => b"GET /api/v1/item?key=soak-1 HTTP/1.1\r\n",
                // A whole request, abandoned before its answer: the node
                // must finish or drop the work without the client.
                _ => b"GET /api/v1/item?key=soak-1&consistency=strong HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
            };
            Plan::Drop { prefix: prefix.to_vec() }
        }
    }
}

async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await.ok()?.ok()
}

async fn run_plan(plan: Plan, addr: SocketAddr) -> Outcome {
    let Some(mut stream) = connect(addr).await else { return Outcome::NoConnection };
    match plan {
        Plan::Exchange { request, finish } => {
            // A server may answer and close before it has read a body it
            // refuses: then our write fails, and its answer is still there
            // to read.
            let wrote = tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(&request)).await;
            if finish && matches!(wrote, Ok(Ok(()))) {
                let _ = stream.shutdown().await;
            }
            read_status(&mut stream, REQUEST_TIMEOUT).await.unwrap_or(Outcome::NoAnswer)
        }
        Plan::Hold { prefix, hold, drip } => {
            hold_connection(&mut stream, &prefix, drip, tokio::time::Instant::now() + hold).await
        }
        Plan::Drop { prefix } => {
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, stream.write_all(&prefix)).await;
            Outcome::Dropped
        }
    }
}

/// Sends `prefix` (at once, or a byte a second) and waits until
/// `deadline` for the server to answer or close.
async fn hold_connection(stream: &mut TcpStream, prefix: &[u8], drip: bool, deadline: tokio::time::Instant) -> Outcome {
    let (mut reader, mut writer) = stream.split();
    let mut buffer = [0u8; 1024];
    let send = async {
        if drip {
            for byte in prefix {
                if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        } else {
            let _ = writer.write_all(prefix).await;
        }
        std::future::pending::<()>().await
    };
    let mut head = Vec::new();
    let receive = async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return parse_status(&head).map_or(Outcome::HeldClosedByServer, Outcome::Status),
                Ok(n) => {
                    head.extend_from_slice(&buffer[..n]);
                    if let Some(status) = parse_status(&head) {
                        return Outcome::Status(status);
                    }
                    if head.len() > MAX_RESPONSE_HEAD {
                        return Outcome::Garbled;
                    }
                }
            }
        }
    };
    tokio::select! {
        outcome = receive => outcome,
        () = send => unreachable!("sending never ends"),
        () = tokio::time::sleep_until(deadline) => Outcome::HeldOpen,
    }
}

/// Reads up to the status line of an answer: its status, `Closed` if the
/// server hung up first, `None` if nothing came within `limit`.
async fn read_status(stream: &mut TcpStream, limit: Duration) -> Option<Outcome> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(parse_status(&head).map_or(Outcome::Closed, Outcome::Status)),
            Ok(Ok(n)) => {
                head.extend_from_slice(&buffer[..n]);
                if let Some(status) = parse_status(&head) {
                    return Some(Outcome::Status(status));
                }
                if head.len() > MAX_RESPONSE_HEAD {
                    return Some(Outcome::Garbled);
                }
            }
        }
    }
}

/// The status of `HTTP/1.x NNN ...`, once the first line is complete.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line_end = head.windows(2).position(|pair| pair == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    parts.next().filter(|version| version.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[derive(Default)]
struct BadTally {
    outcomes: BTreeMap<BadKind, BTreeMap<String, u64>>,
    problems: Problems,
    skipped: u64,
}

struct BadContext {
    addrs: Vec<SocketAddr>,
    per_sec: u64,
    stop: Arc<AtomicBool>,
    tally: Mutex<BadTally>,
    sent: AtomicU64,
}

async fn bad_driver(ctx: Arc<BadContext>, mut rng: StdRng) {
    let big = BigBodies::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / ctx.per_sec as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let inflight = Arc::new(Semaphore::new(MAX_BAD_INFLIGHT));
    let held = Arc::new(Semaphore::new(MAX_HELD));
    let mut tasks = JoinSet::new();
    while !ctx.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = inflight.clone().try_acquire_owned() else {
            ctx.tally.lock().expect("tally lock").skipped += 1;
            continue;
        };
        let mut bad = BadKind::pick(&mut rng);
        let held_permit = match bad {
            BadKind::HalfSent => match held.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                // Enough held already: something else this tick.
                Err(_) => {
                    bad = BadKind::Garbage;
                    None
                }
            },
            _ => None,
        };
        let node = rng.random_range(0..ctx.addrs.len());
        let plan = plan(bad, &mut rng, &big);
        let ctx = ctx.clone();
        tasks.spawn(async move {
            let bound = MAX_HOLD + REQUEST_TIMEOUT + CONNECT_TIMEOUT * 2;
            let outcome =
                tokio::time::timeout(bound, run_plan(plan, ctx.addrs[node])).await.unwrap_or(Outcome::NoAnswer);
            ctx.sent.fetch_add(1, Ordering::Relaxed);
            let mut tally = ctx.tally.lock().expect("tally lock");
            *tally.outcomes.entry(bad).or_default().entry(outcome.label()).or_default() += 1;
            if let Some(failure) = outcome.failure() {
                tally.problems.add(failure, format!("{} to n{}: {}", bad.name(), node + 1, outcome.label()));
            }
            drop((permit, held_permit));
        });
    }
    while tasks.join_next().await.is_some() {}
}

// ---------------------------------------------------------------------------
// Watching the nodes

/// One look at every node.
struct Sample {
    at: Duration,
    rss_kib: Vec<Option<u64>>,
    fds: Vec<Option<usize>>,
    disk_bytes: u64,
}

/// A node's own word on its health (docs/SPEC.md: 503 "failed" while its
/// store takes no writes): whether it is ok, and if not, whether it said
/// so or did not answer in time.
async fn health(http: &reqwest::Client, url: &str) -> Result<(), HealthProblem> {
    let request = http.get(format!("{url}/health")).timeout(Duration::from_secs(5));
    match send(request).await {
        Answer::Http { status: 200, .. } => Ok(()),
        Answer::Http { status, body } => Err(HealthProblem::Failed(format!("/health {status}: {body}"))),
        Answer::Transport(class) => Err(HealthProblem::Unanswered(class)),
    }
}

enum HealthProblem {
    /// The node says its store takes no writes: a failure of the soak.
    Failed(String),
    /// No answer within 5 s on a saturated machine: reported only.
    Unanswered(String),
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A node's log in counts: read line by line, never held whole (a failing
/// node can write hundreds of thousands of lines).
#[derive(Default)]
struct LogSummary {
    lines: u64,
    errors: u64,
    warnings: u64,
    /// Lines by level and message class, at most `MAX_ERROR_LABELS` of them.
    classes: BTreeMap<String, u64>,
}

fn summarize_log(path: &Path) -> LogSummary {
    use std::io::BufRead;
    let mut summary = LogSummary::default();
    let Ok(file) = std::fs::File::open(path) else { return summary };
    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        summary.lines += 1;
        // `2026-11-30T04:44:16.193015Z ERROR target: message fields`
        // (the level is padded: ` WARN`).
        let after_time = line.split_once(' ').map_or("", |(_, rest)| rest).trim_start();
        let (level, rest) = after_time.split_once(' ').unwrap_or((after_time, ""));
        match level {
            "ERROR" => summary.errors += 1,
            "WARN" => summary.warnings += 1,
            _ => continue,
        }
        let class = format!("{level} {}", message_class(rest.trim_start()));
        if summary.classes.len() < MAX_ERROR_LABELS || summary.classes.contains_key(&class) {
            *summary.classes.entry(class).or_default() += 1;
        }
    }
    summary
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".to_owned(), |kib| format!("{:.1}", kib as f64 / 1024.0))
}

// ---------------------------------------------------------------------------
// The final reads

#[derive(Default)]
struct Verification {
    checked: usize,
    /// Of `checked` and `ttl_checked`: answered by a strong read, and by
    /// an eventual read with `min_timestamp`.
    by_strong: usize,
    by_at_least: usize,
    lost: usize,
    unverified: usize,
    ttl_checked: usize,
    ttl_alive: usize,
    examples: Vec<String>,
}

/// How a final read asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FinalRead {
    /// A strong read: what the soak asks of a healthy cluster.
    Strong,
    /// An eventual read that must return the acknowledged version or a
    /// newer one (`min_timestamp`; plain for a TTL key). It widens to every
    /// reachable owner and writes nothing, so it still answers when the
    /// stores refuse writes, where a strong read whose replicas disagree
    /// must write back and cannot.
    AtLeast,
}

/// Attempts per key and kind of final read, and a bound on them all: a
/// cluster that answers nothing makes the keys unverified, not the soak
/// endless.
const STRONG_ATTEMPTS: usize = 2;
const AT_LEAST_ATTEMPTS: usize = 3;
const VERIFY_BUDGET: Duration = Duration::from_secs(180);
const VERIFY_CONCURRENCY: usize = 16;

/// One final read of `key`, retried through the other nodes when the
/// answer is not a 200 or a 404, until `deadline`: the answer, or the last
/// reason there was none.
async fn final_read(
    http: &reqwest::Client,
    urls: &[String],
    key: &str,
    first: usize,
    deadline: Instant,
    how: FinalRead,
    acked: Option<Acked>,
) -> Result<(u16, Value), String> {
    let attempts = if how == FinalRead::Strong { STRONG_ATTEMPTS } else { AT_LEAST_ATTEMPTS };
    let mut last = "out of time".to_owned();
    for attempt in 0..attempts {
        if Instant::now() >= deadline {
            break;
        }
        let url = format!("{}/api/v1/item", urls[(first + attempt) % urls.len()]);
        let mut query = vec![("key", key.to_owned())];
        match (how, acked) {
            (FinalRead::Strong, _) => query.push(("consistency", "strong".to_owned())),
            (FinalRead::AtLeast, Some(acked)) => query.push(("min_timestamp", acked.timestamp.to_string())),
            (FinalRead::AtLeast, None) => {}
        }
        match send(http.get(url).query(&query)).await {
            Answer::Http { status: status @ (200 | 404), body } => return Ok((status, body)),
            Answer::Http { status, body } => {
                last = format!("{how:?} read: {status} {}", body["error"].as_str().unwrap_or_default());
            }
            Answer::Transport(class) => last = format!("{how:?} read: {class}"),
        }
        tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await;
    }
    Err(last)
}

/// An answer in a line: its status and timestamp, not a 100 KiB value.
fn describe(read: &Result<(u16, Value), String>) -> String {
    match read {
        Err(why) => format!("no answer ({why})"),
        Ok((status, body)) => {
            let value = body["value"].as_str().map_or(String::new(), |value| format!(", {} base64 chars", value.len()));
            format!("{status}, timestamp {}{value}", body["timestamp"])
        }
    }
}

/// Whether a final read shows `acked`, the newest acknowledged
/// write of `key`: a version at least as new (a concurrent newer write may
/// have won), intact; or, after a delete, no version at all.
fn shows(key: &str, acked: Acked, status: u16, body: &Value) -> bool {
    let timestamp = body["timestamp"].as_u64();
    match status {
        200 => {
            let intact = body["value"]
                .as_str()
                .and_then(|encoded| BASE64.decode(encoded).ok())
                .is_some_and(|value| check_value(key, &value).is_none());
            timestamp.is_some_and(|t| t >= acked.timestamp) && intact
        }
        _ => timestamp.is_some_and(|t| t >= acked.timestamp) || (timestamp.is_none() && acked.deleted),
    }
}

/// Reads back every key with an acknowledged write and every TTL key:
/// with strong reads first (falling back to `min_timestamp` reads for a
/// key they cannot answer) when `strong_first`, else with `min_timestamp`
/// reads only.
async fn verify(ledger: &Ledger, urls: &[String], http: &reqwest::Client, strong_first: bool) -> Verification {
    let deadline = Instant::now() + VERIFY_BUDGET;
    // `None` for a TTL key: it must read as not found.
    let mut keys: Vec<(String, Option<Acked>)> =
        ledger.keys.lock().expect("ledger lock").iter().map(|(key, acked)| (key.clone(), Some(*acked))).collect();
    keys.extend(ledger.ttl_expiry.lock().expect("ledger lock").keys().map(|key| (key.clone(), None)));
    let reads = futures::stream::iter(keys.into_iter().enumerate())
        .map(|(i, (key, acked))| async move {
            let mut how = if strong_first { FinalRead::Strong } else { FinalRead::AtLeast };
            let mut read = final_read(http, urls, &key, i, deadline, how, acked).await;
            if read.is_err() && how == FinalRead::Strong {
                how = FinalRead::AtLeast;
                read = final_read(http, urls, &key, i, deadline, how, acked).await;
            }
            (key, acked, how, read)
        })
        .buffer_unordered(VERIFY_CONCURRENCY);
    let results: Vec<_> = reads.collect().await;
    let mut verification = Verification::default();
    for (key, acked, how, read) in results {
        if read.is_ok() {
            match how {
                FinalRead::Strong => verification.by_strong += 1,
                FinalRead::AtLeast => verification.by_at_least += 1,
            }
        }
        let problem = match (acked, &read) {
            (_, Err(_)) => {
                verification.unverified += 1;
                true
            }
            (Some(acked), Ok((status, body))) => {
                verification.checked += 1;
                let lost = !shows(&key, acked, *status, body);
                verification.lost += usize::from(lost);
                lost
            }
            (None, Ok((status, _))) => {
                verification.ttl_checked += 1;
                let alive = *status != 404;
                verification.ttl_alive += usize::from(alive);
                alive
            }
        };
        if problem && verification.examples.len() < MAX_EXAMPLES * 2 {
            let expected = acked.map_or_else(|| "expired (TTL)".to_owned(), |acked| format!("{acked:?}"));
            verification
                .examples
                .push(format!("{key}: newest acknowledged {expected}, final read: {}", describe(&read)));
        }
    }
    verification
}

// ---------------------------------------------------------------------------

#[tokio::main]
async fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; the settings come from the environment.
    let settings = Settings::from_env();
    println!(
        "soak: seed {} (SOAK_SEED={} replays its choices), {} s, {} clients, {} keys + {TTL_KEYS} TTL keys, \
         {} bad requests/s",
        settings.seed, settings.seed, settings.secs, settings.clients, settings.keys, settings.bad_per_sec
    );
    let options = ClusterOptions { test_hooks: false, log_files: true };
    let mut cluster = LocalCluster::start_with("soak", 3, options, &["--storage", "sled"]);
    let logs: Vec<PathBuf> = (0..3).map(|i| cluster.log_path(i).expect("logs in files")).collect();
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let pids: Vec<u32> = cluster.nodes.iter().map(|node| node.as_ref().expect("started").child.id()).collect();
    let dirs: Vec<PathBuf> =
        cluster.nodes.iter().map(|node| node.as_ref().expect("started").data_dir.clone()).collect();
    let addrs: Vec<SocketAddr> =
        urls.iter().map(|url| url.trim_start_matches("http://").parse().expect("a node's address")).collect();
    println!(
        "nodes: {} (pids {pids:?}), data in {}",
        urls.join(" "),
        dirs[0].parent().map_or(Path::new("?"), |p| p).display()
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.clients)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("an HTTP client");
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(LoadContext {
        urls: urls.clone(),
        http: http.clone(),
        keys: settings.keys,
        ledger: Ledger::default(),
        stop: AtomicBool::new(false),
        ops_done: AtomicU64::new(0),
        errors_seen: AtomicU64::new(0),
    });
    let bad = Arc::new(BadContext {
        addrs,
        per_sec: settings.bad_per_sec,
        stop: stop.clone(),
        tally: Mutex::new(BadTally::default()),
        sent: AtomicU64::new(0),
    });
    let started = Instant::now();
    let cpu_start = CpuUse::now();
    let workers: Vec<_> = (0..settings.clients)
        .map(|i| tokio::spawn(load_worker(load.clone(), rng_for(settings.seed, i as u64))))
        .collect();
    let bad_task = tokio::spawn(bad_driver(bad.clone(), rng_for(settings.seed, settings.clients as u64)));

    // Watch: sample every few seconds, print a row every `row_secs`.
    println!(
        "\n{:>6} {:>26} {:>15} {:>9} {:>9} {:>8} {:>8} {:>6}  health",
        "t s", "RSS MiB n1 / n2 / n3", "fds n1/n2/n3", "ops/s", "errors/s", "bad/s", "disk MiB", "cpu %"
    );
    let mut samples: Vec<Sample> = Vec::new();
    let mut crashes: Vec<String> = Vec::new();
    let mut node_failures: Vec<String> = Vec::new();
    // How often /health did not answer in time, and the first time.
    let mut health_unanswered: (u64, String) = (0, String::new());
    let (mut last_row, mut last_ops, mut last_errors, mut last_bad, mut last_cpu) =
        (Duration::ZERO, 0u64, 0u64, 0u64, cpu_start);
    let deadline = Duration::from_secs(settings.secs);
    let mut next_sample = Duration::ZERO;
    loop {
        for (i, node) in cluster.nodes.iter_mut().enumerate() {
            if let Some(process) = node {
                if let Ok(Some(status)) = process.child.try_wait() {
                    crashes.push(format!("n{} exited ({status}) at {:.0} s", i + 1, started.elapsed().as_secs_f64()));
                    *node = None;
                }
            }
        }
        let mut health_row = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let word = match cluster.nodes[i].is_some() {
                false => "DOWN",
                true => match health(&http, url).await {
                    Ok(()) => "ok",
                    Err(HealthProblem::Failed(why)) => {
                        if !node_failures.iter().any(|failure: &String| failure.starts_with(&format!("n{} ", i + 1))) {
                            let at = started.elapsed().as_secs_f64();
                            node_failures.push(format!("n{} reported failed at {at:.0} s: {why}", i + 1));
                        }
                        "FAILED"
                    }
                    Err(HealthProblem::Unanswered(class)) => {
                        if health_unanswered.0 == 0 {
                            let at = started.elapsed().as_secs_f64();
                            health_unanswered.1 = format!("n{} at {at:.0} s: {class}", i + 1);
                        }
                        health_unanswered.0 += 1;
                        "?"
                    }
                },
            };
            health_row.push(word);
        }
        let at = started.elapsed();
        let alive: Vec<bool> = cluster.nodes.iter().map(Option::is_some).collect();
        let sample = Sample {
            at,
            rss_kib: pids.iter().zip(&alive).map(|(&pid, &up)| up.then(|| rss_kib(pid)).flatten()).collect(),
            fds: pids.iter().zip(&alive).map(|(&pid, &up)| up.then(|| open_fds(pid)).flatten()).collect(),
            disk_bytes: dirs.iter().map(|dir| dir_bytes(dir)).sum(),
        };
        let row_due = at >= last_row + Duration::from_secs(settings.row_secs) || at >= deadline || samples.is_empty();
        if row_due {
            let (ops, errors, sent) = (
                load.ops_done.load(Ordering::Relaxed),
                load.errors_seen.load(Ordering::Relaxed),
                bad.sent.load(Ordering::Relaxed),
            );
            let span = (at - last_row).as_secs_f64().max(1e-3);
            let cpu = CpuUse::now();
            let used = cpu.since(last_cpu);
            let rss: Vec<String> = sample.rss_kib.iter().map(|&kib| mib(kib)).collect();
            let fds: Vec<String> = sample.fds.iter().map(|fds| fds.map_or("-".into(), |n| n.to_string())).collect();
            println!(
                "{:>6.0} {:>26} {:>15} {:>9.0} {:>9.1} {:>8.1} {:>8.0} {:>6.0}  {}",
                at.as_secs_f64(),
                rss.join(" / "),
                fds.join("/"),
                (ops - last_ops) as f64 / span,
                (errors - last_errors) as f64 / span,
                (sent - last_bad) as f64 / span,
                sample.disk_bytes as f64 / (1024.0 * 1024.0),
                CpuUse::percent(used.busy_ticks, used.busy_ticks + used.idle_ticks + used.steal_ticks),
                health_row.join(" "),
            );
            (last_row, last_ops, last_errors, last_bad, last_cpu) = (at, ops, errors, sent, cpu);
        }
        samples.push(sample);
        if at >= deadline || !crashes.is_empty() {
            break;
        }
        next_sample += Duration::from_secs(settings.sample_secs);
        let wake = next_sample.min(deadline);
        tokio::time::sleep(wake.saturating_sub(started.elapsed())).await;
    }
    load.stop.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let load_secs = started.elapsed().as_secs_f64();
    let mut stats = LoadStats::default();
    for worker in workers {
        stats.merge(worker.await.expect("a load task panicked"));
    }
    bad_task.await.expect("the bad-request driver panicked");

    // Every TTL value must have expired before the final reads look.
    let now_ms = || SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64);
    let last_expiry = load.ledger.ttl_expiry.lock().expect("ledger lock").values().copied().max().unwrap_or(0);
    let wait_ms = last_expiry.saturating_add(1000).saturating_sub(now_ms()).min(30_000);
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let verify_started = Instant::now();
    // A store that refuses writes makes strong reads of keys whose replicas
    // disagree unanswerable (they must write back); then every key is read
    // with min_timestamp instead, which still tells whether it survived.
    let strong_first = node_failures.is_empty() && crashes.is_empty();
    let verification = verify(&load.ledger, &urls, &http, strong_first).await;
    let verify_secs = verify_started.elapsed().as_secs_f64();
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        if let Some(process) = node {
            if let Ok(Some(status)) = process.child.try_wait() {
                crashes.push(format!("n{} exited ({status}) during the final reads", i + 1));
            }
        }
    }
    let final_rss: Vec<Option<u64>> = pids.iter().map(|&pid| rss_kib(pid)).collect();

    // ---- Report ----
    // Flat means the last third of the run holds no more than the middle
    // third: the first third is warm-up (caches and pools filling).
    println!(
        "\nRSS per node, MiB (sampled every {} s; {} samples; mean of the middle and last thirds of the run):",
        settings.sample_secs,
        samples.len()
    );
    println!(
        "{:<6} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8} {:>12} {:>8}",
        "node", "first", "at 1 min", "mid third", "last third", "last", "max", "after reads", "fds max"
    );
    let third = |sample: &Sample| (sample.at.as_secs_f64() * 3.0 / load_secs.max(1.0)) as usize;
    for (node, rss_after) in final_rss.iter().enumerate() {
        let series: Vec<u64> = samples.iter().filter_map(|sample| sample.rss_kib[node]).collect();
        let at_warm = samples.iter().find(|sample| sample.at >= Duration::from_secs(60)).and_then(|s| s.rss_kib[node]);
        let mean_of = |part: usize| {
            let chosen: Vec<u64> = samples
                .iter()
                .filter(|sample| third(sample) == part)
                .filter_map(|sample| sample.rss_kib[node])
                .collect();
            (!chosen.is_empty()).then(|| chosen.iter().sum::<u64>() / chosen.len() as u64)
        };
        let fds_max = samples.iter().filter_map(|sample| sample.fds[node]).max();
        println!(
            "n{:<5} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8} {:>12} {:>8}",
            node + 1,
            mib(series.first().copied()),
            mib(at_warm),
            mib(mean_of(1)),
            mib(mean_of(2)),
            mib(series.last().copied()),
            mib(series.iter().copied().max()),
            mib(*rss_after),
            fds_max.map_or("-".into(), |n| n.to_string()),
        );
    }

    println!("\nwell-formed load: {load_secs:.0} s, {} clients, every node coordinating", settings.clients);
    println!(
        "{:<14} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "operation", "ok", "errors", "ok/s", "p50 ms", "p99 ms", "max ms"
    );
    let mut all = OpStats::default();
    for (op, op_stats) in &stats.ops {
        all.ok += op_stats.ok;
        all.errors += op_stats.errors;
        all.latency.merge(&op_stats.latency);
        print_op_row(op.name(), op_stats, load_secs);
    }
    print_op_row("all", &all, load_secs);

    println!("\nerrors of the well-formed load, by kind:");
    if stats.errors.is_empty() {
        println!("  none");
    }
    let mut errors: Vec<_> = stats.errors.iter().collect();
    errors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (label, count) in errors {
        println!("  {count:>8}  {label}");
    }

    let tally = std::mem::take(&mut *bad.tally.lock().expect("tally lock"));
    let bad_total: u64 = tally.outcomes.values().flat_map(|outcomes| outcomes.values()).sum();
    println!(
        "\nbad requests: {bad_total} ({:.1}/s), every one must get a 4xx or a closed connection{}",
        bad_total as f64 / load_secs,
        if tally.skipped > 0 { format!("; {} ticks skipped (64 in flight)", tally.skipped) } else { String::new() }
    );
    println!("{:<22} {:>7}  outcomes", "kind", "sent");
    for (kind, outcomes) in &tally.outcomes {
        let sent: u64 = outcomes.values().sum();
        let described: Vec<String> = outcomes.iter().map(|(label, count)| format!("{label} x{count}")).collect();
        println!("{:<22} {sent:>7}  {}", kind.name(), described.join(", "));
    }

    println!(
        "\nfinal reads ({verify_secs:.1} s; {}): {} keys with acknowledged writes read back, {} lost; {} TTL keys read \
         back, {} still readable after expiry; {} keys unanswered; {} answered by strong reads, {} by reads with \
         min_timestamp",
        if strong_first {
            "strong, falling back to min_timestamp for a key they cannot answer"
        } else {
            "with min_timestamp, as a store had failed"
        },
        verification.checked,
        verification.lost,
        verification.ttl_checked,
        verification.ttl_alive,
        verification.unverified,
        verification.by_strong,
        verification.by_at_least,
    );

    if health_unanswered.0 > 0 {
        println!(
            "\n/health unanswered within 5 s {} times (a loaded machine; not a failure), first: {}",
            health_unanswered.0, health_unanswered.1
        );
    }
    println!("\nnode logs (--log warn):");
    for (i, log) in logs.iter().enumerate() {
        let summary = summarize_log(log);
        println!("  n{}: {} lines, {} ERROR, {} WARN", i + 1, summary.lines, summary.errors, summary.warnings);
        let mut classes: Vec<_> = summary.classes.iter().collect();
        classes.sort_by(|a, b| b.1.cmp(a.1));
        for (class, count) in classes.into_iter().take(6) {
            println!("  {count:>8}  {class}");
        }
    }
    let mut failures: Vec<String> = crashes.clone();
    failures.extend(node_failures.iter().cloned());
    if verification.lost > 0 {
        failures.push(format!("{} lost acknowledged writes", verification.lost));
    }
    if verification.unverified > 0 {
        failures.push(format!("{} keys could not be read back", verification.unverified));
    }
    if verification.ttl_alive > 0 {
        failures.push(format!("{} TTL values readable after expiry", verification.ttl_alive));
    }
    for (kind, count) in stats.problems.counts.iter().chain(tally.problems.counts.iter()) {
        failures.push(format!("{count} x {kind}"));
    }
    if all.ok == 0 {
        failures.push("no operation succeeded".into());
    }
    let examples: Vec<&String> =
        verification.examples.iter().chain(&stats.problems.examples).chain(&tally.problems.examples).collect();
    if !examples.is_empty() {
        println!("\nexamples:");
        examples.iter().for_each(|example| println!("  {example}"));
    }

    drop(cluster);
    if failures.is_empty() {
        for (dir, log) in dirs.iter().zip(&logs) {
            let _ = std::fs::remove_dir_all(dir);
            let _ = std::fs::remove_file(log);
        }
        println!("\nPASS (seed {}): no crash, 0 lost acknowledged writes, no 5xx to a bad request", settings.seed);
        ExitCode::SUCCESS
    } else {
        println!("\nFAIL (seed {}): {}", settings.seed, failures.join("; "));
        println!(
            "node data and logs kept in {} (logs: <folder>.log)",
            dirs.iter().map(|dir| dir.display().to_string()).collect::<Vec<_>>().join(" ")
        );
        ExitCode::FAILURE
    }
}

fn print_op_row(name: &str, stats: &OpStats, secs: f64) {
    println!(
        "{:<14} {:>10} {:>8} {:>8.0} {:>9.2} {:>9.2} {:>9.1}",
        name,
        stats.ok,
        stats.errors,
        stats.ok as f64 / secs,
        stats.latency.percentile_ms(0.50),
        stats.latency.percentile_ms(0.99),
        stats.latency.max_us as f64 / 1000.0,
    );
}
