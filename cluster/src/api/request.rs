//! Typed client requests, parsed and validated before anything is touched.
//!
//! Every check that can reject a request runs here, so a rejected request
//! never reaches storage and changes nothing.

use super::{query, ApiError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kvapi::Consistency;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Configured size limits, counted on decoded bytes; the limit itself is
/// accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_key_bytes: 1024, max_value_bytes: 1024 * 1024 }
    }
}

impl Limits {
    /// Why a record from a peer breaks the limits a client's put must keep
    /// (a key of 1..=max_key_bytes bytes, a value of at most
    /// max_value_bytes), if it does: the replica protocol is no back door
    /// around them.
    pub fn refusal(&self, key: &[u8], value: &[u8]) -> Option<String> {
        if key.is_empty() || key.len() > self.max_key_bytes {
            return Some(format!(
                "a key of {} bytes is outside 1..={} (--max-key-bytes)",
                key.len(),
                self.max_key_bytes
            ));
        }
        (value.len() > self.max_value_bytes)
            .then(|| format!("a value of {} bytes is over {} (--max-value-bytes)", value.len(), self.max_value_bytes))
    }

    /// The largest body a valid put can have: base64 of the largest value,
    /// the largest key with every byte escaped as `\u00XX`, and room for the
    /// rest of the JSON and whitespace. Saturating: `--max-key-bytes` has
    /// no upper bound, and a huge one overflowed here (a panic with
    /// overflow checks, a wrapped, possibly tiny, limit without; found by
    /// the `request` fuzz target).
    pub fn max_put_body_bytes(&self) -> usize {
        self.max_value_bytes
            .div_ceil(3)
            .saturating_mul(4)
            .saturating_add(self.max_key_bytes.saturating_mul(6))
            .saturating_add(64 * 1024)
    }

