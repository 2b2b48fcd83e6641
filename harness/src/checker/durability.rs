//! Durability: every acknowledged write is visible in the key's final read,
//! or was overwritten by a write that is not older than it. A final read
//! that shows an older version than an acknowledged write proves the write
//! lost; the lost writes are listed.

use super::ops::{completed, Completed};
use crate::history::Event;
use crate::model::register::shown;
use crate::verdict::{CheckResult, Validity};
use std::collections::BTreeMap;

pub fn check(events: &[Event]) -> CheckResult {
    let ops = completed(events);
    let mut by_key: BTreeMap<&str, Vec<&Completed>> = BTreeMap::new();
    for op in &ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let (mut lost, mut undecided, mut acknowledged) = (Vec::new(), Vec::new(), 0);
    for (key, ops) in &by_key {
        let writes: Vec<&&Completed> = ops.iter().filter(|op| op.is_write() && op.ok()).collect();
        acknowledged += writes.len();
        if writes.is_empty() {
            continue;
        }
        // The final read: the last successful strong read of the key.
        let Some(last) =
            ops.iter().rev().find(|op| op.f == "get" && op.ok() && op.consistency.as_deref() == Some("strong"))
        else {
            undecided.push(key.to_string());
            continue;
        };
        // Version the final read shows: its timestamp, or nothing at all.
        let seen_ts = last.timestamp.unwrap_or(0);
        for write in writes.iter().filter(|w| w.complete_ns < Some(last.invoke_ns)) {
            let Some(written_ts) = write.timestamp else { continue };
            if seen_ts < written_ts {
                let what = match (&write.f[..], &write.value) {
                    ("put", Some(value)) => format!("put of {}", shown(value)),
                    _ => "delete".into(),
                };
                let seen = last.value.as_deref().map_or("nothing".to_owned(), shown);
                lost.push(serde_json::json!({
                    "key": key,
                    "write": what,
                    "write_timestamp": written_ts,
                    "final_read": seen,
                    "final_read_timestamp": last.timestamp,
                    "explanation": format!(
                        "{key}: the {what} acknowledged at {:.3} s (timestamp {written_ts}) is lost: the final read found {seen} (timestamp {})",
                        write.complete_ns.unwrap_or(0) as f64 / 1e9,
                        last.timestamp.map_or("none".into(), |t| t.to_string())
                    ),
                }));
            }
        }
    }
    let evidence = serde_json::json!({"lost": lost, "keys_without_final_read": undecided});
    let (valid, reason) = if let Some(first) = lost.first() {
        (
            Validity::Invalid,
            format!("{} acknowledged writes lost; {}", lost.len(), first["explanation"].as_str().unwrap_or("")),
        )
    } else if !undecided.is_empty() {
        (Validity::Unknown, format!("{} keys have no successful final read", undecided.len()))
    } else {
        (Validity::Valid, format!("all {acknowledged} acknowledged writes on {} keys survived", by_key.len()))
    };
    CheckResult { checker: "durability".into(), valid, reason, evidence }
}
