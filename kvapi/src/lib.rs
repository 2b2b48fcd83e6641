//! The JSON shapes of kvnode's client API (docs/SPEC.md section 1) and of
//! its test hooks, as types.
//!
//! A crate of its own so that a client of the store, the harness first,
//! depends on the API and on nothing of the store (no sled, axum or
//! allocator in its build). The node uses the same types, so the two
//! cannot drift apart.
//!
//! Architecture invariant: only this crate defines the JSON shapes of the
//! client API and the test hooks.

pub mod wire;

/// The header that carries the cluster secret: every internal route and
/// every test hook answers only a caller that sends it.
pub const SECRET_HEADER: &str = "x-kv-cluster-secret";

/// How a get reads: the query's `consistency` parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// One replica; fast; may be stale unless `min_timestamp` is given.
    #[default]
    Eventual,
    /// A quorum; linearizable with all writes.
    Strong,
}

impl Consistency {
    pub fn as_str(&self) -> &'static str {
        match self {
            Consistency::Eventual => "eventual",
            Consistency::Strong => "strong",
        }
    }
}