    fn check_key(&self, key: &str) -> Result<(), ApiError> {
        if key.is_empty() {
            return Err(ApiError::bad_request("key must not be empty"));
        }
        if key.len() > self.max_key_bytes {
            return Err(ApiError::too_large(format!(
                "key is {} bytes (UTF-8), over the limit of {} bytes",
                key.len(),
                self.max_key_bytes
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutCommand {
    pub key: String,
    pub value: Vec<u8>,
    pub ttl_secs: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetCommand {
    pub key: String,
    pub consistency: Consistency,
    pub min_timestamp_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteCommand {
    pub key: String,
}

/// The fields of a put body, each kept as raw JSON text: parsed into a
/// type, not into a generic JSON tree (whose size a client controls), and
/// each checked on its own so that the error names the field. Unknown
/// fields are skipped without being stored.
#[derive(serde::Deserialize)]
struct PutBody<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    key: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    ttl: Option<&'a RawValue>,
}

/// `Some` for a field that is there, `null` included (`Option`'s own
/// deserialisation would turn `null` into "absent").
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// `POST /api/v1/item` body.
pub fn parse_put(body: &[u8], limits: &Limits) -> Result<PutCommand, ApiError> {
    let body = std::str::from_utf8(body)
        .map_err(|error| ApiError::bad_request(format!("request body is not valid JSON: not UTF-8: {error}")))?;
    let fields: PutBody<'_> = serde_json::from_str(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ApiError::bad_request(format!(
            "request body must be a JSON object with \"key\", \"value\" and an optional \"ttl\": {error}"
        )),
        _ => ApiError::bad_request(format!("request body is not valid JSON: {error}")),
    })?;
    let key: String = match fields.key {
        Some(raw) => {
            serde_json::from_str(raw.get()).map_err(|_| ApiError::bad_request("\"key\" must be a JSON string"))?
        }
        None => return Err(ApiError::bad_request("missing required field \"key\"")),
    };
    limits.check_key(&key)?;
    let value = match fields.value {
        Some(raw) => {
            let encoded: Cow<'_, str> = serde_json::from_str(raw.get())
                .map_err(|_| ApiError::bad_request("\"value\" must be a base64 JSON string").with_key(&key))?;
            decode_value(&encoded, limits).map_err(|error| error.with_key(&key))?
        }
        None => return Err(ApiError::bad_request("missing required field \"value\"").with_key(&key)),
    };
    let ttl_secs = match fields.ttl {
        None => None,
        Some(raw) => Some(parse_ttl(raw.get()).map_err(|error| error.with_key(&key))?),
    };
    Ok(PutCommand { key, value, ttl_secs })
}

fn decode_value(encoded: &str, limits: &Limits) -> Result<Vec<u8>, ApiError> {
    // Reject before decoding what cannot fit, so a huge body costs nothing.
    if encoded.len() / 4 * 3 > limits.max_value_bytes + 2 {
        return Err(value_too_large(encoded.len() / 4 * 3, limits));
    }
    let value = BASE64.decode(encoded).map_err(|error| {
        ApiError::bad_request(format!("\"value\" is not valid base64 (standard alphabet, padded): {error}"))
    })?;
    if value.len() > limits.max_value_bytes {
        return Err(value_too_large(value.len(), limits));
    }
    Ok(value)
}

fn value_too_large(bytes: usize, limits: &Limits) -> ApiError {
    ApiError::too_large(format!("value is {bytes} bytes (decoded), over the limit of {} bytes", limits.max_value_bytes))
}

fn parse_ttl(ttl: &str) -> Result<u32, ApiError> {
    let invalid =
        || ApiError::bad_request(format!("\"ttl\" must be an integer from 1 to {} (seconds), got {ttl}", u32::MAX));
    let seconds: u64 = serde_json::from_str(ttl).map_err(|_| invalid())?;
    match u32::try_from(seconds) {
        Ok(seconds) if seconds > 0 => Ok(seconds),
        _ => Err(invalid()),
    }
}

/// `GET /api/v1/item?key=K&consistency=C&min_timestamp=T`.
pub fn parse_get(raw_query: Option<&str>, limits: &Limits) -> Result<GetCommand, ApiError> {
    let params = query::parse(raw_query)?;
    let key = required_key(&params, limits)?;
    let consistency = match params.get("consistency").map(String::as_str) {
        None | Some("eventual") => Consistency::Eventual,
        Some("strong") => Consistency::Strong,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown consistency {other:?}: expected \"eventual\" or \"strong\""
            ))
            .with_key(&key))
        }
    };
    let min_timestamp_ms = match params.get("min_timestamp") {
        None => None,
        Some(raw) => Some(parse_min_timestamp(raw).map_err(|error| error.with_key(&key))?),
    };
    Ok(GetCommand { key, consistency, min_timestamp_ms })
}

fn parse_min_timestamp(raw: &str) -> Result<u64, ApiError> {
    let parsed = if raw.bytes().all(|b| b.is_ascii_digit()) { raw.parse::<u64>().ok() } else { None };
    match parsed {
        Some(ms) if (1..=i64::MAX as u64).contains(&ms) => Ok(ms),
        _ => Err(ApiError::bad_request(format!(
            "\"min_timestamp\" must be a decimal integer from 1 to {} (milliseconds), got {raw:?}",
            i64::MAX
        ))),
    }
}

/// `DELETE /api/v1/item?key=K`.
pub fn parse_delete(raw_query: Option<&str>, limits: &Limits) -> Result<DeleteCommand, ApiError> {
    let params = query::parse(raw_query)?;
    Ok(DeleteCommand { key: required_key(&params, limits)? })
}

