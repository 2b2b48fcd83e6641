//! Sequential models the linearizability checker checks histories against.
//!
//! A model says what one operation does to a state, and whether the output
//! it returned is possible there. Models are pure.

pub mod append_kv;
pub mod cas_register;
pub mod register;

use crate::checker::linearizable::Operation;
use crate::history::Event;
use std::fmt::Debug;
use std::hash::Hash;

pub trait Model: Sync {
    type State: Clone + Eq + Hash + Debug + Send;
    type Op: Clone + Debug + Send + Sync;

    fn name(&self) -> &'static str;

    fn init(&self) -> Self::State;

    /// The state after `op` takes effect in `state`, or `None` if `op`
    /// could not have returned what it did there. An operation whose
    /// outcome is unknown (`info`) carries no output and always applies.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// The operation an invocation and its completion stand for: `Ok(None)`
    /// when it takes no part (a failed operation, a read whose outcome is
    /// unknown, an eventual read), an error when the events make no sense
    /// for this model.
    fn operation(&self, invoke: &Event, completion: &Event) -> Result<Option<Self::Op>, String>;

    /// A short description for evidence ("put v12", "get → v15").
    fn describe(&self, op: &Self::Op) -> String;

    /// Plain words for why `ops[blocked]` cannot be placed, when the model
    /// knows its classic anomalies.
    fn explain(&self, _key: &str, _ops: &[Operation<Self::Op>], _blocked: usize) -> Option<String> {
        None
    }
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
