//! The register of our API, one per key: `put` sets it, `delete` empties
//! it, a strong `get` must return what it holds (`null` when empty).
//! Values are compared as the base64 text the history carries; puts write
//! values unique in the run, so a read names the write it saw. Eventual
//! gets take no part (they are not linearizable by design).

use super::{seconds, Explanation, Model, Operation};
use crate::history::{Event, EventType};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    Put(String),
    Delete,
    Get(Option<String>),
}

pub struct Register;

fn text(value: Option<&serde_json::Value>, what: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("{what}: expected a base64 string or null, got {other}")),
    }
}

impl Model for Register {
    type State = Option<String>;
    type Op = RegisterOp;

    fn name(&self) -> &'static str {
        "register"
    }

    fn init(&self) -> Option<String> {
        None
    }

    fn step(&self, state: &Option<String>, op: &RegisterOp) -> Option<Option<String>> {
        match op {
            RegisterOp::Put(value) => Some(Some(value.clone())),
            RegisterOp::Delete => Some(None),
            RegisterOp::Get(read) => (read == state).then(|| state.clone()),
        }
    }

    fn blind(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Put(_) | RegisterOp::Delete)
    }

    fn read_only(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Get(_))
    }

    /// A read of `v` needs the register to hold `v` now, or a write of `v`
    /// (a delete for "nothing") still to come.
    fn may_read<'o>(
        &self,
        state: &Option<String>,
        read: &RegisterOp,
        mut writers: impl Iterator<Item = &'o RegisterOp>,
    ) -> bool {
        let RegisterOp::Get(seen) = read else { return true };
        seen == state
            || writers.any(|w| match w {
                RegisterOp::Put(value) => seen.as_ref() == Some(value),
                RegisterOp::Delete => seen.is_none(),
                RegisterOp::Get(_) => false,
            })
    }

    fn operation(&self, invoke: &Event, completion: &Event) -> Result<Option<RegisterOp>, String> {
        if completion.kind == EventType::Fail {
            return Ok(None);
        }
        match invoke.f.as_str() {
            "put" => {
                let value = text(invoke.value.json(), "put value")?.ok_or("a put without a value")?;
                Ok(Some(RegisterOp::Put(value)))
            }
            "delete" => Ok(Some(RegisterOp::Delete)),
            "get" if invoke.consistency.as_deref() == Some("eventual") => Ok(None),
            "get" if completion.kind == EventType::Ok => {
                Ok(Some(RegisterOp::Get(text(completion.value.json(), "get value")?)))
            }
            "get" => Ok(None),
            other => Err(format!("the register model has no operation {other:?}")),
        }
    }

    /// Stale reads, lost writes, values never written, new-then-old: the
    /// newest write acknowledged before the read began, that started after
    /// the seen value's write was acknowledged, should have been visible.
    /// Every `Some` is a proof on its own, from real-time order alone
    /// (values are unique); anything less certain is `None`.
    fn explain(&self, key: &str, ops: &[Operation<RegisterOp>], blocked: usize) -> Option<Explanation> {
        let read = &ops[blocked];
        let RegisterOp::Get(seen) = &read.op else { return None };
        let seen_text = seen.as_deref().map_or("nothing".to_owned(), shown);
        let seen_at = ops.iter().position(|w| matches!(&w.op, RegisterOp::Put(v) if Some(v) == seen.as_ref()));
        let write_of_seen = seen_at.map(|i| &ops[i]);
        if seen.is_some() && write_of_seen.is_none() {
            let text =
                format!("read of {key} returned {seen_text} at {}, a value never written", seconds(read.return_ns?));
            return Some(Explanation { text, named: Vec::new() });
        }
        let after_seen = match write_of_seen {
            // A write whose outcome is unknown may take effect at any time:
            // no later write rules out reading it.
            Some(write) if write.return_ns.is_none() => return None,
            Some(write) => write.return_ns.unwrap_or(u64::MAX),
            None => 0, // nothing seen: any acknowledged write should show
        };
        let after_seen = |w: &Operation<RegisterOp>| write_of_seen.is_none() || w.invoke_ns > after_seen;
        let newer_at = (0..ops.len())
            .filter(|&i| !matches!(ops[i].op, RegisterOp::Get(_)))
            .filter(|&i| ops[i].return_ns.is_some_and(|ret| ret < read.invoke_ns) && after_seen(&ops[i]))
            .max_by_key(|&i| ops[i].return_ns)?;
        let newer = &ops[newer_at];
        if seen.is_none() && newer.op == RegisterOp::Delete {
            return None; // reading nothing after a delete is no anomaly by itself
        }
        // Reading nothing is explained by any delete that may take effect
        // after `newer` and before the read ends.
        let delete_between = |d: &Operation<RegisterOp>| {
            d.op == RegisterOp::Delete
                && d.invoke_ns < read.return_ns.unwrap_or(u64::MAX)
                && d.return_ns.is_none_or(|done| done > newer.invoke_ns)
        };
        if seen.is_none() && ops.iter().any(delete_between) {
            return None;
        }
        let newer_text = match &newer.op {
            RegisterOp::Put(v) => format!("put of {} was acknowledged", shown(v)),
            _ => "delete was acknowledged".to_owned(),
        };
        let after = if seen.is_some() { format!(" (after {seen_text} was written)") } else { String::new() };
        let text = format!(
            "read of {key} returned {seen_text} at {}, but a {newer_text} at {}{after} and nothing later overwrote it",
            seconds(read.return_ns?),
            seconds(newer.return_ns?),
        );
        Some(Explanation { text, named: seen_at.into_iter().chain([newer_at]).collect() })
    }

    fn describe(&self, op: &RegisterOp) -> String {
        match op {
            RegisterOp::Put(value) => format!("put {}", shown(value)),
            RegisterOp::Delete => "delete".into(),
            RegisterOp::Get(Some(value)) => format!("get → {}", shown(value)),
            RegisterOp::Get(None) => "get → not found".into(),
        }
    }
}

