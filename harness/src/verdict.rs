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

/// Exit codes of the command line: 0 valid, 1 anomalies, 2 unknown.
pub fn exit_code(validity: Validity) -> i32 {
    match validity {
        Validity::Valid => 0,
        Validity::Invalid => 1,
        Validity::Unknown => 2,
    }
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
