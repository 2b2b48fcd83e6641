//! What a report shows, computed from the history: one sample per client
//! operation, the fault windows, and the figures per time bucket and per
//! phase (healthy or under a fault). Pure: no I/O, no drawing.

use crate::checker::ops::{completed, Completed};
use crate::history::{Event, EventType, Process};
use crate::model::register::shown;
use crate::nemesis::describe;
use std::collections::HashMap;
use std::sync::Arc;

/// How an operation ended, as docs/SPEC.md section 3 names it; `Info` also stands
/// for operations that never completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Ok,
    Fail,
    Info,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Fail, Outcome::Info];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// One client operation, as plotted. Small on purpose (no text of its
/// own): a run of an hour has tens of millions of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub process: u64,
    /// "put", "delete", "get strong", "get eventual", "get session";
    /// shared by every sample of the kind.
    pub kind: Arc<str>,
    pub outcome: Outcome,
    pub invoke_s: f64,
    /// `None` when it never completed.
    pub complete_s: Option<f64>,
    /// History index of the invocation.
    pub index: u64,
    /// Its key and words, for the operations an anomaly's timeline draws
    /// ([`Samples::detail`]); `None` for the rest.
    pub detail: Option<Box<Detail>>,
}

/// What a timeline shows of an operation besides its times.
#[derive(Clone, Debug, PartialEq)]
pub struct Detail {
    pub key: String,
    /// "put v12", "get strong → v9".
    pub description: String,
}

impl Sample {
    pub fn latency_ms(&self) -> Option<f64> {
        self.complete_s.map(|done| ((done - self.invoke_s) * 1000.0).max(0.001))
    }
}

/// A fault from its start event to the heal after it.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    /// The family: "partition", "kill", "pause", "clock", "loss", "delay".
    pub kind: String,
    /// What exactly: the partition shape, the nodes, the offset.
    pub detail: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// The kind label of an operation (consistency matters for gets).
/// The runner's final reads use process numbers from a million up.
pub const FIRST_FINAL_READ_PROCESS: u64 = 1_000_000;

fn kind_of(op: &Completed) -> String {
    if op.process >= FIRST_FINAL_READ_PROCESS {
        return "final read".into();
    }
    match (op.f.as_str(), op.consistency.as_deref()) {
        ("get", Some("eventual")) if op.min_timestamp.is_some() => "get session".into(),
        ("get", Some(consistency)) => format!("get {consistency}"),
        (f, _) => f.to_owned(),
    }
}

fn describe(op: &Completed, kind: &str) -> String {
    let value = op.value.as_deref().map(shown);
    match (op.f.as_str(), op.kind, value) {
        ("get", EventType::Ok, Some(v)) => format!("{kind} → {v}"),
        ("get", EventType::Ok, None) => format!("{kind} → not found"),
        ("put", _, Some(v)) => format!("put {v}"),
        _ => kind.to_owned(),
    }
}

/// Every client operation of the history, in invocation order, each
/// with its detail.
pub fn samples(events: &[Event]) -> Vec<Sample> {
    let mut samples = Samples::default();
    samples.add(events, &|_| true);
    samples.finish()
}

/// Samples gathered a group of keys at a time (see
/// [`crate::history::shards`]).
#[derive(Debug, Default)]
pub struct Samples {
    kinds: HashMap<String, Arc<str>>,
    samples: Vec<Sample>,
}

impl Samples {
    /// Adds the operations of `events`, with details for those on the
    /// keys `detailed` accepts.
    pub fn add(&mut self, events: &[Event], detailed: &dyn Fn(&str) -> bool) {
        for op in completed(events) {
            let kind = kind_of(&op);
            let detail =
                detailed(&op.key).then(|| Box::new(Detail { description: describe(&op, &kind), key: op.key.clone() }));
            let kind = match self.kinds.get(&kind) {
                Some(shared) => shared.clone(),
                None => self.kinds.entry(kind.clone()).or_insert_with(|| Arc::from(kind)).clone(),
            };
            self.samples.push(Sample {
                process: op.process,
                kind,
                outcome: match op.kind {
                    EventType::Ok => Outcome::Ok,
                    EventType::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                },
                invoke_s: op.invoke_ns as f64 / 1e9,
                complete_s: op.complete_ns.map(|ns| ns as f64 / 1e9),
                index: op.index,
                detail,
            });
        }
    }

    /// Every sample so far, in invocation order.
    pub fn finish(mut self) -> Vec<Sample> {
        self.samples.sort_unstable_by_key(|s| s.index);
        self.samples
    }
}

