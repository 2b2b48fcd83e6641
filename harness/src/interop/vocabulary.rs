//! What the other tools' ops mean in our models' terms, both ways. The
//! rules are the module comment of `interop`.

use super::{Dialect, InteropError, RawOp};
use crate::history::{Event, EventType, Process, Value};
use crate::model::ModelKind;
use serde_json::Value as Json;
use std::collections::{BTreeSet, HashMap};

/// A JSON key as the text our histories key by: strings as they are,
/// anything else as its compact JSON (`3`, `[1,2]`).
pub(super) fn key_text(key: &Json) -> String {
    match key {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How keys are written in the input.
#[derive(Clone, Copy, PartialEq)]
enum Keys {
    None,
    /// A `:key` field on every client invocation.
    Field,
    /// jepsen.independent: every client invocation's value is `[key value]`.
    Tuples,
}

fn keys_of(clients: &[&RawOp]) -> Keys {
    let invokes: Vec<&&RawOp> = clients.iter().filter(|op| op.kind == EventType::Invoke).collect();
    if !invokes.is_empty() && invokes.iter().all(|op| op.key.is_some()) {
        Keys::Field
    } else if !invokes.is_empty() && invokes.iter().all(|op| matches!(&op.value, Json::Array(a) if a.len() == 2)) {
        Keys::Tuples
    } else {
        Keys::None
    }
}

/// Splits `[key value]` when keys are tuples.
fn untuple(value: &Json, keys: Keys) -> (Option<String>, Json) {
    match (keys, value) {
        (Keys::Tuples, Json::Array(pair)) if pair.len() == 2 => (Some(key_text(&pair[0])), pair[1].clone()),
        _ => (None, value.clone()),
    }
}

/// Which of our models the ops speak to (module comment of `interop`).
fn model_of(clients: &[&RawOp], keys: Keys) -> Result<ModelKind, InteropError> {
    let fs: BTreeSet<&str> = clients.iter().map(|op| op.f.as_str()).collect();
    if fs.is_empty() {
        // Only the nemesis: trivially linearizable in any model.
        return Ok(ModelKind::CasRegister);
    }
    if fs.iter().all(|f| matches!(*f, "get" | "put" | "append")) {
        return Ok(ModelKind::AppendKv);
    }
    if !fs.iter().all(|f| matches!(*f, "read" | "write" | "cas")) {
        let unknown: Vec<&str> = fs.into_iter().filter(|f| !matches!(*f, "read" | "write" | "cas")).collect();
        return Err(InteropError::History(format!(
            "no model here for the operations {unknown:?}: expected read/write/cas (a register or \
             cas-register) or get/put/append (Porcupine's kv)"
        )));
    }
    // Only what was written and what was read: a completion that failed
    // carries an error (`:timed-out`), not a value.
    let written = |op: &&&RawOp| op.f == "write" && op.kind == EventType::Invoke;
    let read = |op: &&&RawOp| op.f == "read" && op.kind == EventType::Ok;
    let values = clients.iter().filter(|op| written(op) || read(op)).map(|op| untuple(&op.value, keys).1);
    let (mut integers, mut strings) = (fs.contains("cas"), false);
    for value in values {
        integers |= value.is_i64() || value.is_u64();
        strings |= value.is_string();
    }
    match (integers, strings) {
        (true, true) => Err(InteropError::History("a register history mixes integer and string values".into())),
        (true, false) => Ok(ModelKind::CasRegister),
        (false, _) => Ok(ModelKind::Register),
    }
}

/// Times as given when every op has one and they never go back; else one
/// millisecond per op in input order, and `true`. A Jepsen history's order
/// is its real-time order (Knossos reads it so); the `:time`s of older
/// histories were taken on different threads and can disagree with it.
fn times(raw: &[RawOp]) -> (Vec<u64>, bool) {
    let given: Option<Vec<u64>> = raw.iter().map(|op| op.time_ns).collect();
    match given {
        Some(times) if times.windows(2).all(|w| w[0] <= w[1]) => (times, false),
        _ => ((0..raw.len() as u64).map(|i| i * 1_000_000).collect(), true),
    }
}

/// The other tool's ops as our events, the model that judges them, and
/// whether their times come from their order ([`times`]).
pub(super) fn translate(raw: Vec<RawOp>, dialect: Dialect) -> Result<(Vec<Event>, ModelKind, bool), InteropError> {
    let clients: Vec<&RawOp> = raw.iter().filter(|op| op.process.is_some()).collect();
    let keys = keys_of(&clients);
    let model = model_of(&clients, keys)?;
    let (times, times_from_order) = times(&raw);
    // The open invocation of each process: its f, key and value, which a
    // completion that omits them inherits.
    let mut open: HashMap<u64, (String, Option<String>, Json)> = HashMap::new();
    let mut events = Vec::with_capacity(raw.len());
    for (op, time) in raw.iter().zip(times) {
        let Some(process) = op.process else {
            let mut event = nemesis_event(op);
            (event.index, event.time) = (events.len() as u64, time);
            events.push(event);
            continue;
        };
        let (key, value) = untuple(&op.value, keys);
        let key = if keys == Keys::Field { op.key.clone() } else { key };
        let mut event = if op.kind == EventType::Invoke {
            if open.insert(process, (op.f.clone(), key.clone(), value.clone())).is_some() {
                return Err(InteropError::at(op.line, format!("process {process} invokes with an op in flight")));
            }
            invocation(model, &op.f, key, value)
        } else {
            let (f, key, invoked) = open.remove(&process).ok_or_else(|| {
                InteropError::at(op.line, format!("process {process} completes with nothing in flight"))
            })?;
            if f != op.f {
                return Err(InteropError::at(op.line, format!("completion of {} but {f} was invoked", op.f)));
            }
            completion(model, dialect, op.kind, &f, key, &invoked, value)
        };
        event.index = events.len() as u64;
        event.time = time;
        event.process = Process::Client(process);
        event.error = op.error.clone();
        events.push(event);
    }
    Ok((events, model, times_from_order))
}

fn nemesis_event(op: &RawOp) -> Event {
    let mut event = Event::new(Process::NEMESIS, op.kind, &op.f);
    if !op.value.is_null() {
        event.value = Value::Present(op.value.clone());
    }
    event
}

/// Our API's register: `write v` is a put, `write nil` a delete, `read` a
/// strong get.
fn register_f(f: &str, value: &Json) -> &'static str {
    match (f, value) {
        ("write", Json::Null) => "delete",
        ("write", _) => "put",
        _ => "get",
    }
}

fn invocation(model: ModelKind, f: &str, key: Option<String>, value: Json) -> Event {
    let mut event = match model {
        ModelKind::Register => {
            let ours = register_f(f, &value);
            let mut event = Event::new(Process::Client(0), EventType::Invoke, ours);
            match ours {
                "put" => event.value = Value::Present(value),
                "get" => event.consistency = Some("strong".into()),
                _ => {}
            }
            event
        }
        ModelKind::CasRegister | ModelKind::AppendKv => {
            let mut event = Event::new(Process::Client(0), EventType::Invoke, f);
            event.value = Value::Present(value);
            event
        }
    };
    event.key = key;
    event
}

fn completion(
    model: ModelKind,
    dialect: Dialect,
    kind: EventType,
    f: &str,
    key: Option<String>,
    invoked: &Json,
    value: Json,
) -> Event {
    let (f, kind, value) = match model {
        ModelKind::Register => {
            let ours = register_f(f, invoked);
            let value = if ours == "get" && kind == EventType::Ok { value } else { invoked.clone() };
            (ours, kind, value)
        }
        ModelKind::CasRegister => match (f, kind, dialect) {
            ("cas", EventType::Ok, _) => ("cas", kind, Json::Bool(true)),
            ("cas", EventType::Fail, Dialect::Porcupine) => ("cas", EventType::Ok, Json::Bool(false)),
            ("read", EventType::Fail, Dialect::Porcupine) => ("read", EventType::Info, Json::Null),
            ("read", EventType::Ok, _) => ("read", kind, value),
            _ => (f, kind, invoked.clone()),
        },
        ModelKind::AppendKv => {
            let value = if f == "get" && kind == EventType::Ok { value } else { invoked.clone() };
            (f, kind, value)
        }
    };
    let mut event = Event::new(Process::Client(0), kind, f);
    event.key = key;
    event.value = if matches!(f, "delete") { Value::Absent } else { Value::Present(value) };
    event
}

/// Our events in Jepsen's vocabulary (the inverse of [`translate`]), and
/// how many eventual-get events were left out.
pub(super) fn to_jepsen(events: &[Event], model: ModelKind) -> Result<(Vec<RawOp>, usize), InteropError> {
    let mut open: HashMap<u64, &Event> = HashMap::new();
    let mut ops = Vec::with_capacity(events.len());
    let mut dropped = 0;
    for (n, event) in events.iter().enumerate() {
        let at = n + 1;
        let Process::Client(process) = event.process else {
            let value = event.value.json().cloned().unwrap_or(Json::Null);
            ops.push(raw(at, None, event.kind, &event.f, value, None, event));
            continue;
        };
        let invoke = if event.kind == EventType::Invoke {
            open.insert(process, event);
            event
        } else {
            open.remove(&process).ok_or_else(|| InteropError::at(at, "a completion with nothing in flight"))?
        };
        if model == ModelKind::Register && invoke.consistency.as_deref() == Some("eventual") {
            dropped += 1;
            continue;
        }
        let (f, kind, value) = jepsen_op(model, invoke, event).map_err(|problem| InteropError::at(at, problem))?;
        let (key, value) = match (&event.key, model) {
            (Some(key), ModelKind::Register | ModelKind::CasRegister) => {
                (None, Json::Array(vec![key.clone().into(), value]))
            }
            (key, _) => (key.clone(), value),
        };
        ops.push(raw(at, Some(process), kind, f, value, key, event));
    }
    Ok((ops, dropped))
}

fn raw(
    at: usize,
    process: Option<u64>,
    kind: EventType,
    f: &str,
    value: Json,
    key: Option<String>,
    event: &Event,
) -> RawOp {
    RawOp {
        line: at,
        process,
        kind,
        f: f.to_owned(),
        value,
        key,
        time_ns: Some(event.time),
        error: event.error.clone(),
    }
}

/// One event's f, type and value in Jepsen's terms.
fn jepsen_op<'e>(model: ModelKind, invoke: &'e Event, event: &'e Event) -> Result<(&'e str, EventType, Json), String> {
    let invoked = invoke.value.json().cloned().unwrap_or(Json::Null);
    let completed = event.value.json().cloned().unwrap_or(Json::Null);
    let is_ok = event.kind == EventType::Ok;
    Ok(match (model, invoke.f.as_str()) {
        (ModelKind::Register, "put") => ("write", event.kind, invoked),
        (ModelKind::Register, "delete") => ("write", event.kind, Json::Null),
        (ModelKind::Register, "get") => ("read", event.kind, if is_ok { completed } else { Json::Null }),
        (ModelKind::Register, other) => return Err(format!("the register model has no operation {other:?}")),
        // Jepsen's cas reports a compare that failed as `:fail`.
        (ModelKind::CasRegister, "cas") if is_ok && completed == Json::Bool(false) => ("cas", EventType::Fail, invoked),
        (ModelKind::CasRegister, "read") => ("read", event.kind, if is_ok { completed } else { Json::Null }),
        (ModelKind::CasRegister, _) => (invoke.f.as_str(), event.kind, invoked),
        (ModelKind::AppendKv, "get") => ("get", event.kind, if is_ok { completed } else { Json::Null }),
        (ModelKind::AppendKv, _) => (invoke.f.as_str(), event.kind, invoked),
    })
}
