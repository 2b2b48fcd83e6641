//! Staleness of plain eventual reads (no `min_timestamp`): how often, and by
//! how much, a read was behind the newest write acknowledged before it
//! began — in versions and in milliseconds since the first newer write was
//! acknowledged (the t-visibility of probabilistically bounded staleness).
//! Figures, not a pass/fail: eventual reads promise nothing.

use super::ops::completed;
use super::Tally;
use crate::history::Event;
use crate::verdict::{CheckResult, Validity};
use std::collections::BTreeMap;

/// The staleness figures gathered a group of keys at a time (see
/// [`Tally`]); [`check`] is one group.
#[derive(Debug, Default)]
pub struct Staleness {
    reads: u64,
    stale: u64,
    versions_behind: Vec<u64>,
    ms_behind: Vec<f64>,
}

pub fn check(events: &[Event]) -> CheckResult {
    super::one_group(Box::<Staleness>::default(), events)
}

impl Tally for Staleness {
    fn add(&mut self, events: &[Event]) {
        measure(events, self);
    }

    fn finish(self: Box<Self>) -> CheckResult {
        let Staleness { reads, stale, mut versions_behind, mut ms_behind } = *self;
        verdict(reads, stale, &mut versions_behind, &mut ms_behind)
    }
}

fn measure(events: &[Event], into: &mut Staleness) {
    let Staleness { reads, stale, versions_behind, ms_behind } = into;
    let ops = completed(events);
    let mut writes: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new(); // key → (acked at ns, version)
    for op in ops.iter().filter(|op| op.is_write() && op.ok()) {
        if let (Some(done), Some(ts)) = (op.complete_ns, op.timestamp) {
            writes.entry(op.key.as_str()).or_default().push((done, ts));
        }
    }
    for read in ops.iter().filter(|op| op.f == "get" && op.ok() && op.consistency.as_deref() == Some("eventual")) {
        if read.min_timestamp.is_some() {
            continue;
        }
        *reads += 1;
        let seen = read.timestamp.unwrap_or(0);
        let newer: Vec<&(u64, u64)> = writes
            .get(read.key.as_str())
            .into_iter()
            .flatten()
            .filter(|(acked, ts)| *acked < read.invoke_ns && *ts > seen)
            .collect();
        if let Some(first_acked) = newer.iter().map(|(acked, _)| *acked).min() {
            *stale += 1;
            versions_behind.push(newer.len() as u64);
            ms_behind.push((read.invoke_ns - first_acked) as f64 / 1e6);
        }
    }
}

fn verdict(reads: u64, stale: u64, versions_behind: &mut [u64], ms_behind: &mut [f64]) -> CheckResult {
    ms_behind.sort_by(|a, b| a.total_cmp(b));
    versions_behind.sort_unstable();
    let quantile =
        |q: f64| (!ms_behind.is_empty()).then(|| ms_behind[((ms_behind.len() - 1) as f64 * q).round() as usize]);
    let share = if reads == 0 { 0.0 } else { stale as f64 / reads as f64 };
    let evidence = serde_json::json!({
        "eventual_reads": reads,
        "stale_reads": stale,
        "stale_share": share,
        "ms_behind": {"p50": quantile(0.5), "p95": quantile(0.95), "p99": quantile(0.99), "max": quantile(1.0)},
        "versions_behind_max": versions_behind.last(),
        "versions_behind_samples": versions_behind,
        "ms_behind_samples": ms_behind,
    });
    let reason = if reads == 0 {
        "no plain eventual reads".to_owned()
    } else {
        format!(
            "{stale} of {reads} plain eventual reads ({:.1}%) were behind; p99 {:.0} ms behind",
            share * 100.0,
            quantile(0.99).unwrap_or(0.0)
        )
    };
    // Figures only: valid unless there was nothing to measure.
    let valid = if reads == 0 { Validity::Unknown } else { Validity::Valid };
    CheckResult { checker: "staleness".into(), valid, reason, evidence }
}
