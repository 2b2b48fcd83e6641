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
    let mut by_checker: Vec<std::collections::VecDeque<Anomaly>> = Vec::new();
    for anomaly in in_checker_order(results) {
        match by_checker.iter_mut().find(|list| list.front().is_some_and(|a| a.checker == anomaly.checker)) {
            Some(list) => list.push_back(anomaly),
            None => by_checker.push(std::collections::VecDeque::from([anomaly])),
        }
    }
    let mut turns = Vec::new();
    while by_checker.iter().any(|list| !list.is_empty()) {
        turns.extend(by_checker.iter_mut().filter_map(|list| list.pop_front()));
    }
    turns
}

fn in_checker_order(results: &[CheckResult]) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for result in results {
        let evidence = &result.evidence;
        let list = |field: &str| evidence.get(field).and_then(|l| l.as_array()).cloned().unwrap_or_default();
        match result.checker.as_str() {
            "linearizable" => found.extend(list("anomalies").iter().map(|a| {
                let window = a["window"].as_array().cloned().unwrap_or_default();
                Anomaly {
                    checker: result.checker.clone(),
                    key: text(&a["key"]),
                    explanation: text(&a["explanation"]),
                    culprits: index(&a["blocked"]["index"]).into_iter().collect(),
                    named: window
                        .iter()
                        .filter(|op| op["role"] == "named")
                        .filter_map(|op| index(&op["index"]))
                        .collect(),
                }
            })),
            "durability" => found.extend(list("lost").iter().map(|lost| Anomaly {
                checker: result.checker.clone(),
                key: text(&lost["key"]),
                explanation: text(&lost["explanation"]),
                culprits: index(&lost["write_index"]).into_iter().collect(),
                named: index(&lost["final_read_index"]).into_iter().collect(),
            })),
            "session" | "ttl" => found.extend(list("violations").iter().map(|v| Anomaly {
                checker: result.checker.clone(),
                key: text(&v["key"]),
                explanation: text(&v["explanation"]),
                culprits: index(&v["index"]).into_iter().collect(),
                named: Vec::new(),
            })),
            _ => {}
        }
    }
    found
}
