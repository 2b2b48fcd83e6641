//! Anomalies as a report shows them: the checker, the key, the words, and
//! the operations involved, read from each checker's evidence. Pure.

use crate::verdict::CheckResult;

/// One anomaly, with the history indices (of invocations) it involves.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    pub checker: String,
    pub key: String,
    pub explanation: String,
    /// The operation that cannot be explained: the read, the lost write.
    pub culprits: Vec<u64>,
    /// Operations the explanation names (the write it contradicts, the
    /// final read that misses it).
    pub named: Vec<u64>,
}

fn index(value: &serde_json::Value) -> Option<u64> {
    value.as_u64()
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// Every anomaly in `results`, taken in turn from each checker (its first,
/// every checker's second, ...), so that the first few, which a report
/// draws, show what every failing checker found.
pub fn anomalies(results: &[CheckResult]) -> Vec<Anomaly> {
    let mut by_checker: Vec<std::vec::IntoIter<Anomaly>> = results.iter().map(|r| of(r).into_iter()).collect();
    let mut turns = Vec::new();
    loop {
        let round: Vec<Anomaly> = by_checker.iter_mut().filter_map(Iterator::next).collect();
        if round.is_empty() {
            return turns;
        }
        turns.extend(round);
    }
}

/// The anomalies in one checker's evidence, in its order.
fn of(result: &CheckResult) -> Vec<Anomaly> {
    let list = |field: &str| result.evidence.get(field).and_then(|l| l.as_array()).cloned().unwrap_or_default();
    let anomaly = |key: &serde_json::Value, explanation: &serde_json::Value, culprit, named: Vec<u64>| Anomaly {
        checker: result.checker.clone(),
        key: text(key),
        explanation: text(explanation),
        culprits: index(culprit).into_iter().collect(),
        named,
    };
    match result.checker.as_str() {
        "linearizable" => list("anomalies")
            .iter()
            .map(|a| {
                let window = a["window"].as_array().cloned().unwrap_or_default();
                let named = window.iter().filter(|op| op["role"] == "named").filter_map(|op| index(&op["index"]));
                anomaly(&a["key"], &a["explanation"], &a["blocked"]["index"], named.collect())
            })
            .collect(),
        "durability" => list("lost")
            .iter()
            .map(|l| {
                anomaly(
                    &l["key"],
                    &l["explanation"],
                    &l["write_index"],
                    index(&l["final_read_index"]).into_iter().collect(),
                )
            })
            .collect(),
        "session" | "ttl" => {
            list("violations").iter().map(|v| anomaly(&v["key"], &v["explanation"], &v["index"], Vec::new())).collect()
        }
        _ => Vec::new(),
    }
}
