//! Completed client operations of our API, paired from a history: the
//! common input of the durability, session and staleness checkers.

use super::pairing::for_each_pair;
use crate::history::{Event, EventType, Process};

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

/// Every client operation, in invocation order ([`for_each_pair`]; one
/// never completed is `info`, with no completion time).
pub fn completed(events: &[Event]) -> Vec<Completed> {
    let mut done = Vec::new();
    let paired = for_each_pair(events, |invoke, completion| {
        let Process::Client(process) = invoke.process else { return Ok(()) };
        // A get's value is what it read; a put's, what it wrote.
        let carrier = match completion {
            Some(completion) if invoke.f == "get" => completion,
            _ => invoke,
        };
        done.push(Completed {
            process,
            f: invoke.f.clone(),
            key: invoke.key.clone().unwrap_or_default(),
            value: carrier.value.json().and_then(|v| v.as_str().map(str::to_owned)),
            ttl: invoke.ttl,
            consistency: invoke.consistency.clone(),
            min_timestamp: invoke.min_timestamp,
            timestamp: completion.and_then(|c| c.timestamp),
            kind: completion.map_or(EventType::Info, |c| c.kind),
            invoke_ns: invoke.time,
            complete_ns: completion.map(|c| c.time),
            index: invoke.index,
        });
        Ok::<(), std::convert::Infallible>(())
    });
    let Ok(()) = paired;
    done.sort_by_key(|op| op.index);
    done
}
