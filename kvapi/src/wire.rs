//! JSON bodies of the client API, exactly as docs/SPEC.md section 1 gives them.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/item` body. The node parses it field by field (naming
/// the field at fault); this type is its shape for clients and for the
/// API description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutRequest {
    /// 1 to `--max-key-bytes` bytes of UTF-8.
    pub key: String,
    /// Standard base64, padded; at most `--max-value-bytes` once decoded.
    #[cfg_attr(feature = "openapi", schema(format = Byte))]
    pub value: String,
    /// Seconds the value lives, 1 to 2^32-1; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

/// `201` answer to a put.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutResponse {
    pub key: String,
    pub timestamp: u64,
}

/// `200` answer to a get that found a live value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GetResponse {
    pub key: String,
    /// Standard base64, padded.
    #[cfg_attr(feature = "openapi", schema(format = Byte))]
    pub value: String,
    pub timestamp: u64,
}

/// `404` answer to a get: no value, or a tombstone / expired version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotFoundResponse {
    pub key: String,
    pub error: String,
    /// Timestamp of the tombstone or expired version, when one is known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timestamp: Option<u64>,
}

/// `200` answer to a delete, whether or not the key existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeleteResponse {
    pub key: String,
    pub deleted: bool,
    pub timestamp: u64,
}

/// Every error answer: `{"error": "...", "key": K?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    pub status: String,
    pub node_id: String,
    /// Peers this node must still exchange with before it answers reads of
    /// the keys they co-own (after an unclean stop); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovering_from: Vec<String>,
    /// With status "failed" (HTTP 503): why the node takes no writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub const KEY_NOT_FOUND: &str = "key not found";

/// Test hooks: `GET|POST /test/v1/clock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockState {
    pub offset_ms: i64,
    /// The node's clock, offset included.
    pub now_ms: u64,
}

/// Test hooks: `POST /test/v1/clock` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetClock {
    pub offset_ms: i64,
}

/// Test hooks: one replica's local record of a key, read without
/// coordination (`GET /test/v1/replica?key=K`, `POST /test/v1/replica`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub key: String,
    pub present: bool,
    #[serde(default)]
    pub timestamp: Option<u64>,
    #[serde(default)]
    pub tiebreak: Option<u64>,
    #[serde(default)]
    pub tombstone: Option<bool>,
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// Base64, as in the client API.
    #[serde(default)]
    pub value: Option<String>,
    /// The nodes that own the key in this node's view of the ring (its
    /// preference list, N of them), so that a client judges convergence
    /// by the store's own placement, never by a copy of it.
    #[serde(default)]
    pub owners: Vec<String>,
}

/// Test hooks: `POST /test/v1/replica` body and answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaKeys {
    pub keys: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecords {
    pub node_id: String,
    pub records: Vec<ReplicaRecord>,
}

/// Test hooks: `POST /test/v1/probe` body: ping `peer` from this node now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest {
    pub peer: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResponse {
    pub peer: String,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Admin: `GET /admin/v1/membership`, one member's entry in the node's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberStatus {
    pub id: String,
    /// `joining`, `normal`, `leaving` or `left`.
    pub status: String,
    pub version: u64,
    pub addr: String,
    /// How many ring tokens it holds.
    pub tokens: usize,
}

/// Admin: a join's or leave's progress on the moving node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoveProgress {
    /// `idle`, `waiting`, `purging`, `announcing`, `streaming`, `switching`, `done`,
    /// `undone` or `failed`.
    pub phase: String,
    /// Members whose handoff finished, of `members`.
    pub members_done: usize,
    pub members: usize,
    pub records_pushed: u64,
    pub records_purged: u64,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Admin: `GET /admin/v1/membership`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MembershipResponse {
    pub node_id: String,
    /// This node's own status (absent before a joiner learned the view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub members: Vec<MemberStatus>,
    /// Whether any member is joining or leaving.
    pub changing: bool,
    pub r#move: MoveProgress,
}

/// Admin: `202` answer to `POST /admin/v1/leave`: the handoff started; the
/// node stops by itself once it is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaveResponse {
    pub leaving: bool,
}

/// Admin: `202` answer to `POST /admin/v1/remove?node=ID`: the member whose
/// ranges this node now hands off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoveResponse {
    pub removing: String,
}
