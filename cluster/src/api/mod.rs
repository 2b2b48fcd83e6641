//! The client API: its wire types, request parsing and error bodies.
//!
//! The JSON shapes themselves live in the `kvapi` crate (re-exported here
//! as [`wire`]), which clients share; handlers turn requests into the
//! typed commands of [`request`] and results into the bodies of [`wire`].

pub mod error;
pub mod query;
pub mod request;
pub use kvapi::wire;

pub use error::ApiError;
pub use kvapi::Consistency;
pub use request::{DeleteCommand, GetCommand, Limits, PutCommand};
