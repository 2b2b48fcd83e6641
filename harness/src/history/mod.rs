//! The history: every operation's invocation and completion, in the order
//! they happened, as JSON lines (docs/SPEC.md section 3). A public format: other
//! tools read and write it, so every field is as docs/SPEC.md names it.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use thiserror::Error;

pub mod shards;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    /// It happened.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Unknown: it may or may not have happened.
    Info,
}

/// `process`: a client process id, or the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Nemesis(NemesisTag),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NemesisTag {
    Nemesis,
}

impl Process {
    pub const NEMESIS: Process = Process::Nemesis(NemesisTag::Nemesis);
}

/// As the history writes it: the client's number, or `nemesis` (for
/// evidence a reader matches against the history, not `Client(6)`).
impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Process::Client(id) => write!(f, "{id}"),
            Process::Nemesis(_) => f.write_str("nemesis"),
        }
    }
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    /// Nanoseconds since the run started, monotonic.
    pub time: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Base64 bytes for our API; plain JSON for the general models. `null`
    /// (kept) for a get that found nothing.
    #[serde(default, skip_serializing_if = "Value::is_absent")]
    pub value: Value,
    /// Put invocations with a TTL: whole seconds (docs/SPEC.md section 3;
    /// readers that do not know it ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// An event with only its process, type and `f`; index and time are
    /// set when it is written.
    pub fn new(process: Process, kind: EventType, f: &str) -> Event {
        Event {
            index: 0,
            time: 0,
            process,
            kind,
            f: f.to_owned(),
            key: None,
            value: Value::Absent,
            ttl: None,
            consistency: None,
            min_timestamp: None,
            timestamp: None,
            node: None,
            error: None,
        }
    }
}

/// A `value` that tells "absent" from an explicit `null`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    #[default]
    Absent,
    Present(serde_json::Value),
}

impl Value {
    pub fn is_absent(&self) -> bool {
        matches!(self, Value::Absent)
    }

    pub fn json(&self) -> Option<&serde_json::Value> {
        match self {
            Value::Absent => None,
            Value::Present(value) => Some(value),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Absent => serializer.serialize_none(),
            Value::Present(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Value::Present)
    }
}

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {error}")]
    Parse { line: usize, error: String },
    #[error("line {line}: {problem}")]
    Invalid { line: usize, problem: String },
}

/// Appends events as JSON lines, flushing each, so a crash of the harness
/// still leaves a usable history.
pub struct HistoryWriter {
    out: BufWriter<std::fs::File>,
    next_index: u64,
}

impl HistoryWriter {
    pub fn create(path: &Path) -> Result<HistoryWriter, HistoryError> {
        Ok(HistoryWriter { out: BufWriter::new(std::fs::File::create(path)?), next_index: 0 })
    }

    /// Writes `event` with the next index (ignoring the one it carries).
    pub fn append(&mut self, mut event: Event) -> Result<Event, HistoryError> {
        event.index = self.next_index;
        self.next_index += 1;
        serde_json::to_writer(&mut self.out, &event).map_err(std::io::Error::from)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(event)
    }
}

/// Reads and validates a history: indexes in order, at most one operation
/// in flight per process, completions matching an invocation. A torn last
/// line (a harness killed mid-write) is dropped with a warning.
pub fn read(path: &Path) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    let mut structure = Structure::default();
    for (line, event) in Lines::open(path)? {
        let event = event?;
        structure.check(line, &event)?;
        events.push(event);
    }
    Ok(events)
}

/// A history's events one at a time, each with its line number, without
/// holding the file: the torn-last-line rule of [`read`] needs only one
/// line of look-ahead.
pub struct Lines {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    /// The line read ahead, and its number.
    next: Option<(usize, String)>,
    number: usize,
}

impl Lines {
    pub fn open(path: &Path) -> Result<Lines, HistoryError> {
        let mut lines =
            Lines { lines: std::io::BufReader::new(std::fs::File::open(path)?).lines(), next: None, number: 0 };
        lines.next = lines.read_line()?;
        Ok(lines)
    }

