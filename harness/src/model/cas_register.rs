//! A compare-and-set register per key (docs/SPEC.md section 3): `read` returns the
//! integer (or `null` before any write), `write` sets it, `cas [old, new]`
//! swaps when it holds `old` (`true`) or leaves it (`false`).

use super::Model;
use crate::history::{Event, EventType};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOp {
    Read(Option<i64>),
    Write(i64),
    /// `swapped`: `None` when the outcome is unknown.
    Cas {
        expected: i64,
        new: i64,
        swapped: Option<bool>,
    },
}

pub struct CasRegister;

fn integer(value: Option<&serde_json::Value>, what: &str) -> Result<Option<i64>, String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| format!("{what}: expected an integer or null, got {v}")),
    }
}

impl Model for CasRegister {
    type State = Option<i64>;
    type Op = CasOp;

    fn name(&self) -> &'static str {
        "cas-register"
    }

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, op: &CasOp) -> Option<Option<i64>> {
        match op {
            CasOp::Read(read) => (read == state).then_some(*state),
            CasOp::Write(value) => Some(Some(*value)),
            CasOp::Cas { expected, new, swapped } => {
                let matches = *state == Some(*expected);
                match swapped {
                    Some(true) => matches.then_some(Some(*new)),
                    Some(false) => (!matches).then_some(*state),
                    None => Some(if matches { Some(*new) } else { *state }),
                }
            }
        }
    }

    fn blind(&self, op: &CasOp) -> bool {
        matches!(op, CasOp::Write(_))
    }

    fn read_only(&self, op: &CasOp) -> bool {
        matches!(op, CasOp::Read(_) | CasOp::Cas { swapped: Some(false), .. })
    }

    /// A read of `v` needs the register to hold `v` now, or a write or a
    /// swap to `v` still to come.
    fn may_read<'o>(&self, state: &Option<i64>, read: &CasOp, mut writers: impl Iterator<Item = &'o CasOp>) -> bool {
        let CasOp::Read(seen) = read else { return true };
        seen == state
            || writers.any(|w| match w {
                CasOp::Write(value) => *seen == Some(*value),
                CasOp::Cas { new, swapped, .. } => *swapped != Some(false) && *seen == Some(*new),
                CasOp::Read(_) => false,
            })
    }

    fn operation(&self, invoke: &Event, completion: &Event) -> Result<Option<CasOp>, String> {
        let known = completion.kind == EventType::Ok;
        match (invoke.f.as_str(), completion.kind) {
            (_, EventType::Fail) => Ok(None),
            ("read", EventType::Ok) => Ok(Some(CasOp::Read(integer(completion.value.json(), "read value")?))),
            ("read", _) => Ok(None),
            ("write", _) => {
                let value = integer(invoke.value.json(), "write value")?.ok_or("a write without a value")?;
                Ok(Some(CasOp::Write(value)))
            }
            ("cas", _) => {
                let pair = invoke.value.json().and_then(|v| v.as_array()).filter(|a| a.len() == 2);
                let pair = pair.ok_or("cas takes [expected, new]")?;
                let (expected, new) = match (pair[0].as_i64(), pair[1].as_i64()) {
                    (Some(e), Some(n)) => (e, n),
                    _ => return Err("cas takes two integers".into()),
                };
                let swapped = if known {
                    Some(completion.value.json().and_then(|v| v.as_bool()).ok_or("an ok cas returns true or false")?)
                } else {
                    None
                };
                Ok(Some(CasOp::Cas { expected, new, swapped }))
            }
            (other, _) => Err(format!("the cas-register model has no operation {other:?}")),
        }
    }

    fn describe(&self, op: &CasOp) -> String {
        match op {
            CasOp::Read(Some(v)) => format!("read → {v}"),
            CasOp::Read(None) => "read → null".into(),
            CasOp::Write(v) => format!("write {v}"),
            CasOp::Cas { expected, new, swapped } => format!("cas {expected}→{new} = {swapped:?}"),
        }
    }
}