/// Gives the samples of `events`' operations on the keys `keys` accepts
/// their details; `samples` are in invocation order ([`Samples::finish`]).
pub fn detail(samples: &mut [Sample], events: &[Event], keys: &dyn Fn(&str) -> bool) {
    for op in completed(events).into_iter().filter(|op| keys(&op.key)) {
        if let Ok(at) = samples.binary_search_by_key(&op.index, |s| s.index) {
            let description = describe(&op, &samples[at].kind);
            samples[at].detail = Some(Box::new(Detail { key: op.key, description }));
        }
    }
}

/// The sample with history index `index`, in samples in invocation order.
pub fn by_index(samples: &[Sample], index: u64) -> Option<&Sample> {
    samples.binary_search_by_key(&index, |s| s.index).ok().map(|at| &samples[at])
}

/// The fault windows: each start event to the next heal (or to `end_s`
/// when the history stops before one).
pub fn fault_windows(events: &[Event], end_s: f64) -> Vec<FaultWindow> {
    let mut open: Vec<FaultWindow> = Vec::new();
    let mut closed = Vec::new();
    for event in events.iter().filter(|e| e.process == Process::NEMESIS) {
        let at_s = event.time as f64 / 1e9;
        match describe::fault_kind(&event.f) {
            Some(kind) => open.push(FaultWindow {
                kind: kind.to_owned(),
                detail: describe::detail(&event.f, event.value.json()),
                start_s: at_s,
                end_s: at_s,
            }),
            None if event.f == "heal" => closed.extend(open.drain(..).map(|w| FaultWindow { end_s: at_s, ..w })),
            None => {}
        }
    }
    closed.extend(open.into_iter().map(|w| FaultWindow { end_s, ..w }));
    closed.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    closed
}

/// The nemesis events as (time in s, `f`), for markers on timelines.
pub fn nemesis_marks(events: &[Event]) -> Vec<(f64, String)> {
    events.iter().filter(|e| e.process == Process::NEMESIS).map(|e| (e.time as f64 / 1e9, e.f.clone())).collect()
}

/// The phase an operation ran in: the fault kinds active at its invocation
/// ("partition", "kill+pause"), or "healthy".
pub fn phase(faults: &[FaultWindow], at_s: f64) -> String {
    let mut active: Vec<&str> =
        faults.iter().filter(|f| f.start_s <= at_s && at_s < f.end_s).map(|f| f.kind.as_str()).collect();
    active.sort_unstable();
    active.dedup();
    if active.is_empty() {
        "healthy".to_owned()
    } else {
        active.join("+")
    }
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

/// A bucket width giving about `target` buckets over `duration_s`, rounded
/// to a readable step.
pub fn bucket_width_s(duration_s: f64, target: usize) -> f64 {
    let raw = (duration_s / target.max(1) as f64).max(0.1);
    [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|&step| step >= raw)
        .unwrap_or(raw.ceil())
}

/// Latency quantiles of one kind of operation in one time bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantilePoint {
    pub at_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Quantiles per bucket of the completed operations of `kind`, by
/// completion time.
pub fn quantiles_over_time(samples: &[Sample], kind: &str, width_s: f64) -> Vec<QuantilePoint> {
    let mut buckets: std::collections::BTreeMap<u64, Vec<f64>> = std::collections::BTreeMap::new();
    for s in samples.iter().filter(|s| &*s.kind == kind) {
        if let (Some(done), Some(latency)) = (s.complete_s, s.latency_ms()) {
            buckets.entry((done / width_s) as u64).or_default().push(latency);
        }
    }
    buckets
        .into_iter()
        .map(|(bucket, mut latencies)| {
            latencies.sort_by(|a, b| a.total_cmp(b));
            let q = |q: f64| quantile(&latencies, q).unwrap_or(0.0);
            QuantilePoint {
                at_s: (bucket as f64 + 0.5) * width_s,
                p50_ms: q(0.5),
                p95_ms: q(0.95),
                p99_ms: q(0.99),
                max_ms: q(1.0),
            }
        })
        .collect()
}

/// Completions per second of each outcome, per bucket, plotted at each
/// bucket's middle. The last bucket may be short: it is divided by its
/// real length. Operations that never completed are not completions.
pub fn throughput(samples: &[Sample], width_s: f64, end_s: f64) -> Vec<(f64, [f64; 3])> {
    let buckets = ((end_s / width_s).ceil() as usize).max(1);
    let mut counts = vec![[0f64; 3]; buckets];
    for s in samples {
        let Some(at) = s.complete_s else { continue };
        let bucket = ((at / width_s) as usize).min(buckets - 1);
        counts[bucket][s.outcome as usize] += 1.0;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let from = i as f64 * width_s;
            let to = (from + width_s).min(end_s.max(from + 1e-3));
            (f64::midpoint(from, to), c.map(|n| n / (to - from)))
        })
        .collect()
}

