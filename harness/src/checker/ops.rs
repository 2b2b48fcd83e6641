//! Completed client operations of our API, paired from a history: the
//! common input of the durability, session and staleness checkers.

use crate::history::{Event, EventType, Process};
use std::collections::HashMap;

/// One client operation with its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Completed {
    pub process: u64,
    pub f: String,
    pub key: String,
    /// Put: the value written. Get (ok): the value read, `None` for not found.
    pub value: Option<String>,
    /// Put: its TTL in seconds, if any.
    pub ttl: Option<u32>,
    pub consistency: Option<String>,
    pub min_timestamp: Option<u64>,
    /// The server's timestamp of the version written or read.
    pub timestamp: Option<u64>,
    pub kind: EventType,
    pub invoke_ns: u64,
    /// `None` when it never completed.
    pub complete_ns: Option<u64>,
    pub index: u64,
}

impl Completed {
    pub fn is_write(&self) -> bool {
        self.f == "put" || self.f == "delete"
    }

    pub fn ok(&self) -> bool {
        self.kind == EventType::Ok
    }
}

/// Every client operation, in invocation order.
pub fn completed(events: &[Event]) -> Vec<Completed> {
    let mut open: HashMap<u64, &Event> = HashMap::new();
    let mut done = Vec::new();
    for event in events {
        let Process::Client(process) = event.process else { continue };
        if event.kind == EventType::Invoke {
            open.insert(process, event);
            continue;
        }
        let Some(invoke) = open.remove(&process) else { continue };
        let value = if event.f == "get" {
            event.value.json().and_then(|v| v.as_str().map(str::to_owned))
        } else {
            invoke.value.json().and_then(|v| v.as_str().map(str::to_owned))
        };
        done.push(Completed {
            process,
            f: invoke.f.clone(),
            key: invoke.key.clone().unwrap_or_default(),
            value,
            ttl: invoke.ttl,
            consistency: invoke.consistency.clone(),
            min_timestamp: invoke.min_timestamp,
            timestamp: event.timestamp,
            kind: event.kind,
            invoke_ns: invoke.time,
            complete_ns: Some(event.time),
            index: invoke.index,
        });
    }
    for (process, invoke) in open {
        done.push(Completed {
            process,
            f: invoke.f.clone(),
            key: invoke.key.clone().unwrap_or_default(),
            value: invoke.value.json().and_then(|v| v.as_str().map(str::to_owned)),
            ttl: invoke.ttl,
            consistency: invoke.consistency.clone(),
            min_timestamp: invoke.min_timestamp,
            timestamp: None,
            kind: EventType::Info,
            invoke_ns: invoke.time,
            complete_ns: None,
            index: invoke.index,
        });
    }
    done.sort_by_key(|op| op.index);
    done
}
