//! The client request parser: `parse_put` on a body, `parse_get` and
//! `parse_delete` on a raw query string, under limits a node could be
//! started with.
//!
//! Properties: nothing panics; a refusal is a client error (400 or 413),
//! never a server error; an accepted command keeps the limits; and an
//! accepted command, written back out the way a client would write it,
//! parses to the same command (nothing is lost or altered by parsing).

#![no_main]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use cluster::api::request::{parse_delete, parse_get, parse_put, Limits};
use cluster::api::{ApiError, Consistency};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Running out of bytes for the choices just ends the input.
    let _ = run(Unstructured::new(data));
});

fn run(mut u: Unstructured<'_>) -> Result<()> {
    let limits = limits(&mut u)?;
    match u.int_in_range(0..=2u8)? {
        0 => put(u.take_rest(), &limits),
        which => {
            // Axum hands the handler the query as `&str`, or none at all.
            let query = if u.arbitrary::<bool>()? { Some(String::from_utf8_lossy(u.take_rest())) } else { None };
            if which == 1 {
                get(query.as_deref(), &limits)
            } else {
                delete(query.as_deref(), &limits)
            }
        }
    }
    Ok(())
}

/// Limits that `Config::validate` accepts: a key limit of at least one
/// byte (no upper bound there), a value limit of at most 16 MiB. Mostly
/// small ones, so that inputs reach the edges.
fn limits(u: &mut Unstructured<'_>) -> Result<Limits> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Limits::default(),
        1 => Limits { max_key_bytes: u.int_in_range(1..=16)?, max_value_bytes: u.int_in_range(0..=16)? },
        2 => Limits { max_key_bytes: u.int_in_range(1..=4096)?, max_value_bytes: u.int_in_range(0..=4096)? },
        _ => Limits {
            max_key_bytes: u.int_in_range(1..=usize::MAX)?,
            max_value_bytes: u.int_in_range(0..=16 * 1024 * 1024)?,
        },
    })
}

fn refused(error: &ApiError, input: &dyn std::fmt::Debug) {
    let status = error.status.as_u16();
    assert!(status == 400 || status == 413, "a refusal must be a client error, got {status} for {input:?}: {error:?}");
}

fn put(body: &[u8], limits: &Limits) {
    // The server refuses a larger body before parsing it (413).
    if body.len() > limits.max_put_body_bytes() {
        return;
    }
    let command = match parse_put(body, limits) {
        Ok(command) => command,
        Err(error) => return refused(&error, &String::from_utf8_lossy(body)),
    };
    assert!(
        limits.refusal(command.key.as_bytes(), &command.value).is_none(),
        "accepted beyond {limits:?}: {command:?}"
    );
    assert_ne!(command.ttl_secs, Some(0), "a ttl of 0 was accepted");
    let mut again = serde_json::json!({ "key": command.key, "value": BASE64.encode(&command.value) });
    if let Some(ttl) = command.ttl_secs {
        again["ttl"] = ttl.into();
    }
    let again = serde_json::to_vec(&again).expect("a JSON value serializes");
    assert!(again.len() <= limits.max_put_body_bytes(), "a valid put's body is over the body limit: {command:?}");
    assert_eq!(parse_put(&again, limits), Ok(command), "written back out: {}", String::from_utf8_lossy(&again));
}

/// Every byte of `text` as `%XX`: the most a client may escape.
fn escaped(text: &str) -> String {
    text.bytes().map(|byte| format!("%{byte:02X}")).collect()
}

fn get(query: Option<&str>, limits: &Limits) {
    let command = match parse_get(query, limits) {
        Ok(command) => command,
        Err(error) => return refused(&error, &query),
    };
    assert!(limits.refusal(command.key.as_bytes(), &[]).is_none(), "accepted beyond {limits:?}: {command:?}");
    if let Some(ms) = command.min_timestamp_ms {
        assert!((1..=i64::MAX as u64).contains(&ms), "min_timestamp {ms} accepted");
    }
    let mut again = format!("key={}", escaped(&command.key));
    if command.consistency == Consistency::Strong {
        again.push_str("&consistency=strong");
    }
    if let Some(ms) = command.min_timestamp_ms {
        again.push_str(&format!("&min_timestamp={ms}"));
    }
    assert_eq!(parse_get(Some(&again), limits), Ok(command), "written back out: {again}");
}

fn delete(query: Option<&str>, limits: &Limits) {
    let command = match parse_delete(query, limits) {
        Ok(command) => command,
        Err(error) => return refused(&error, &query),
    };
    assert!(limits.refusal(command.key.as_bytes(), &[]).is_none(), "accepted beyond {limits:?}: {command:?}");
    let again = format!("key={}", escaped(&command.key));
    assert_eq!(parse_delete(Some(&again), limits), Ok(command), "written back out: {again}");
}
