//! Session guarantees of eventual reads, per key and per session (a client
//! process), judged from the versions reads observed (values are unique, so
//! a read names the write it saw; its server timestamp orders it):
//!
//! - read your writes: a session read never shows a version older than the
//!   session's own acknowledged write;
//! - monotonic reads: a session's reads never go back in version;
//! - monotonic writes: a session's acknowledged writes get increasing
//!   versions;
//! - writes follow reads: a session's write gets a version above every
//!   version the session read before it;
//! - and the timestamp a read reports belongs to the write it observed.
//!
//! Reads count when they carried `min_timestamp` or were strong; plain
//! eventual reads promise nothing (see [`super::staleness`]).
//!
//! A read that finds no version at all (not found, no timestamp) is judged
//! by what it shows, not by its missing version: once a tombstone or an
//! expired value is compacted, the key has no version left, and
//! docs/SPEC.md section 1 answers such a read with a plain 404 even when
//! it carries `min_timestamp`. So it keeps the guarantees when a delete or
//! a put with a TTL, at or above the session's version, may have been the
//! key's last write before it.

use super::ops::{completed, Completed};
use super::Tally;
use crate::history::{Event, EventType};
use crate::model::register::shown;
use crate::verdict::{CheckResult, Validity};
use std::collections::HashMap;

/// Writes after which a key reads as nothing (deletes, and puts with a TTL
/// once they expire), per key: when each was invoked, and its timestamp if
/// acknowledged (`None`: unknown, it may have any).
fn absences(ops: &[Completed]) -> HashMap<&str, Vec<(u64, Option<u64>)>> {
    let mut by_key: HashMap<&str, Vec<(u64, Option<u64>)>> = HashMap::new();
    for op in ops.iter().filter(|op| op.kind != EventType::Fail) {
        if op.f == "delete" || (op.f == "put" && op.ttl.is_some()) {
            let timestamp = if op.ok() { op.timestamp } else { None };
            by_key.entry(op.key.as_str()).or_default().push((op.invoke_ns, timestamp));
        }
    }
    by_key
}

/// Whether a read of nothing without a version, completed at
/// `complete_ns`, can show the compacted remains of a write at or above
/// `floor` (the session's version of the key).
fn compacted_absence(absences: Option<&Vec<(u64, Option<u64>)>>, floor: u64, complete_ns: u64) -> bool {
    floor == 0
        || absences.is_some_and(|writes| {
            writes.iter().any(|(invoke_ns, timestamp)| *invoke_ns < complete_ns && timestamp.is_none_or(|t| t >= floor))
        })
}

#[derive(Default)]
struct Session {
    /// Highest version this session wrote (acknowledged).
    wrote: u64,
    /// Highest version this session read.
    read: u64,
}

/// The session check fed a group of keys at a time (see [`Tally`]);
/// [`check`] is one group.
#[derive(Debug, Default)]
pub struct Sessions {
    /// (completion time, index, evidence), sorted at the end into the
    /// order the completions happened.
    violations: Vec<(u64, u64, serde_json::Value)>,
    checked_reads: u64,
}

pub fn check(events: &[Event]) -> CheckResult {
    super::one_group(Box::<Sessions>::default(), events)
}

impl Tally for Sessions {
    fn add(&mut self, events: &[Event]) {
        let (violations, checked_reads) = judge(events);
        self.violations.extend(violations);
        self.checked_reads += checked_reads;
    }

    fn finish(self: Box<Self>) -> CheckResult {
        let Sessions { mut violations, checked_reads } = *self;
        // Stable: one operation's violations keep their order.
        violations.sort_by_key(|(complete_ns, index, _)| (*complete_ns, *index));
        let violations: Vec<serde_json::Value> = violations.into_iter().map(|(_, _, v)| v).collect();
        let (valid, reason) = match violations.first() {
            Some(first) => (
                Validity::Invalid,
                format!("{} violations; {}", violations.len(), first["explanation"].as_str().unwrap_or("")),
            ),
            None if checked_reads == 0 => (Validity::Unknown, "no session read to judge".to_owned()),
            None => (Validity::Valid, format!("{checked_reads} session reads kept all four guarantees")),
        };
        let evidence = serde_json::json!({"violations": violations, "session_reads": checked_reads});
        CheckResult { checker: "session".into(), valid, reason, evidence }
    }
}

/// The violations of one group of keys, and the session reads judged.
fn judge(events: &[Event]) -> (Vec<(u64, u64, serde_json::Value)>, u64) {
    let ops = completed(events);
    let put_timestamps: HashMap<(&str, &str), u64> = ops
        .iter()
        .filter(|op| op.f == "put" && op.ok())
        .filter_map(|op| Some(((op.key.as_str(), op.value.as_deref()?), op.timestamp?)))
        .collect();
    let absences = absences(&ops);
    // Completions in the order they happened.
    let mut by_completion: Vec<&Completed> = ops.iter().filter(|op| op.ok()).collect();
    by_completion.sort_by_key(|op| op.complete_ns);
    let mut sessions: HashMap<(u64, &str), Session> = HashMap::new();
    let mut violations = Vec::new();
    let mut checked_reads = 0;
    for op in by_completion {
        let session = sessions.entry((op.process, op.key.as_str())).or_default();
        let ts = op.timestamp.unwrap_or(0);
        let mut violation = |guarantee: &str, detail: String| {
            let evidence = serde_json::json!({"guarantee": guarantee, "key": op.key, "process": op.process,
                "index": op.index, "explanation": format!("{guarantee}: process {} on {}: {detail}", op.process, op.key)});
            violations.push((op.complete_ns.unwrap_or(u64::MAX), op.index, evidence));
        };
        if op.is_write() {
            if op.timestamp.is_some() && ts <= session.wrote {
                violation(
                    "monotonic writes",
                    format!("write got version {ts}, not above its earlier write's {}", session.wrote),
                );
            }
            if op.timestamp.is_some() && ts <= session.read {
                violation(
                    "writes follow reads",
                    format!("write got version {ts}, not above the {} it had read", session.read),
                );
            }
            session.wrote = session.wrote.max(ts);
            continue;
        }
        let session_read = op.min_timestamp.is_some() || op.consistency.as_deref() == Some("strong");
        if op.f == "get" && session_read {
            checked_reads += 1;
            let seen = op.value.as_deref().map_or("nothing".to_owned(), shown);
            let floor = session.wrote.max(session.read);
            let no_version = op.value.is_none() && op.timestamp.is_none();
            let complete_ns = op.complete_ns.unwrap_or(u64::MAX);
            if no_version && compacted_absence(absences.get(op.key.as_str()), floor, complete_ns) {
                // What it shows (nothing) is what the session's version, or
                // a later delete or expiry, left; its version is compacted.
                continue;
            }
            if ts < session.wrote {
                violation(
                    "read your writes",
                    format!("read {seen} (version {ts}) after writing version {}", session.wrote),
                );
            }
            if ts < session.read {
                violation(
                    "monotonic reads",
                    format!("read {seen} (version {ts}) after reading version {}", session.read),
                );
            }
            if let (Some(value), Some(reported)) = (op.value.as_deref(), op.timestamp) {
                if let Some(written) = put_timestamps.get(&(op.key.as_str(), value)) {
                    if *written != reported {
                        violation(
                            "timestamp cross-check",
                            format!("read {seen} reported version {reported}, but that write got {written}"),
                        );
                    }
                }
            }
        }
        if op.f == "get" {
            session.read = session.read.max(ts);
        }
    }
    (violations, checked_reads)
}
