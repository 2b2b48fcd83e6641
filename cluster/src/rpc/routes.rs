//! Handlers of the internal routes: a peer's calls into this replica.

use super::codec::{self, Answer, Call};
use super::SECRET_HEADER;
use crate::api::ApiError;
use crate::replica::{Replica, ReplicaError, TOO_OLD};
use crate::storage::{ApplyOutcome, Newer, Write};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Internal routes and test hooks answer only callers with the cluster
/// secret; anyone else sees the same JSON 404 as for an unknown path. A
/// node with no secret (one alone, without test hooks) answers no one.
pub fn authorize(headers: &HeaderMap, secret: Option<&str>, path: &str) -> Result<(), ApiError> {
    match (headers.get(SECRET_HEADER), secret) {
        (Some(given), Some(secret)) if constant_time_eq(given.as_bytes(), secret.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no such path: {path}"))),
    }
}

/// Equality whose time depends on the lengths only, not on where the
/// first difference is: a caller cannot find the secret byte by byte by
/// timing refusals.
pub fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    if given.len() != secret.len() {
        return false;
    }
    given.iter().zip(secret).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
}

fn failed(error: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
}

fn malformed(error: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, error.to_string()).into_response()
}

/// A batch of reads and writes; the writes share one group commit.
pub async fn batch(replica: &Arc<Replica>, body: Bytes) -> Response {
    let calls = match codec::decode_calls(&body) {
        Ok(calls) => calls,
        Err(error) => return malformed(error),
    };
    let mut answers = Vec::with_capacity(calls.len());
    // Each write with its answers should the store hold as new already,
    // or find it too old over nothing held.
    let mut writes = Vec::new();
    let fresh_from_ms = replica.fresh_from_ms();
    let too_old = || Answer::Failed(format!("refused: {TOO_OLD}"));
    for (index, call) in calls.into_iter().enumerate() {
        answers.push(match call {
            Call::Read { key, fence } => match replica.read(&key, fence) {
                Ok(Some(record)) => Answer::Found(record),
                Ok(None) => Answer::Absent,
                Err(ReplicaError::StaleView) => Answer::StaleView,
                Err(error) => Answer::Failed(error.to_string()),
            },
            Call::Write { key, record, fence } => match replica.check_fence(&key, fence) {
                Err(_) => Answer::StaleView,
                Ok(()) => match replica.refusal(&key, &record) {
                    Some(reason) => Answer::Failed(format!("refused: {reason}")),
                    None => {
                        let write = Write { key, record, newer: Newer::Version, fresh_from_ms };
                        writes.push((index, write, (Answer::Written, too_old())));
                        Answer::Written
                    }
                },
            },
            // As `Replica::write_newest`, its writes sharing the batch's flush.
            Call::WriteNewest { key, record, fence } => match replica.may_vouch(&key, &record, fence) {
                Err(ReplicaError::StaleView) => Answer::StaleView,
                Err(error) => Answer::Failed(error.to_string()),
                Ok(false) => Answer::NotNewest,
                Ok(true) => {
                    let write = Write { key, record, newer: Newer::Millisecond, fresh_from_ms };
                    writes.push((index, write, (Answer::NotNewest, Answer::NotNewest)));
                    Answer::Written
                }
            },
        });
    }
    let (answered, writes): (Vec<_>, Vec<_>) = writes.into_iter().map(|(i, w, stale)| ((i, stale), w)).unzip();
    for ((index, (if_stale, if_too_old)), result) in answered.into_iter().zip(replica.store.apply_each(writes).await) {
        match result {
            Err(error) => answers[index] = Answer::Failed(error.to_string()),
            Ok(ApplyOutcome::Stale) => answers[index] = if_stale,
            Ok(ApplyOutcome::TooOld) => answers[index] = if_too_old,
            Ok(ApplyOutcome::Applied) => {}
        }
    }
    (StatusCode::OK, codec::encode_answers(&answers)).into_response()
}

pub async fn write_batch(replica: &Arc<Replica>, body: Bytes) -> Response {
    let (from, entries) = match codec::decode_write_batch(&body) {
        Ok(batch) => batch,
        Err(error) => return malformed(error),
    };
    match replica.write_batch(entries, &from).await {
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

/// A gossip exchange: merge what was sent, answer with what the caller lacks.
pub fn gossip(replica: &Replica, body: Bytes) -> Response {
    match codec::decode_gossip(&body) {
        Ok(message) => {
            let reply = crate::gossip::answer(&replica.membership, &message);
            (StatusCode::OK, codec::encode_gossip(&reply)).into_response()
        }
        Err(error) => malformed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::recovery::Recovery;
    use crate::version::Version;

    /// The batch route, which carries every remote coordinator's writes,
    /// refuses a write too old to store over nothing held (see
    /// `Replica::fresh_from_ms`): a plain write fails, a one-round put's is
    /// "not newest", and nothing is stored.
    #[tokio::test]
    async fn a_batch_refuses_writes_too_old_over_nothing_held() {
        let replica = Arc::new(crate::replica::tests::replica(Recovery::done));
        let now_ms = replica.clock.now_ms();
        let late = Record::value(Version::new(now_ms - replica.grace_ms - 1_000, 1), b"late".to_vec(), None);
        let fence = replica.membership.load().fence(b"k");
        let calls = [
            Call::Write { key: b"k".to_vec(), record: late.clone(), fence },
            Call::WriteNewest { key: b"k".to_vec(), record: late, fence },
        ];
        let response = batch(&replica, Bytes::from(codec::encode_calls(calls.iter()))).await;
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body");
        let answers = codec::decode_answers(&body).expect("answers");
        assert!(matches!(&answers[0], Answer::Failed(reason) if reason.contains(TOO_OLD)), "{answers:?}");
        assert_eq!(answers[1], Answer::NotNewest);
        assert_eq!(replica.store.get(b"k").expect("a read"), None);
    }

    #[test]
    fn only_the_exact_secret_is_authorized() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdeF", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"", b"0123456789abcdef"));
        let mut headers = HeaderMap::new();
        assert!(authorize(&headers, Some("0123456789abcdef"), "/x").is_err());
        headers.insert(SECRET_HEADER, "0123456789abcdef".parse().unwrap());
        assert!(authorize(&headers, Some("0123456789abcdef"), "/x").is_ok());
        assert!(authorize(&headers, None, "/x").is_err(), "no secret: no one");
        assert!(authorize(&headers, Some("fedcba9876543210"), "/x").is_err());
    }
}
