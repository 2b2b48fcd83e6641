//! Handlers of the internal routes: a peer's calls into this replica.

use super::{codec, SECRET_HEADER};
use crate::api::ApiError;
use crate::replica::Replica;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Internal routes answer only callers with the cluster secret; anyone else
/// sees the same JSON 404 as for an unknown path.
pub fn authorize(headers: &HeaderMap, secret: &str, path: &str) -> Result<(), ApiError> {
    match headers.get(SECRET_HEADER) {
        Some(given) if given.as_bytes() == secret.as_bytes() => Ok(()),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no such path: {path}"))),
    }
}

fn failed(error: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
}

fn malformed(error: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, error.to_string()).into_response()
}

pub async fn read(replica: &Arc<Replica>, body: Bytes) -> Response {
    match replica.read(&body) {
        Ok(Some(record)) => (StatusCode::OK, record.encode()).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => failed(error),
    }
}

pub async fn write(replica: &Arc<Replica>, body: Bytes) -> Response {
    let (key, record) = match codec::decode_write(&body) {
        Ok(entry) => entry,
        Err(error) => return malformed(error),
    };
    match replica.write(key, record).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => failed(error),
    }
}

pub async fn write_batch(replica: &Arc<Replica>, body: Bytes) -> Response {
    let entries = match codec::decode_entries(&body) {
        Ok(entries) => entries,
        Err(error) => return malformed(error),
    };
    match replica.write_batch(entries).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => failed(error),
    }
}

pub async fn sync(replica: &Arc<Replica>, body: Bytes) -> Response {
    let request = match codec::decode_sync_request(&body) {
        Ok(request) => request,
        Err(error) => return malformed(error),
    };
    match replica.answer_sync(&request).await {
        Ok(reply) => (StatusCode::OK, codec::encode_sync_reply(&reply)).into_response(),
        Err(error) => failed(error),
    }
}
