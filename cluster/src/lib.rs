//! The reference leaderless key-value store.
//!
//! See ARCHITECTURE.md at the root for the code map and invariants.

pub mod api;
pub mod clock;
pub mod compaction;
pub mod config;
pub mod node;
pub mod record;
pub mod server;
pub mod storage;
pub mod version;
