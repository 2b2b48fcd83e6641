//! JSON bodies of the client API, exactly as SPEC section 1 gives them.

use serde::{Deserialize, Serialize};

/// `201` answer to a put.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    pub key: String,
    pub timestamp: u64,
}

/// `200` answer to a get that found a live value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetResponse {
    pub key: String,
    /// Standard base64, padded.
    pub value: String,
    pub timestamp: u64,
}

/// `404` answer to a get: no value, or a tombstone / expired version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotFoundResponse {
    pub key: String,
    pub error: String,
    /// Timestamp of the tombstone or expired version, when one is known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timestamp: Option<u64>,
}

/// `200` answer to a delete, whether or not the key existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    pub key: String,
    pub deleted: bool,
    pub timestamp: u64,
}

/// Every error answer: `{"error": "...", "key": K?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: String,
    pub node_id: String,
}

pub const KEY_NOT_FOUND: &str = "key not found";
