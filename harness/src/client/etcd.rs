//! The [`Client`] of etcd v3, through its JSON gateway (`/v3/kv/*`), for
//! testing a store nobody here wrote.
//!
//! How our abstract operations map onto etcd:
//! - put: `/v3/kv/put`; the version is the response's revision (etcd's
//!   revisions increase across the whole store, so they order one key's
//!   writes as our timestamps do);
//! - get strong: a linearizable `/v3/kv/range`; get eventual: a
//!   serializable one (the member's local state, possibly stale); a get
//!   with `min_timestamp` reads serializably and, if that is older than
//!   asked, reads again linearizably, as an etcd client keeping its session
//!   would; the version read is the key's `mod_revision`;
//! - delete: `/v3/kv/deleterange`, version = the response's revision when
//!   it removed the key; a delete of an absent key writes nothing and
//!   creates no revision (the header then shows the store's current one,
//!   which may be this key's last write's: reported as its version, a
//!   second delete looked like a write that did not advance), so it is
//!   acknowledged with no version.
//!
//! etcd has no per-put TTL (it has leases), so a put with one fails before
//! anything is sent. Outcomes follow the same rules as kvnode's client: a
//! rejected request or a read that did not succeed is `fail`, a write that
//! may have happened is `info`.

use super::{failed, http_client, outcome, transport_failure, Client, Op, Outcome};
use crate::history::EventType;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kvapi::Consistency;
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::time::{Duration, Instant};

/// etcd's JSON gateway writes 64-bit integers as strings.
#[derive(Debug, Default, Deserialize)]
struct Header {
    #[serde(default)]
    revision: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WriteResponse {
    #[serde(default)]
    header: Header,
    /// How many keys a deleterange removed (absent when none: the gateway
    /// leaves zero values out).
    #[serde(default)]
    deleted: Option<String>,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    #[serde(default)]
    mod_revision: Option<String>,
    /// Base64; absent for an empty value.
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

fn revision(text: Option<&String>) -> Option<u64> {
    text.and_then(|t| t.parse().ok())
}

/// A client of one etcd cluster's members, with a timeout on every call.
#[derive(Clone)]
pub struct EtcdClient {
    http: reqwest::Client,
}

impl EtcdClient {
    pub fn new(timeout: Duration) -> EtcdClient {
        EtcdClient { http: http_client(timeout) }
    }

    async fn call(&self, base_url: &str, op: &Op) -> Outcome {
        let started = Instant::now();
        let mut result = match op {
            Op::Put { ttl_secs: Some(_), .. } => {
                failed(EventType::Fail, "etcd has no per-put TTL (it has leases): not sent".to_owned())
            }
            Op::Put { key, value, ttl_secs: None } => {
                let body = json!({"key": BASE64.encode(key), "value": BASE64.encode(value)});
                self.write(base_url, "put", op, &body).await
            }
            Op::Delete { key } => self.write(base_url, "deleterange", op, &json!({"key": BASE64.encode(key)})).await,
            Op::Get { key, consistency, min_timestamp } => {
                let strong = *consistency == Consistency::Strong;
                let first = self.range(base_url, op, key, strong).await;
                match min_timestamp {
                    Some(min) if !strong && first.timestamp.is_none_or(|t| t < *min) => {
                        self.range(base_url, op, key, true).await
                    }
                    _ => first,
                }
            }
        };
        result.latency = started.elapsed();
        result
    }

    async fn post(&self, base_url: &str, path: &str, op: &Op, body: &serde_json::Value) -> Result<Vec<u8>, Outcome> {
        let response = self
            .http
            .post(format!("{base_url}/v3/kv/{path}"))
            .json(body)
            .send()
            .await
            .map_err(|error| transport_failure(op, &error))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|error| transport_failure(op, &error))?;
        if status == 200 {
            return Ok(bytes.to_vec());
        }
        // gRPC errors come back as {"error", "code", "message"}: 3
        // (invalid argument) is a rejection; anything else (no leader, a
        // timeout, unavailable) may have let a write through.
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = error["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let rejected = error["code"].as_u64() == Some(3) || (400..500).contains(&status);
        let kind = if op.is_write() && !rejected { EventType::Info } else { EventType::Fail };
        Err(failed(kind, format!("{status}: {message}")))
    }

    async fn write(&self, base_url: &str, path: &str, op: &Op, body: &serde_json::Value) -> Outcome {
        let bytes = match self.post(base_url, path, op, body).await {
            Ok(bytes) => bytes,
            Err(outcome) => return outcome,
        };
        match serde_json::from_slice::<WriteResponse>(&bytes) {
            Ok(answer) if path == "deleterange" && answer.deleted.as_deref().is_none_or(|n| n == "0") => {
                outcome(EventType::Ok)
            }
            Ok(answer) => match revision(answer.header.revision.as_ref()) {
                Some(revision) => Outcome { timestamp: Some(revision), ..outcome(EventType::Ok) },
                None => failed(EventType::Info, "acknowledged without a revision".to_owned()),
            },
            Err(error) => failed(EventType::Info, format!("unreadable answer: {error}")),
        }
    }

    async fn range(&self, base_url: &str, op: &Op, key: &str, linearizable: bool) -> Outcome {
        let body = json!({"key": BASE64.encode(key), "serializable": !linearizable});
        let bytes = match self.post(base_url, "range", op, &body).await {
            Ok(bytes) => bytes,
            Err(outcome) => return outcome,
        };
        let answer = match serde_json::from_slice::<RangeResponse>(&bytes) {
            Ok(answer) => answer,
            Err(error) => return failed(EventType::Fail, format!("unreadable answer: {error}")),
        };
        let Some(found) = answer.kvs.first() else {
            // Not found: etcd keeps no tombstone to name, so no version.
            return Outcome { read: Some(None), ..outcome(EventType::Ok) };
        };
        match BASE64.decode(found.value.as_deref().unwrap_or("")) {
            Ok(value) => Outcome {
                read: Some(Some(value)),
                timestamp: revision(found.mod_revision.as_ref()),
                ..outcome(EventType::Ok)
            },
            Err(error) => failed(EventType::Fail, format!("value is not base64: {error}")),
        }
    }
}

impl Client for EtcdClient {
    fn invoke(&self, base_url: &str, op: &Op) -> impl Future<Output = Outcome> + Send {
        self.call(base_url, op)
    }
}