fn required_key(params: &std::collections::BTreeMap<String, String>, limits: &Limits) -> Result<String, ApiError> {
    let key = params.get("key").ok_or_else(|| ApiError::bad_request("missing required query parameter \"key\""))?;
    limits.check_key(key)?;
    Ok(key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn put(body: &str) -> Result<PutCommand, ApiError> {
        parse_put(body.as_bytes(), &Limits { max_key_bytes: 4, max_value_bytes: 3 })
    }

    fn status(result: Result<PutCommand, ApiError>) -> StatusCode {
        result.unwrap_err().status
    }

    #[test]
    fn put_accepts_the_spec_shape() {
        let command = put(r#"{"key":"k","value":"AAEC","ttl":5,"extra":[1]}"#).unwrap();
        assert_eq!(command, PutCommand { key: "k".into(), value: vec![0, 1, 2], ttl_secs: Some(5) });
        assert_eq!(put(r#"{"key":"k","value":""}"#).unwrap().value, Vec::<u8>::new());
        assert_eq!(put(r#"{"key":"kkkk","value":"","ttl":4294967295}"#).unwrap().ttl_secs, Some(u32::MAX));
    }

    #[test]
    fn put_rejects_bad_input() {
        for body in [
            "",
            "{",
            "[]",
            r#"{"value":"AA=="}"#,
            r#"{"key":"","value":"AA=="}"#,
            r#"{"key":5,"value":"AA=="}"#,
            r#"{"key":"k"}"#,
            r#"{"key":"k","value":null}"#,
            r#"{"key":"k","value":"AA"}"#,
            r#"{"key":"k","value":"A*=="}"#,
            r#"{"key":"k","value":"AA==","ttl":0}"#,
            r#"{"key":"k","value":"AA==","ttl":-1}"#,
            r#"{"key":"k","value":"AA==","ttl":1.5}"#,
            r#"{"key":"k","value":"AA==","ttl":1.0}"#,
            r#"{"key":"k","value":"AA==","ttl":"5"}"#,
            r#"{"key":"k","value":"AA==","ttl":null}"#,
            r#"{"key":"k","value":"AA==","ttl":4294967296}"#,
        ] {
            assert_eq!(status(put(body)), StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn limits_count_decoded_bytes_and_accept_the_limit() {
        assert!(put(r#"{"key":"kkkk","value":"AAAA"}"#).is_ok());
        assert!(put(r#"{"key":"é","value":""}"#).is_ok()); // 2 bytes
        assert_eq!(status(put(r#"{"key":"kkkkk","value":""}"#)), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status(put(r#"{"key":"ééé","value":""}"#)), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status(put(r#"{"key":"k","value":"AAAAAA=="}"#)), StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// The `request` fuzz target's first crash: a key limit the config
    /// accepts (any positive number) overflowed the body limit.
    #[test]
    fn the_body_limit_of_huge_limits_saturates() {
        let huge = Limits { max_key_bytes: usize::MAX, max_value_bytes: 16 * 1024 * 1024 };
        assert_eq!(huge.max_put_body_bytes(), usize::MAX);
        let wrapping = Limits { max_key_bytes: usize::MAX / 6 + 1, max_value_bytes: 0 };
        assert_eq!(wrapping.max_put_body_bytes(), usize::MAX, "not wrapped to a tiny limit");
        assert_eq!(Limits { max_key_bytes: 1, max_value_bytes: 3 }.max_put_body_bytes(), 4 + 6 + 64 * 1024);
    }

    #[test]
    fn get_parses_consistency_and_min_timestamp() {
        let limits = Limits::default();
        let get = parse_get(Some("key=k&consistency=strong&min_timestamp=42"), &limits).unwrap();
        assert_eq!(get.consistency, Consistency::Strong);
        assert_eq!(get.min_timestamp_ms, Some(42));
        assert_eq!(parse_get(Some("key=k"), &limits).unwrap().consistency, Consistency::Eventual);
        let max = format!("key=k&min_timestamp={}", i64::MAX);
        assert_eq!(parse_get(Some(&max), &limits).unwrap().min_timestamp_ms, Some(i64::MAX as u64));
        for bad in [
            "",
            "key=",
            "consistency=strong",
            "key=k&consistency=linearizable",
            "key=k&consistency=",
            "key=k&consistency=strong&consistency=strong",
            "key=k&min_timestamp=0",
            "key=k&min_timestamp=-5",
            "key=k&min_timestamp=+5",
            "key=k&min_timestamp=1.5",
            "key=k&min_timestamp=",
            "key=k&min_timestamp=9223372036854775808",
        ] {
            assert_eq!(parse_get(Some(bad), &limits).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
