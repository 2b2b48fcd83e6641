//! The check's verdict from the keys' verdicts, and what a reader is
//! shown of an anomaly: the operation to blame, in words where the model
//! can say why, and the window of operations around it.

use super::{AfterAnomaly, Failure, KeyVerdict};
use crate::model::{seconds, Explanation, Model, Operation};
use crate::verdict::{CheckResult, Validity};

/// The blocked operation, the ones concurrent with it, the last few
/// linearized before it, and the last few that returned before it was
/// invoked but are not linearized (what it must follow and could not):
/// where to look.
pub(super) fn window<O>(ops: &[Operation<O>], prefix: &[usize], blocked: usize) -> Vec<usize> {
    let Some(b) = ops.get(blocked) else { return Vec::new() };
    let b_return = b.return_ns.unwrap_or(u64::MAX);
    let mut window: Vec<usize> = (0..ops.len())
        .filter(|&i| i != blocked && ops[i].invoke_ns < b_return && ops[i].return_ns.unwrap_or(u64::MAX) > b.invoke_ns)
        .collect();
    window.extend(prefix.iter().rev().take(3));
    let mut in_prefix = vec![false; ops.len()];
    prefix.iter().for_each(|&i| in_prefix[i] = true);
    let mut due: Vec<usize> =
        (0..ops.len()).filter(|&i| !in_prefix[i] && ops[i].return_ns.is_some_and(|r| r < b.invoke_ns)).collect();
    due.sort_unstable_by_key(|&i| std::cmp::Reverse((ops[i].return_ns, i)));
    window.extend(due.iter().take(3));
    window.push(blocked);
    window.sort_unstable_by_key(|&i| (ops[i].invoke_ns, i));
    window.dedup();
    window.truncate(16);
    window
}

/// The keys' verdicts, gathered a group of keys at a time.
#[derive(Debug, Default)]
pub(super) struct Summary {
    keys: usize,
    operations: usize,
    /// (key, evidence), for each list.
    failures: Vec<(String, serde_json::Value)>,
    unknown: Vec<(String, serde_json::Value)>,
    not_searched: Vec<(String, serde_json::Value)>,
}

impl Summary {
    pub(super) fn add<M: Model>(
        &mut self,
        model: &M,
        keys: &[(&String, &Vec<Operation<M::Op>>)],
        verdicts: Vec<(usize, KeyVerdict)>,
    ) {
        self.keys += keys.len();
        self.operations += keys.iter().map(|(_, ops)| ops.len()).sum::<usize>();
        for (i, verdict) in verdicts {
            let (key, ops) = keys[i];
            match verdict {
                KeyVerdict::Linearizable => {}
                KeyVerdict::Unknown(why) => {
                    self.unknown.push((key.clone(), serde_json::json!({"key": key, "why": why})));
                }
                KeyVerdict::NotSearched(why) => {
                    self.not_searched.push((key.clone(), serde_json::json!({"key": key, "why": why})));
                }
                KeyVerdict::NotLinearizable(failure) => {
                    self.failures.push((key.clone(), evidence(model, key, ops, &failure)));
                }
            }
        }
    }

    pub(super) fn finish(self, model: &str, after_anomaly: AfterAnomaly) -> CheckResult {
        // Key order, whatever the groups were: one check, one answer.
        let in_key_order = |mut list: Vec<(String, serde_json::Value)>| -> Vec<serde_json::Value> {
            list.sort_by(|a, b| a.0.cmp(&b.0));
            list.into_iter().map(|(_, evidence)| evidence).collect()
        };
        let failures = in_key_order(self.failures);
        let (unknown, not_searched) = (in_key_order(self.unknown), in_key_order(self.not_searched));
        let mode = match after_anomaly {
            AfterAnomaly::Stop => "stop at the first anomaly".to_owned(),
            AfterAnomaly::Share(total) => format!("the other keys share {total:?} after the first anomaly"),
            AfterAnomaly::SearchAll => "every key searched".to_owned(),
        };
        let (valid, reason) = verdict(model, self.keys, self.operations, &failures, unknown.len(), not_searched.len());
        // Built by moving the lists in: `json!` would copy each one through serde.
        let evidence = serde_json::Value::Object(serde_json::Map::from_iter([
            ("model".to_owned(), model.into()),
            ("keys".to_owned(), self.keys.into()),
            ("operations".to_owned(), self.operations.into()),
            ("after_anomaly".to_owned(), mode.into()),
            ("anomalies".to_owned(), failures.into()),
            ("unknown_keys".to_owned(), unknown.into()),
            ("not_searched_keys".to_owned(), not_searched.into()),
        ]));
        CheckResult { checker: "linearizable".into(), valid, reason, evidence }
    }
}

