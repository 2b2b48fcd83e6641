//! Sequential models the linearizability checker checks histories against.
//!
//! A model says what one operation does to a state, and whether the output
//! it returned is possible there. Models are pure.

pub mod append_kv;
pub mod cas_register;
pub mod register;

use crate::history::{Event, Process};
use std::fmt::Debug;
use std::hash::Hash;

/// One operation of one key, as a model sees it: what the checkers
/// search over.
#[derive(Clone, Debug)]
pub struct Operation<O> {
    pub process: Process,
    /// History index of the invocation (for evidence).
    pub index: u64,
    pub invoke_ns: u64,
    /// `None`: unknown outcome; it may take effect at any later time.
    pub return_ns: Option<u64>,
    pub op: O,
}

/// A history time (ns since the run's start) as models and evidence write it.
pub fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

pub trait Model: Sync {
    type State: Clone + Eq + Hash + Debug + Send;
    type Op: Clone + Debug + Send + Sync;

    fn name(&self) -> &'static str;

    fn init(&self) -> Self::State;

    /// The state after `op` takes effect in `state`, or `None` if `op`
    /// could not have returned what it did there. An operation whose
    /// outcome is unknown (`info`) carries no output and always applies.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// True when `op` never changes any state (a read, a failed
    /// compare-and-set). The checker places such operations as soon as
    /// they fit, which prunes most of its search; a wrong `true` makes it
    /// unsound, so the default is `false`.
    fn read_only(&self, _op: &Self::Op) -> bool {
        false
    }

    /// True when `op` is a blind write: it always applies, and the state
    /// after it is the same whatever the state before (a plain put). The
    /// checker then skips writes nothing could observe; a wrong `true`
    /// makes it unsound, so the default is `false`.
    fn blind(&self, _op: &Self::Op) -> bool {
        false
    }

    /// False when the read-only `read` can never succeed after `state`,
    /// whatever subset of `writers` takes effect before it, in whatever
    /// order. Lets the checker drop a branch long before the read's return
    /// would; a wrong `false` makes it unsound, so the default is `true`.
    fn may_read<'o>(&self, _state: &Self::State, _read: &Self::Op, _writers: impl Iterator<Item = &'o Self::Op>) -> bool
    where
        Self::Op: 'o,
    {
        true
    }

    /// The operation an invocation and its completion stand for: `Ok(None)`
    /// when it takes no part (a failed operation, a read whose outcome is
    /// unknown, an eventual read), an error when the events make no sense
    /// for this model.
    fn operation(&self, invoke: &Event, completion: &Event) -> Result<Option<Self::Op>, String>;

    /// A short description for evidence ("put v12", "get → v15").
    fn describe(&self, op: &Self::Op) -> String;

    /// Plain words for why `ops[blocked]` cannot be placed, when the model
    /// knows its classic anomalies.
    fn explain(&self, _key: &str, _ops: &[Operation<Self::Op>], _blocked: usize) -> Option<Explanation> {
        None
    }
}

/// Why an operation cannot be placed, in words, with the operations the
/// words name (positions in the key's operations), so a report can
/// highlight them.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    pub text: String,
    pub named: Vec<usize>,
}

/// The models `harness check --model` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Our API: put, get, delete on one register per key.
    Register,
    CasRegister,
    AppendKv,
}

impl ModelKind {
    pub fn parse(text: &str) -> Result<ModelKind, String> {
        serde_json::from_value(serde_json::Value::String(text.to_owned()))
            .map_err(|_| format!("unknown model {text:?}: expected register, cas-register or append-kv"))
    }
}
