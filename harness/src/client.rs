//! The client: one operation to one node's client API, and its outcome
//! classified as Jepsen does (docs/SPEC.md section 3).
//!
//! - `ok`: it happened (201/200, or a 404 read that found nothing).
//! - `fail`: it certainly did not happen: a 4xx rejection, a refused
//!   connection, or any read that did not succeed (reads change nothing).
//! - `info`: a write whose outcome is unknown: 503, a timeout, a dropped
//!   connection after sending.

pub mod etcd;
pub mod redis;

use crate::history::EventType;
use crate::system::{Adapter, SystemDescription};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kvapi::wire::{DeleteResponse, GetResponse, NotFoundResponse, PutResponse};
use serde_json::json;
use std::future::Future;
use std::time::{Duration, Instant};

/// The read consistency of our API, as the cluster defines it.
pub use kvapi::Consistency;

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8>, ttl_secs: Option<u32> },
    Get { key: String, consistency: Consistency, min_timestamp: Option<u64> },
    Delete { key: String },
}

impl Op {
    pub fn f(&self) -> &'static str {
        match self {
            Op::Put { .. } => "put",
            Op::Get { .. } => "get",
            Op::Delete { .. } => "delete",
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Get { key, .. } | Op::Delete { key } => key,
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub kind: EventType,
    /// For an ok get: the value read, `None` when not found.
    pub read: Option<Option<Vec<u8>>>,
    pub timestamp: Option<u64>,
    pub error: Option<String>,
    pub latency: Duration,
}

/// Jepsen's client: performs one abstract operation through one node of
/// the system under test and says what happened. A store is tested by
/// writing one of these for its API; the runner, the generators and the
/// checkers know only [`Op`] and [`Outcome`].
pub trait Client: Send + Sync {
    /// Performs `op` through the node reached at `base_url`. Every failure
    /// becomes an [`Outcome`] (`fail` when it certainly did not happen,
    /// `info` when it may have), never an error or a panic, and no call
    /// outlives the client's own timeout.
    fn invoke(&self, base_url: &str, op: &Op) -> impl Future<Output = Outcome> + Send;

    /// The node that serves `op`, given the one the runner `picked` among
    /// `nodes`: a store with one primary sends its writes there. The
    /// history records the node returned.
    fn route<'a>(&self, picked: &'a str, op: &Op, nodes: &'a [String]) -> &'a str {
        let _ = (op, nodes);
        picked
    }
}

/// The client a system description names, with every call bounded by
/// `timeout`.
#[derive(Clone)]
pub enum AnyClient {
    Kvnode(KvClient),
    Etcd(etcd::EtcdClient),
    Redis(redis::RedisClient),
}

impl AnyClient {
    pub fn for_system(system: &SystemDescription, timeout: Duration) -> Result<AnyClient, String> {
        Ok(match system.adapter {
            Adapter::Kvnode => AnyClient::Kvnode(KvClient::new(timeout)),
            Adapter::Etcd => AnyClient::Etcd(etcd::EtcdClient::new(timeout)),
            Adapter::Redis => {
                let replicas = system.option_u64("wait_replicas", 0)?;
                let limit = Duration::from_millis(system.option_u64("wait_timeout_ms", 1_000)?);
                AnyClient::Redis(redis::RedisClient::new(timeout).with_wait(replicas, limit))
            }
        })
    }
}

impl Client for AnyClient {
    async fn invoke(&self, base_url: &str, op: &Op) -> Outcome {
        match self {
            AnyClient::Kvnode(client) => client.invoke(base_url, op).await,
            AnyClient::Etcd(client) => client.invoke(base_url, op).await,
            AnyClient::Redis(client) => client.invoke(base_url, op).await,
        }
    }

    fn route<'a>(&self, picked: &'a str, op: &Op, nodes: &'a [String]) -> &'a str {
        match self {
            AnyClient::Kvnode(client) => client.route(picked, op, nodes),
            AnyClient::Etcd(client) => client.route(picked, op, nodes),
            AnyClient::Redis(client) => client.route(picked, op, nodes),
        }
    }
}

/// The [`Client`] of kvnode's HTTP API (docs/SPEC.md section 1).
#[derive(Clone)]
pub struct KvClient {
    http: reqwest::Client,
}

impl KvClient {
    /// Every call gives up after `timeout` (an `info` for writes).
    pub fn new(timeout: Duration) -> KvClient {
        KvClient { http: http_client(timeout) }
    }