    /// The next line that is not blank.
    fn read_line(&mut self) -> Result<Option<(usize, String)>, HistoryError> {
        for line in self.lines.by_ref() {
            self.number += 1;
            let line = line?;
            if !line.trim().is_empty() {
                return Ok(Some((self.number, line)));
            }
        }
        Ok(None)
    }
}

impl Iterator for Lines {
    type Item = (usize, Result<Event, HistoryError>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (number, line) = self.next.take()?;
            self.next = match self.read_line() {
                Ok(next) => next,
                Err(error) => return Some((number, Err(error))),
            };
            match serde_json::from_str::<Event>(&line) {
                Ok(event) => return Some((number, Ok(event))),
                Err(error) if self.next.is_none() => {
                    tracing::warn!(line = number, %error, "dropping a torn last line");
                }
                Err(error) => {
                    return Some((number, Err(HistoryError::Parse { line: number, error: error.to_string() })))
                }
            }
        }
    }
}

/// The structural rules of docs/SPEC.md section 3.
pub fn validate(events: &[Event]) -> Result<(), HistoryError> {
    let mut structure = Structure::default();
    events.iter().enumerate().try_for_each(|(i, event)| structure.check(i + 1, event))
}

/// The structural rules, checked one event at a time: which operation
/// each client process has in flight.
#[derive(Debug, Default)]
pub struct Structure {
    in_flight: std::collections::HashMap<Process, String>,
}

impl Structure {
    /// Whether `event`, at `line`, may follow the events before it.
    pub fn check(&mut self, line: usize, event: &Event) -> Result<(), HistoryError> {
        let invalid = |problem: String| HistoryError::Invalid { line, problem };
        if event.process == Process::NEMESIS {
            return Ok(());
        }
        match event.kind {
            EventType::Invoke => {
                if let Some(f) = self.in_flight.insert(event.process, event.f.clone()) {
                    return Err(invalid(format!(
                        "process {:?} invokes {} with {f} still in flight",
                        event.process, event.f
                    )));
                }
            }
            _ => match self.in_flight.remove(&event.process) {
                Some(f) if f == event.f => {}
                Some(f) => return Err(invalid(format!("completion of {} but {f} was invoked", event.f))),
                None => return Err(invalid(format!("completion of {} with nothing in flight", event.f))),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_in_the_spec_format() {
        let line = r#"{"index":3,"time":1500,"process":2,"type":"ok","f":"get","key":"k1","value":null,"consistency":"strong","timestamp":17,"node":"n1"}"#;
        let event: Event = serde_json::from_str(line).unwrap();
        assert_eq!(event.value, Value::Present(serde_json::Value::Null));
        assert_eq!(event.process, Process::Client(2));
        assert_eq!(serde_json::to_string(&event).unwrap(), line);
        let nemesis = r#"{"index":0,"time":0,"process":"nemesis","type":"info","f":"start-partition","value":{"shape":"bridge"}}"#;
        let event: Event = serde_json::from_str(nemesis).unwrap();
        assert_eq!(event.process, Process::NEMESIS);
        assert_eq!(serde_json::to_string(&event).unwrap(), nemesis);
        let absent = r#"{"index":1,"time":2,"process":0,"type":"invoke","f":"delete","key":"k"}"#;
        assert_eq!(serde_json::to_string(&serde_json::from_str::<Event>(absent).unwrap()).unwrap(), absent);
    }

    #[test]
    fn structure_is_checked() {
        let event = |process, kind, f: &str| Event::new(Process::Client(process), kind, f);
        let fine =
            [event(0, EventType::Invoke, "put"), event(1, EventType::Invoke, "get"), event(0, EventType::Ok, "put")];
        assert!(validate(&fine).is_ok());
        assert!(validate(&[event(0, EventType::Invoke, "put"), event(0, EventType::Invoke, "get")]).is_err());
        assert!(validate(&[event(0, EventType::Ok, "put")]).is_err());
    }
}
