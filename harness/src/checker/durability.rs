//! Durability: every acknowledged write is visible in the key's final read,
//! or was overwritten by a write that is later or concurrent with it (in
//! real time: not acknowledged before it began). A final read that shows a
//! write acknowledged before an acknowledged write began, proves the later
//! write lost. Server timestamps are not trusted for this: they are what a
//! buggy store gets wrong. The lost writes are listed.

use super::ops::{completed, Completed};
use crate::history::Event;
use crate::model::register::shown;
use crate::verdict::{CheckResult, Validity};
use std::collections::BTreeMap;

fn strictly_before(a: &Completed, b: &Completed) -> bool {
    a.complete_ns.is_some_and(|done| done < b.invoke_ns) && a.ok()
}

fn describe(write: &Completed) -> String {
    match (&write.f[..], &write.value) {
        ("put", Some(value)) => format!("put of {}", shown(value)),
        _ => "delete".into(),
    }
}

/// The acknowledged writes of one key that its final read proves lost.
fn lost_writes<'a>(ops: &[&'a Completed], last: &Completed) -> Vec<&'a Completed> {
    let writes: Vec<&Completed> = ops.iter().copied().filter(|op| op.is_write()).collect();
    let acknowledged = writes.iter().copied().filter(|w| w.ok() && w.complete_ns < Some(last.invoke_ns));
    match &last.value {
        Some(seen) => {
            let Some(source) = writes.iter().find(|w| w.f == "put" && w.value.as_ref() == Some(seen)) else {
                return Vec::new(); // a value never written: the linearizability checker's to report
            };
            acknowledged.filter(|w| !std::ptr::eq(*w, *source) && strictly_before(source, w)).collect()
        }
        None => {
            let deletes: Vec<&&Completed> = writes.iter().filter(|w| w.f == "delete").collect();
            acknowledged.filter(|w| w.f == "put" && deletes.iter().all(|d| strictly_before(d, w))).collect()
        }
    }
}

/// The durability check fed a group of keys at a time (see
/// [`super::Tally`]); [`check`] is one group.
#[derive(Debug, Default)]
pub struct Durability {
    /// (key, the lost write's index, its evidence).
    lost: Vec<(String, u64, serde_json::Value)>,
    undecided: Vec<String>,
    acknowledged: usize,
    keys: usize,
}

pub fn check(events: &[Event]) -> CheckResult {
    super::one_group(Box::<Durability>::default(), events)
}

impl super::Tally for Durability {
    fn add(&mut self, events: &[Event]) {
        let ops = completed(events);
        let mut by_key: BTreeMap<&str, Vec<&Completed>> = BTreeMap::new();
        for op in &ops {
            by_key.entry(op.key.as_str()).or_default().push(op);
        }
        self.keys += by_key.len();
        for (key, ops) in &by_key {
            self.acknowledged += ops.iter().filter(|op| op.is_write() && op.ok()).count();
            if !ops.iter().any(|op| op.is_write()) {
                continue;
            }
            // The final read: the last successful strong read of the key.
            let Some(last) =
                ops.iter().rev().find(|op| op.f == "get" && op.ok() && op.consistency.as_deref() == Some("strong"))
            else {
                self.undecided.push(key.to_string());
                continue;
            };
            let seen = last.value.as_deref().map_or("nothing".to_owned(), shown);
            for write in lost_writes(ops, last) {
                self.lost.push((key.to_string(), write.index, lost_evidence(key, write, last, &seen)));
            }
        }
    }

    fn finish(self: Box<Self>) -> CheckResult {
        let Durability { mut lost, mut undecided, acknowledged, keys } = *self;
        // Key order, as one group would give: the verdict does not depend
        // on how the history was split.
        lost.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        undecided.sort();
        let lost: Vec<serde_json::Value> = lost.into_iter().map(|(_, _, evidence)| evidence).collect();
        let (valid, reason) = if let Some(first) = lost.first() {
            (
                Validity::Invalid,
                format!("{} acknowledged writes lost; {}", lost.len(), first["explanation"].as_str().unwrap_or("")),
            )
        } else if !undecided.is_empty() {
            (Validity::Unknown, format!("{} keys have no successful final read", undecided.len()))
        } else {
            (Validity::Valid, format!("all {acknowledged} acknowledged writes on {keys} keys survived"))
        };
        let evidence = serde_json::json!({"lost": lost, "keys_without_final_read": undecided});
        CheckResult { checker: "durability".into(), valid, reason, evidence }
    }
}

fn lost_evidence(key: &str, write: &Completed, last: &Completed, seen: &str) -> serde_json::Value {
    serde_json::json!({
        "key": key,
        "write": describe(write),
        "write_index": write.index,
        "final_read": seen,
        "final_read_index": last.index,
        "explanation": format!(
            "{key}: the {} acknowledged at {:.3} s is lost: the final read at {:.3} s found {seen}, written before it began",
            describe(write),
            write.complete_ns.unwrap_or(0) as f64 / 1e9,
            last.invoke_ns as f64 / 1e9,
        ),
    })
}
