//! A string per key (docs/SPEC.md section 3): `get` returns it (`""` before any
//! write), `put` replaces it, `append` adds to its end.

use super::Model;
use crate::history::{Event, EventType};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOp {
    Get(String),
    Put(String),
    Append(String),
}

pub struct AppendKv;

fn string(value: Option<&serde_json::Value>, what: &str) -> Result<String, String> {
    match value {
        Some(serde_json::Value::String(text)) => Ok(text.clone()),
        other => Err(format!("{what}: expected a string, got {other:?}")),
    }
}

impl Model for AppendKv {
    type State = String;
    type Op = AppendOp;

    fn name(&self) -> &'static str {
        "append-kv"
    }

    fn init(&self) -> String {
        String::new()
    }

    fn step(&self, state: &String, op: &AppendOp) -> Option<String> {
        match op {
            AppendOp::Get(read) => (read == state).then(|| state.clone()),
            AppendOp::Put(value) => Some(value.clone()),
            AppendOp::Append(suffix) => Some(format!("{state}{suffix}")),
        }
    }

    fn blind(&self, op: &AppendOp) -> bool {
        matches!(op, AppendOp::Put(_))
    }

    fn read_only(&self, op: &AppendOp) -> bool {
        matches!(op, AppendOp::Get(_))
    }

    /// Appends only lengthen the string, so a read of `r` needs the string
    /// to be a prefix of `r` now, or a put of a prefix of `r` still to come.
    fn may_read<'o>(&self, state: &String, read: &AppendOp, mut writers: impl Iterator<Item = &'o AppendOp>) -> bool {
        let AppendOp::Get(seen) = read else { return true };
        seen.starts_with(state.as_str())
            || writers.any(|w| matches!(w, AppendOp::Put(value) if seen.starts_with(value.as_str())))
    }

    fn operation(&self, invoke: &Event, completion: &Event) -> Result<Option<AppendOp>, String> {
        match (invoke.f.as_str(), completion.kind) {
            (_, EventType::Fail) => Ok(None),
            ("get", EventType::Ok) => Ok(Some(AppendOp::Get(string(completion.value.json(), "get value")?))),
            ("get", _) => Ok(None),
            ("put", _) => Ok(Some(AppendOp::Put(string(invoke.value.json(), "put value")?))),
            ("append", _) => Ok(Some(AppendOp::Append(string(invoke.value.json(), "append value")?))),
            (other, _) => Err(format!("the append-kv model has no operation {other:?}")),
        }
    }

    fn describe(&self, op: &AppendOp) -> String {
        match op {
            AppendOp::Get(v) => format!("get → {v:?}"),
            AppendOp::Put(v) => format!("put {v:?}"),
            AppendOp::Append(v) => format!("append {v:?}"),
        }
    }
}