/// One row of the availability table.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseRow {
    pub kind: String,
    pub phase: String,
    pub total: usize,
    pub by_outcome: [usize; 3],
    /// Over successful operations.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl PhaseRow {
    /// Successful share of the operations.
    pub fn availability(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.by_outcome[Outcome::Ok as usize] as f64 / self.total as f64
    }
}

/// Availability and latency per kind of operation and phase, healthy first.
pub fn phase_table(samples: &[Sample], faults: &[FaultWindow]) -> Vec<PhaseRow> {
    /// Operations, counts by outcome, and successful latencies of a group.
    type Group = (usize, [usize; 3], Vec<f64>);
    let mut groups: std::collections::BTreeMap<(String, String), Group> = std::collections::BTreeMap::new();
    for s in samples {
        let phase = phase(faults, s.invoke_s);
        // "healthy" sorts first among a kind's phases.
        let phase_key = if phase == "healthy" { String::new() } else { phase };
        let entry = groups.entry((s.kind.to_string(), phase_key)).or_default();
        entry.0 += 1;
        entry.1[s.outcome as usize] += 1;
        if s.outcome == Outcome::Ok {
            entry.2.extend(s.latency_ms());
        }
    }
    groups
        .into_iter()
        .map(|((kind, phase), (total, by_outcome, mut latencies))| {
            latencies.sort_by(|a, b| a.total_cmp(b));
            PhaseRow {
                kind,
                phase: if phase.is_empty() { "healthy".into() } else { phase },
                total,
                by_outcome,
                p50_ms: quantile(&latencies, 0.5),
                p99_ms: quantile(&latencies, 0.99),
                max_ms: quantile(&latencies, 1.0),
            }
        })
        .collect()
}

/// Counts by kind of operation and outcome.
pub fn counts(samples: &[Sample]) -> Vec<(String, [usize; 3])> {
    let mut counts: std::collections::BTreeMap<&str, [usize; 3]> = std::collections::BTreeMap::new();
    for s in samples {
        counts.entry(&*s.kind).or_default()[s.outcome as usize] += 1;
    }
    counts.into_iter().map(|(k, c)| (k.to_owned(), c)).collect()
}

/// What a downsampled scatter shows: every `stride`-th operation of each
/// kind of outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Downsampled<'a> {
    pub shown: Vec<&'a Sample>,
    /// Per outcome (ok, fail, info): how many there are, and the stride.
    pub strides: [(usize, usize); 3],
}

impl Downsampled<'_> {
    pub fn is_complete(&self) -> bool {
        self.strides.iter().all(|(_, stride)| *stride == 1)
    }
}

