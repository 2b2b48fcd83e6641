//! Verdicts, merged as Jepsen merges them: invalid outranks unknown
//! outranks valid.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Unknown,
    Invalid,
}

/// One check's verdict, with a one-line reason and its evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub checker: String,
    pub valid: Validity,
    pub reason: String,
    #[serde(default)]
    pub evidence: serde_json::Value,
}

impl CheckResult {
    pub fn new(checker: &str, valid: Validity, reason: impl Into<String>) -> CheckResult {
        CheckResult { checker: checker.into(), valid, reason: reason.into(), evidence: serde_json::Value::Null }
    }
}

/// The worst of `results`; valid when there are none to contradict it
/// only if at least one check ran.
pub fn merge(results: &[CheckResult]) -> Validity {
    results.iter().map(|r| r.valid).max().unwrap_or(Validity::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_outranks_unknown_outranks_valid() {
        let r = |v| CheckResult::new("c", v, "");
        assert_eq!(merge(&[r(Validity::Valid), r(Validity::Unknown)]), Validity::Unknown);
        assert_eq!(merge(&[r(Validity::Invalid), r(Validity::Unknown), r(Validity::Valid)]), Validity::Invalid);
        assert_eq!(merge(&[r(Validity::Valid)]), Validity::Valid);
        assert_eq!(merge(&[]), Validity::Unknown);
    }
}