/// The value as text when the base64 decodes to printable UTF-8 (`v12`),
/// else the base64 itself.
pub fn shown(base64_value: &str) -> String {
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(base64_value) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) if !text.is_empty() && text.chars().all(|c| !c.is_control()) => text,
            _ => base64_value.to_owned(),
        },
        Err(_) => base64_value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    fn op(invoke_ns: u64, return_ns: Option<u64>, op: RegisterOp) -> Operation<RegisterOp> {
        Operation { process: Process::Client(invoke_ns), index: invoke_ns, invoke_ns, return_ns, op }
    }

    fn put(v: &str) -> RegisterOp {
        RegisterOp::Put(v.into())
    }

    #[test]
    fn a_stale_read_is_explained_with_the_writes_it_contradicts() {
        let ops =
            [op(0, Some(1), put("a")), op(2, Some(3), put("b")), op(4, Some(5), RegisterOp::Get(Some("a".into())))];
        let explanation = Register.explain("k", &ops, 2).expect("a stale read");
        assert!(explanation.text.contains("put of b was acknowledged"), "{}", explanation.text);
        assert_eq!(explanation.named, vec![0, 1]);
    }

    #[test]
    fn nothing_is_claimed_where_the_read_could_be_fine() {
        // Not found after a put, but a delete may take effect in between.
        let ops =
            [op(0, Some(1), put("a")), op(2, Some(10), RegisterOp::Delete), op(3, Some(4), RegisterOp::Get(None))];
        assert_eq!(Register.explain("k", &ops, 2), None);
        // The value read was written by a put of unknown outcome: it may take
        // effect after the later put.
        let ops = [op(0, None, put("a")), op(2, Some(3), put("b")), op(4, Some(5), RegisterOp::Get(Some("a".into())))];
        assert_eq!(Register.explain("k", &ops, 2), None);
    }
}