/// At most `max` samples for a scatter plot, spread evenly over the run:
/// failed and unknown operations first (up to half of `max` between them,
/// all of them when they fit), the successful ones in the rest.
pub fn downsample(samples: &[Sample], max: usize) -> Downsampled<'_> {
    let of = |outcome: Outcome| samples.iter().filter(move |s| s.outcome == outcome);
    let count = |outcome: Outcome| of(outcome).count();
    let (ok, fail, info) = (count(Outcome::Ok), count(Outcome::Fail), count(Outcome::Info));
    let stride = |n: usize, room: usize| n.div_ceil(room.max(1)).max(1);
    let bad_room = (max / 2).max(max.saturating_sub(ok));
    let (fail_stride, info_stride) =
        if fail + info <= bad_room { (1, 1) } else { (stride(fail, bad_room / 2), stride(info, bad_room / 2)) };
    let mut shown: Vec<&Sample> = of(Outcome::Fail).step_by(fail_stride).collect();
    shown.extend(of(Outcome::Info).step_by(info_stride));
    let ok_stride = stride(ok, max.saturating_sub(shown.len()));
    shown.extend(of(Outcome::Ok).step_by(ok_stride));
    shown.sort_by(|a, b| a.invoke_s.total_cmp(&b.invoke_s));
    Downsampled { shown, strides: [(ok, ok_stride), (fail, fail_stride), (info, info_stride)] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Value;

    fn nemesis(time_s: f64, f: &str, value: serde_json::Value) -> Event {
        let mut e = Event::new(Process::NEMESIS, EventType::Info, f);
        e.time = (time_s * 1e9) as u64;
        e.value = Value::Present(value);
        e
    }

    fn sample(invoke_s: f64, outcome: Outcome) -> Sample {
        Sample {
            process: 0,
            kind: "put".into(),
            outcome,
            invoke_s,
            complete_s: Some(invoke_s + 0.01),
            index: (invoke_s * 1000.0) as u64,
            detail: Some(Box::new(Detail { key: "k".into(), description: "put v1".into() })),
        }
    }

    #[test]
    fn fault_windows_run_from_start_to_heal_or_end() {
        let events = [
            nemesis(2.0, "start-partition", serde_json::json!({"shape": "halves"})),
            nemesis(4.0, "heal", serde_json::json!({})),
            nemesis(6.0, "kill", serde_json::json!({"nodes": ["n1", "n2"]})),
        ];
        let windows = fault_windows(&events, 9.0);
        assert_eq!(windows.len(), 2);
        assert_eq!((windows[0].kind.as_str(), windows[0].detail.as_str()), ("partition", "halves"));
        assert_eq!((windows[0].start_s, windows[0].end_s), (2.0, 4.0));
        assert_eq!((windows[1].kind.as_str(), windows[1].detail.as_str(), windows[1].end_s), ("kill", "n1 n2", 9.0));
        assert_eq!(phase(&windows, 3.0), "partition");
        assert_eq!(phase(&windows, 5.0), "healthy");
        assert_eq!(phase(&windows, 8.9), "kill");
    }

    #[test]
    fn membership_changes_are_bands_that_say_what_changed() {
        let events = [
            nemesis(1.0, "join", serde_json::json!({"fault": "join", "node": "n4"})),
            nemesis(2.0, "heal", serde_json::json!({})),
            nemesis(3.0, "replace", serde_json::json!({"node": "n2", "by": "n1", "added": "n5"})),
            nemesis(5.0, "heal", serde_json::json!({})),
            nemesis(6.0, "slow-disk", serde_json::json!({"nodes": ["n1"], "delay_ms": 900})),
        ];
        let windows = fault_windows(&events, 7.0);
        let seen: Vec<(&str, &str)> = windows.iter().map(|w| (w.kind.as_str(), w.detail.as_str())).collect();
        assert_eq!(
            seen,
            [
                ("membership", "join n4"),
                ("membership", "replace n2 by n5 (removed by n1)"),
                ("slow-disk", "n1, +900 ms")
            ]
        );
        assert_eq!(phase(&windows, 4.0), "membership");
    }

    #[test]
    fn downsampling_keeps_every_failure_and_says_by_how_much() {
        let samples: Vec<Sample> = (0..10_000)
            .map(|i| sample(i as f64 / 1000.0, if i % 100 == 0 { Outcome::Info } else { Outcome::Ok }))
            .collect();
        let all = downsample(&samples, 20_000);
        assert!(all.is_complete() && all.shown.len() == 10_000);
        let some = downsample(&samples, 1_000);
        assert!(some.shown.len() <= 1_000 && !some.is_complete(), "{} shown", some.shown.len());
        assert_eq!(some.shown.iter().filter(|s| s.outcome == Outcome::Info).count(), 100);
        assert_eq!(some.strides[Outcome::Info as usize], (100, 1));
    }

    #[test]
    fn downsampling_spreads_failures_over_the_whole_run_when_they_are_many() {
        let samples: Vec<Sample> = (0..21_000)
            .map(|i| sample(i as f64 / 1000.0, if i % 7 < 5 { Outcome::Fail } else { Outcome::Ok }))
            .collect();
        let d = downsample(&samples, 2_000);
        assert!(d.shown.len() <= 2_000 && !d.is_complete());
        let fails: Vec<&&Sample> = d.shown.iter().filter(|s| s.outcome == Outcome::Fail).collect();
        assert!(fails.last().unwrap().invoke_s > 20.0, "late failures are drawn too");
        assert!(d.strides[Outcome::Fail as usize].1 > 1, "and the stride says they were thinned");
    }

    #[test]
    fn phase_table_splits_healthy_from_faulty_and_counts_outcomes() {
        let faults = [FaultWindow { kind: "partition".into(), detail: String::new(), start_s: 1.0, end_s: 2.0 }];
        let samples = [sample(0.5, Outcome::Ok), sample(1.5, Outcome::Ok), sample(1.6, Outcome::Info)];
        let rows = phase_table(&samples, &faults);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].phase.as_str(), rows[0].total, rows[0].availability()), ("healthy", 1, 1.0));
        assert_eq!((rows[1].phase.as_str(), rows[1].total, rows[1].by_outcome), ("partition", 2, [1, 0, 1]));
        assert_eq!(rows[1].availability(), 0.5);
    }

    #[test]
    fn throughput_counts_completions_per_second() {
        let samples: Vec<Sample> = (0..40).map(|i| sample(i as f64 * 0.05, Outcome::Ok)).collect();
        let buckets = throughput(&samples, 1.0, 2.0);
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets.iter().map(|(_, c)| c[0]).sum::<f64>(), 40.0);
        // A short last bucket is a rate over its own length.
        let buckets = throughput(&samples, 1.5, 2.0);
        assert_eq!(buckets.len(), 2);
        assert!((buckets[0].1[0] - 20.0).abs() < 1e-9 && (buckets[1].1[0] - 20.0).abs() < 1e-9, "{buckets:?}");
        assert!((buckets[1].0 - 1.75).abs() < 1e-9);
    }
}
