//! EDN syntax: Jepsen's op maps to [`RawOp`]s and back. What an op *means*
//! is `vocabulary`'s business.

use super::{vocabulary, InteropError, RawOp};
use crate::history::{Event, EventType};
use crate::model::ModelKind;
use edn_format::{Keyword, Value as Edn};
use serde_json::Value as Json;

/// An EDN vector (or list) of op maps, or op maps one per line (Jepsen's
/// `history.edn`). `;` comments and blank lines are skipped.
pub(super) fn parse(text: &str) -> Result<Vec<RawOp>, InteropError> {
    // The first character that is not blank or in a `;` comment.
    let first = text.lines().map(str::trim_start).find(|l| !l.is_empty() && !l.starts_with(';'));
    if first.is_some_and(|l| l.starts_with('[') || l.starts_with('(')) {
        let whole = edn_format::parse_str(text).map_err(|e| InteropError::at(e.row, format!("not EDN: {e}")))?;
        let (Edn::Vector(items) | Edn::List(items)) = whole else {
            return Err(InteropError::History("expected a vector of op maps".into()));
        };
        // A vector gives no line per op: its position stands in.
        return items.iter().enumerate().map(|(i, item)| raw_op(item, i + 1)).collect();
    }
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let item = edn_format::parse_str(line).map_err(|e| InteropError::at(n, format!("not EDN: {e}")))?;
        ops.push(raw_op(&item, n)?);
    }
    Ok(ops)
}

fn field<'m>(map: &'m std::collections::BTreeMap<Edn, Edn>, name: &str) -> Option<&'m Edn> {
    map.get(&Edn::Keyword(Keyword::from_name(name)))
}

fn raw_op(item: &Edn, line: usize) -> Result<RawOp, InteropError> {
    let Edn::Map(map) = item else { return Err(InteropError::at(line, "expected an op map {:type … :f … …}")) };
    let process = match field(map, "process") {
        Some(Edn::Integer(n)) if *n >= 0 => Some(*n as u64),
        Some(Edn::Keyword(_)) => None,
        other => return Err(InteropError::at(line, format!(":process must be a number or :nemesis, got {other:?}"))),
    };
    let kind = match field(map, "type").map(name) {
        Some(Some(kind)) => event_type(kind).ok_or_else(|| InteropError::at(line, format!("unknown :type :{kind}")))?,
        _ => return Err(InteropError::at(line, "missing :type")),
    };
    let f = field(map, "f").and_then(name).ok_or_else(|| InteropError::at(line, "missing :f"))?;
    let time_ns = match field(map, "time") {
        None => None,
        Some(Edn::Integer(t)) if *t >= 0 => Some(*t as u64),
        Some(other) => return Err(InteropError::at(line, format!(":time must be nanoseconds, got {other:?}"))),
    };
    Ok(RawOp {
        line,
        process,
        kind,
        f: f.to_owned(),
        value: field(map, "value").map_or(Json::Null, to_json),
        key: field(map, "key").map(|key| vocabulary::key_text(&to_json(key))),
        time_ns,
        error: field(map, "error").map(edn_format::emit_str),
    })
}

pub(super) fn event_type(name: &str) -> Option<EventType> {
    match name {
        "invoke" => Some(EventType::Invoke),
        "ok" => Some(EventType::Ok),
        "fail" => Some(EventType::Fail),
        "info" => Some(EventType::Info),
        _ => None,
    }
}

fn name(value: &Edn) -> Option<&str> {
    match value {
        Edn::Keyword(k) => Some(k.name()),
        Edn::Symbol(s) => Some(s.name()),
        Edn::String(s) => Some(s),
        _ => None,
    }
}

/// Keywords keep their colon (`:timed-out`), so they stay apart from
/// strings; what JSON cannot hold is carried as its EDN text.
pub(super) fn to_json(value: &Edn) -> Json {
    match value {
        Edn::Nil => Json::Null,
        Edn::Boolean(b) => Json::Bool(*b),
        Edn::Integer(n) => Json::from(*n),
        Edn::Float(x) => serde_json::Number::from_f64(x.into_inner()).map_or(Json::Null, Json::Number),
        Edn::String(s) => Json::String(s.clone()),
        Edn::Keyword(_) | Edn::Symbol(_) | Edn::Character(_) => Json::String(edn_format::emit_str(value)),
        Edn::Vector(items) | Edn::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Edn::Set(items) => Json::Array(items.iter().map(to_json).collect()),
        Edn::Map(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (name(k).map_or_else(|| edn_format::emit_str(k), str::to_owned), to_json(v)))
                .collect(),
        ),
        other => Json::String(edn_format::emit_str(other)),
    }
}

fn to_edn(value: &Json) -> Edn {
    match value {
        Json::Null => Edn::Nil,
        Json::Bool(b) => Edn::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Edn::Integer(i),
            None => Edn::Float(n.as_f64().unwrap_or(f64::NAN).into()),
        },
        Json::String(s) => Edn::String(s.clone()),
        Json::Array(items) => Edn::Vector(items.iter().map(to_edn).collect()),
        Json::Object(map) => {
            Edn::Map(map.iter().map(|(k, v)| (Edn::Keyword(Keyword::from_name(k)), to_edn(v))).collect())
        }
    }
}

fn keyword(name: &str) -> Edn {
    Edn::Keyword(Keyword::from_name(name))
}

/// What `export` wrote.
#[derive(Debug)]
pub struct Exported {
    /// One op map per line, as Jepsen's `history.edn`.
    pub text: String,
    pub ops: usize,
    /// Eventual gets (and their completions) left out: they are not
    /// claimed linearizable, and Knossos would judge them as if they were.
    pub dropped_eventual: usize,
}

/// Our history as Jepsen's: `model` names the vocabulary `events` speak
/// (our API's register becomes Knossos' `register`, keys become
/// jepsen.independent tuples). See the module comment of `interop`.
pub fn export(events: &[Event], model: ModelKind) -> Result<Exported, InteropError> {
    let (ops, dropped_eventual) = vocabulary::to_jepsen(events, model)?;
    let mut text = String::new();
    for (index, op) in ops.iter().enumerate() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(keyword("index"), Edn::Integer(index as i64));
        map.insert(keyword("time"), Edn::Integer(op.time_ns.unwrap_or(0).min(i64::MAX as u64) as i64));
        map.insert(keyword("process"), op.process.map_or_else(|| keyword("nemesis"), |p| Edn::Integer(p as i64)));
        map.insert(keyword("type"), keyword(type_name(op.kind)));
        map.insert(keyword("f"), keyword(&op.f));
        map.insert(keyword("value"), to_edn(&op.value));
        if let Some(key) = &op.key {
            map.insert(keyword("key"), Edn::String(key.clone()));
        }
        if let Some(error) = &op.error {
            map.insert(keyword("error"), Edn::String(error.clone()));
        }
        text.push_str(&edn_format::emit_str(&Edn::Map(map)));
        text.push('\n');
    }
    Ok(Exported { text, ops: ops.len(), dropped_eventual })
}

fn type_name(kind: EventType) -> &'static str {
    match kind {
        EventType::Invoke => "invoke",
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info => "info",
    }
}