/// The check's verdict and its line: the first anomaly in words, with how
/// many more were found and how many keys stayed undecided, and why.
fn verdict(
    model: &str,
    keys: usize,
    operations: usize,
    failures: &[serde_json::Value],
    unknown: usize,
    not_searched: usize,
) -> (Validity, String) {
    let Some(first) = failures.first() else {
        if unknown + not_searched > 0 {
            let undecided = unknown + not_searched;
            return (Validity::Unknown, format!("{undecided} of {keys} keys could not be decided within the budget"));
        }
        return (Validity::Valid, format!("{operations} operations on {keys} keys are linearizable ({model})"));
    };
    let mut more = Vec::new();
    if failures.len() > 1 {
        more.push(format!("and {} more keys", failures.len() - 1));
    }
    if unknown > 0 {
        more.push(format!("{unknown} keys undecided within the budget"));
    }
    if not_searched > 0 {
        more.push(format!("{not_searched} keys not searched after the first anomaly"));
    }
    let more = if more.is_empty() { String::new() } else { format!(" ({})", more.join("; ")) };
    (Validity::Invalid, format!("{}{more}", first["explanation"].as_str().unwrap_or("not linearizable")))
}

/// Reads tried when the blocked operation has no explanation in words.
const MAX_BLAME_CANDIDATES: usize = 256;

/// The operation to show as the anomaly: the blocked one when the model can
/// say why in words; else the read nearest to it that the model can explain
/// (a model's explanation is a proof on its own, so it never blames a read
/// that could be fine); else the blocked one, without words.
fn blame<M: Model>(model: &M, key: &str, ops: &[Operation<M::Op>], blocked: usize) -> (usize, Option<Explanation>) {
    if let Some(explanation) = model.explain(key, ops, blocked) {
        return (blocked, Some(explanation));
    }
    let at = ops[blocked].invoke_ns;
    let mut reads: Vec<usize> = (0..ops.len()).filter(|&i| i != blocked && model.read_only(&ops[i].op)).collect();
    reads.sort_unstable_by_key(|&i| (ops[i].invoke_ns.abs_diff(at), i));
    reads
        .into_iter()
        .take(MAX_BLAME_CANDIDATES)
        .find_map(|i| model.explain(key, ops, i).map(|e| (i, Some(e))))
        .unwrap_or((blocked, None))
}

fn evidence<M: Model>(model: &M, key: &str, ops: &[Operation<M::Op>], failure: &Failure) -> serde_json::Value {
    let (blamed, explained) = blame(model, key, ops, failure.blocked);
    let blocked = &ops[blamed];
    let fallback = format!(
        "{key}: {} (process {}, {} → {}) cannot be placed after any order of the {} operations linearized before it",
        model.describe(&blocked.op),
        blocked.process,
        seconds(blocked.invoke_ns),
        blocked.return_ns.map_or("unknown".into(), seconds),
        failure.longest_prefix.len(),
    );
    let explanation = explained.unwrap_or(Explanation { text: fallback, named: Vec::new() });
    // Every operation a reader should see: the blamed one, the ones the
    // explanation names, and the window around the blocked one, each with
    // its role.
    let mut shown: Vec<usize> = failure.window.iter().chain(&explanation.named).copied().collect();
    shown.push(failure.blocked);
    shown.push(blamed);
    shown.sort_unstable_by_key(|&i| (ops[i].invoke_ns, i));
    shown.dedup();
    let role = |i: usize| match i {
        _ if i == blamed => "blocked",
        _ if explanation.named.contains(&i) => "named",
        _ => "context",
    };
    let describe = |i: usize| {
        let op = &ops[i];
        serde_json::json!({
            "op": model.describe(&op.op),
            "process": op.process,
            "index": op.index,
            "invoke_s": op.invoke_ns as f64 / 1e9,
            "return_s": op.return_ns.map(|ns| ns as f64 / 1e9),
            "role": role(i),
        })
    };
    let window: Vec<serde_json::Value> = shown.iter().map(|&i| describe(i)).collect();
    // The prefix as history indices: a description each would cost more
    // than the whole search of a small history, for a list no one reads
    // whole; the window above describes its end.
    let prefix: Vec<serde_json::Value> = failure.longest_prefix.iter().map(|&i| ops[i].index.into()).collect();
    // Moved in, not copied through serde as `json!` would.
    serde_json::Value::Object(serde_json::Map::from_iter([
        ("key".to_owned(), key.into()),
        ("explanation".to_owned(), explanation.text.into()),
        ("blocked".to_owned(), describe(blamed)),
        ("window".to_owned(), window.into()),
        ("longest_prefix".to_owned(), prefix.into()),
    ]))
}