    pub async fn call(&self, base_url: &str, op: &Op) -> Outcome {
        let started = Instant::now();
        let url = format!("{base_url}/api/v1/item");
        let request = match op {
            Op::Put { key, value, ttl_secs } => {
                let mut body = json!({"key": key, "value": BASE64.encode(value)});
                if let Some(ttl) = ttl_secs {
                    body["ttl"] = json!(ttl);
                }
                self.http.post(url).json(&body)
            }
            Op::Get { key, consistency, min_timestamp } => {
                let mut query = vec![("key", key.clone()), ("consistency", consistency.as_str().to_owned())];
                if let Some(min) = min_timestamp {
                    query.push(("min_timestamp", min.to_string()));
                }
                self.http.get(url).query(&query)
            }
            Op::Delete { key } => self.http.delete(url).query(&[("key", key)]),
        };
        let mut outcome = match request.send().await {
            Ok(response) => classify(op, response).await,
            Err(error) => transport_failure(op, &error),
        };
        outcome.latency = started.elapsed();
        outcome
    }
}

impl Client for KvClient {
    fn invoke(&self, base_url: &str, op: &Op) -> impl Future<Output = Outcome> + Send {
        self.call(base_url, op)
    }
}

/// The HTTP client every adapter calls its store with: each call bounded by
/// `timeout`, connecting within a second of it, connections kept.
fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(1)))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client without TLS always builds")
}

fn outcome(kind: EventType) -> Outcome {
    Outcome { kind, read: None, timestamp: None, error: None, latency: Duration::ZERO }
}

fn failed(kind: EventType, error: String) -> Outcome {
    Outcome { error: Some(error), ..outcome(kind) }
}

/// Unknown for a write that may have reached the node; failed for a read,
/// and for a write the node never received (connection refused).
fn transport_failure(op: &Op, error: &reqwest::Error) -> Outcome {
    let never_sent = error.is_connect() && !error.is_timeout();
    let kind = if op.is_write() && !never_sent { EventType::Info } else { EventType::Fail };
    let what = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection refused"
    } else {
        "connection lost"
    };
    failed(kind, format!("{what}: {error}"))
}

async fn classify(op: &Op, response: reqwest::Response) -> Outcome {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let error_text = || {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
    };
    let unknown_write = if op.is_write() { EventType::Info } else { EventType::Fail };
    match (op, status) {
        (Op::Put { .. }, 201) => parsed::<PutResponse>(&body, |r| Some(r.timestamp), None, unknown_write),
        (Op::Delete { .. }, 200) => parsed::<DeleteResponse>(&body, |r| Some(r.timestamp), None, unknown_write),
        (Op::Get { .. }, 200) => match serde_json::from_slice::<GetResponse>(&body) {
            Ok(found) => match BASE64.decode(&found.value) {
                Ok(value) => {
                    Outcome { read: Some(Some(value)), timestamp: Some(found.timestamp), ..outcome(EventType::Ok) }
                }
                Err(error) => failed(EventType::Fail, format!("value is not base64: {error}")),
            },
            Err(error) => failed(EventType::Fail, format!("unreadable 200 body: {error}")),
        },
        (Op::Get { .. }, 404) => parsed::<NotFoundResponse>(&body, |r| r.timestamp, Some(None), EventType::Fail),
        (_, 400..=499) => failed(EventType::Fail, format!("{status}: {}", error_text())),
        (_, _) => failed(unknown_write, format!("{status}: {}", error_text())),
    }
}

/// An ok outcome from a JSON body, or `otherwise` if it does not parse.
fn parsed<T: serde::de::DeserializeOwned>(
    body: &[u8],
    timestamp: impl Fn(&T) -> Option<u64>,
    read: Option<Option<Vec<u8>>>,
    otherwise: EventType,
) -> Outcome {
    match serde_json::from_slice::<T>(body) {
        Ok(parsed) => Outcome { read, timestamp: timestamp(&parsed), ..outcome(EventType::Ok) },
        Err(error) => failed(otherwise, format!("unreadable body: {error}")),
    }
}
