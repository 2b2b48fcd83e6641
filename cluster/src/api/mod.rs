//! The client API: its wire types, request parsing and error bodies.
//!
//! Architecture invariant: only `cluster::api` defines the JSON shapes of
//! the client API (docs/SPEC.md section 1); handlers turn requests into the typed
//! commands of [`request`] and results into the bodies of [`wire`].

pub mod error;
pub mod query;
pub mod request;
pub mod wire;

pub use error::ApiError;
pub use request::{Consistency, DeleteCommand, GetCommand, Limits, PutCommand};
