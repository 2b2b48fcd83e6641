//! TTL: a value put with `ttl` reads as not found from `timestamp + ttl`
//! seconds on (docs/SPEC.md section 1), within a stated tolerance.
//!
//! The server's timestamps are milliseconds of the nodes' clocks; a read's
//! time is the run's wall-clock start plus its offset in the history. So
//! the check assumes the nodes' clocks agree with the harness's (no clock
//! skew nemesis in a TTL run), and allows `tolerance_ms` for the rest.

use super::ops::{completed, Completed};
use super::Tally;
use crate::history::Event;
use crate::model::register::shown;
use crate::verdict::{CheckResult, Validity};
use std::collections::HashMap;

/// The TTL check fed a group of keys at a time (see [`Tally`]);
/// [`check`] is one group.
#[derive(Debug)]
pub struct Ttl {
    start_unix_ms: u64,
    tolerance_ms: u64,
    /// (the read's index, evidence).
    violations: Vec<(u64, serde_json::Value)>,
    checked: u64,
}

impl Ttl {
    pub fn new(start_unix_ms: u64, tolerance_ms: u64) -> Ttl {
        Ttl { start_unix_ms, tolerance_ms, violations: Vec::new(), checked: 0 }
    }
}

pub fn check(events: &[Event], start_unix_ms: u64, tolerance_ms: u64) -> CheckResult {
    super::one_group(Box::new(Ttl::new(start_unix_ms, tolerance_ms)), events)
}

impl Tally for Ttl {
    fn add(&mut self, events: &[Event]) {
        judge(events, self);
    }

    fn finish(self: Box<Self>) -> CheckResult {
        let Ttl { tolerance_ms, mut violations, checked, .. } = *self;
        violations.sort_by_key(|(index, _)| *index);
        let violations: Vec<serde_json::Value> = violations.into_iter().map(|(_, v)| v).collect();
        let (valid, reason) = match violations.first() {
            Some(first) => (
                Validity::Invalid,
                format!("{} reads broke a TTL; {}", violations.len(), first["explanation"].as_str().unwrap_or("")),
            ),
            None if checked == 0 => (Validity::Unknown, "no read of a value with a TTL".to_owned()),
            None => {
                (Validity::Valid, format!("{checked} reads of values with TTLs expired on time (±{tolerance_ms} ms)"))
            }
        };
        let evidence =
            serde_json::json!({"violations": violations, "checked_reads": checked, "tolerance_ms": tolerance_ms});
        CheckResult { checker: "ttl".into(), valid, reason, evidence }
    }
}

fn judge(events: &[Event], into: &mut Ttl) {
    let Ttl { start_unix_ms, tolerance_ms, violations, checked } = into;
    let (start_unix_ms, tolerance_ms) = (*start_unix_ms, *tolerance_ms);
    let ops = completed(events);
    // (key, version timestamp) → expiry, for acknowledged puts with a TTL.
    let expiries: HashMap<(&str, u64), (u64, Option<&str>)> = ops
        .iter()
        .filter(|op| op.f == "put" && op.ok())
        .filter_map(|op| {
            let (ts, ttl) = (op.timestamp?, op.ttl?);
            Some(((op.key.as_str(), ts), (ts + u64::from(ttl) * 1000, op.value.as_deref())))
        })
        .collect();
    let wall_ms = |ns: u64| start_unix_ms + ns / 1_000_000;
    for read in ops.iter().filter(|op: &&Completed| op.f == "get" && op.ok()) {
        let Some(ts) = read.timestamp else { continue };
        let Some((expiry, value)) = expiries.get(&(read.key.as_str(), ts)) else { continue };
        *checked += 1;
        let shown_value = value.map_or("?".to_owned(), shown);
        match &read.value {
            Some(_) if wall_ms(read.invoke_ns) > expiry + tolerance_ms => {
                let late = wall_ms(read.invoke_ns) - expiry;
                violations.push((
                    read.index,
                    serde_json::json!({"key": read.key, "index": read.index, "explanation":
                    format!("{}: {shown_value} was still readable {late} ms after it expired", read.key)}),
                ));
            }
            None if read.complete_ns.is_some_and(|done| wall_ms(done) + tolerance_ms < *expiry) => {
                let early = expiry - wall_ms(read.complete_ns.unwrap_or(0));
                violations.push((
                    read.index,
                    serde_json::json!({"key": read.key, "index": read.index, "explanation":
                    format!("{}: {shown_value} read as not found {early} ms before it expired", read.key)}),
                ));
            }
            _ => {}
        }
    }
}
