//! Linearizability, generic over a [`Model`]: the Wing–Gong–Lowe search
//! with Porcupine's cache of (linearized set, state), on each key apart
//! (P-compositionality), keys in parallel, under a time and memory budget.
//!
//! Operations whose outcome is unknown (`info`, or never completed) may
//! take effect at any point after their invocation, or never; failed ones
//! never happened. Over budget, a key's verdict is `unknown`, never a guess;
//! once one key is proven not linearizable, [`AfterAnomaly`] says how much
//! more the other keys are searched, and those cut say so.
//!
//! One concept per module: `entries` (the bitset and the time-ordered
//! lists the search walks), `search` (one key), `shared` (what the
//! searches of one check share), `driver` (every key, in parallel) and
//! `evidence` (the verdict, and what a reader is shown of an anomaly).

mod driver;
mod entries;
mod evidence;
mod search;
mod shared;

pub use driver::{check, Linearizability};

use super::cache::FastMap;
use super::pairing::for_each_pair;
use crate::history::{Event, EventType};
use crate::model::{Model, Operation};
use search::{Scratch, Search};
use shared::Shared;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Per key.
    pub time: Duration,
    /// Cache entries per key (each a linearized set and a state).
    pub max_cache_entries: usize,
    /// How much more is searched once one key is proven not linearizable.
    pub after_anomaly: AfterAnomaly,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            time: Duration::from_secs(60),
            max_cache_entries: 4_000_000,
            after_anomaly: AfterAnomaly::Share(AFTER_ANOMALY),
        }
    }
}

/// What the check does once one key is proven not linearizable. The
/// verdict is settled then (invalid); what is left is how much more of the
/// picture is worth the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterAnomaly {
    /// The other keys' searches are cancelled at once and reported as not
    /// searched, as Porcupine does (`harness check`'s default).
    Stop,
    /// The keys not yet decided share this much time in all, not each: a
    /// run's report can show a few anomalies and its check stays fast.
    Share(Duration),
    /// Every key is searched to its own budget: the whole picture.
    SearchAll,
}

/// The time a run's other keys share after its first anomaly.
pub const AFTER_ANOMALY: Duration = Duration::from_secs(1);

/// Why a key's history is not linearizable.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The longest linearization found, as operation positions in order.
    pub longest_prefix: Vec<usize>,
    /// The operation that could not be placed after it.
    pub blocked: usize,
    /// The operations around it: concurrent with it, or just linearized.
    pub window: Vec<usize>,
}

#[derive(Clone, Debug)]
pub enum KeyVerdict {
    Linearizable,
    NotLinearizable(Failure),
    /// Over the key's own budget: undecided.
    Unknown(String),
    /// Not searched, or not to the end, because another key was already
    /// proven not linearizable ([`AfterAnomaly`]): undecided.
    NotSearched(String),
}

/// Each key's operations.
pub type ByKey<O> = BTreeMap<String, Vec<Operation<O>>>;

/// Pairs invocations with completions ([`for_each_pair`]), per key, as
/// the model sees them.
pub fn operations<M: Model>(model: &M, events: &[Event]) -> Result<ByKey<M::Op>, String> {
    // Keys are looked up by the events' own text and copied once each at
    // the end, not once per operation.
    let mut by_key: FastMap<Option<&str>, Vec<Operation<M::Op>>> = FastMap::default();
    for_each_pair(events, |invoke, completion| match completion {
        Some(completion) => {
            let return_ns = (completion.kind == EventType::Ok).then_some(completion.time);
            add_operation(model, &mut by_key, invoke, completion, return_ns)
        }
        None => {
            // Never completed: unknown, like `info`.
            let mut completion = invoke.clone();
            completion.kind = EventType::Info;
            add_operation(model, &mut by_key, invoke, &completion, None)
        }
    })?;
    Ok(by_key.into_iter().map(|(key, ops)| (key.unwrap_or_default().to_owned(), ops)).collect())
}

fn add_operation<'e, M: Model>(
    model: &M,
    by_key: &mut FastMap<Option<&'e str>, Vec<Operation<M::Op>>>,
    invoke: &'e Event,
    completion: &Event,
    return_ns: Option<u64>,
) -> Result<(), String> {
    let op = model.operation(invoke, completion).map_err(|e| format!("history line {}: {e}", invoke.index + 1))?;
    if let Some(op) = op {
        let operation =
            Operation { process: invoke.process, index: invoke.index, invoke_ns: invoke.time, return_ns, op };
        // An empty key is never compared: glibc's vector memcmp of zero
        // bytes at an empty string's dangling address takes a slow
        // microcode assist (300 ns each on this machine), and histories of
        // one register have no key at all.
        let key = invoke.key.as_deref().filter(|k| !k.is_empty());
        by_key.entry(key).or_default().push(operation);
    }
    Ok(())
}

/// Checks one key's operations.
pub fn check_key<M: Model>(model: &M, ops: &[Operation<M::Op>], budget: &Budget) -> KeyVerdict {
    Search::new(model, ops, &Shared::new(budget.after_anomaly, 1), &|| {}, Scratch::default()).run(budget)
}
