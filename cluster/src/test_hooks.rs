//! Test-only routes, served only when a node starts with `--test-hooks`
//! (and it says so loudly in its log): the clock offset the harness skews,
//! a replica's local records for convergence checks, and a probe of whether
//! this node reaches a peer (to check partitions from the nodes' side).

use crate::api::wire::{ClockState, ProbeRequest, ProbeResponse, ReplicaKeys, ReplicaRecord, ReplicaRecords, SetClock};
use crate::api::{query, ApiError};
use crate::node::Node;
use crate::record::Record;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// Keys one batch status call may ask for.
const MAX_KEYS_PER_CALL: usize = 10_000;

pub fn clock_state(node: &Node) -> ClockState {
    ClockState { offset_ms: node.clock.offset_ms(), now_ms: node.clock.now_ms() }
}

/// The largest clock skew a test may set: one day.
pub const MAX_CLOCK_OFFSET_MS: u64 = 24 * 3600 * 1000;

pub fn set_clock(node: &Node, body: &[u8]) -> Result<ClockState, ApiError> {
    let request: SetClock = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("expected {{\"offset_ms\": INTEGER}}: {error}")))?;
    if request.offset_ms.unsigned_abs() > MAX_CLOCK_OFFSET_MS {
        return Err(ApiError::bad_request(format!(
            "offset_ms {} is beyond +-{MAX_CLOCK_OFFSET_MS} ms (one day): no test needs more, and timestamps far \
             ahead pin a key's versions",
            request.offset_ms
        )));
    }
    node.clock.set_offset_ms(request.offset_ms);
    tracing::warn!(offset_ms = request.offset_ms, "TEST HOOK: clock offset set");
    Ok(clock_state(node))
}

fn replica_record(node: &Node, key: String) -> Result<ReplicaRecord, ApiError> {
    // The stored record as it is, recovering or not: this is inspection.
    let held = node.replica.store.get(key.as_bytes()).map_err(|error| ApiError::unavailable(error.to_string()))?;
    let owners = node.membership.load().placement(key.as_bytes()).now;
    Ok(match held {
        None => ReplicaRecord {
            key,
            present: false,
            timestamp: None,
            tiebreak: None,
            tombstone: None,
            expires_at_ms: None,
            value: None,
            owners,
        },
        Some(Record { version, tombstone, expires_at_ms, value }) => ReplicaRecord {
            key,
            present: true,
            timestamp: Some(version.timestamp_ms),
            tiebreak: Some(version.tiebreak),
            tombstone: Some(tombstone),
            expires_at_ms,
            value: (!tombstone).then(|| BASE64.encode(value)),
            owners,
        },
    })
}

pub fn replica_one(node: &Node, raw_query: Option<&str>) -> Result<ReplicaRecord, ApiError> {
    let mut params = query::parse(raw_query)?;
    let key = params.remove("key").ok_or_else(|| ApiError::bad_request("missing required query parameter \"key\""))?;
    replica_record(node, key)
}

pub fn replica_many(node: &Node, body: &[u8]) -> Result<ReplicaRecords, ApiError> {
    let request: ReplicaKeys = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("expected {{\"keys\": [STRING, ...]}}: {error}")))?;
    if request.keys.len() > MAX_KEYS_PER_CALL {
        return Err(ApiError::too_large(format!("at most {MAX_KEYS_PER_CALL} keys per call")));
    }
    let records = request.keys.into_iter().map(|key| replica_record(node, key)).collect::<Result<_, _>>()?;
    Ok(ReplicaRecords { node_id: node.config.node_id.clone(), records })
}

pub async fn probe(node: &Node, body: &[u8]) -> Result<ProbeResponse, ApiError> {
    let request: ProbeRequest = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("expected {{\"peer\": NODE_ID}}: {error}")))?;
    let result = node.probe(&request.peer).await;
    Ok(ProbeResponse { peer: request.peer, reachable: result.is_ok(), error: result.err().map(|e| e.to_string()) })
}
