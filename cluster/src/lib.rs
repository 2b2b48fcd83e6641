//! The reference leaderless key-value store.
//!
//! See ARCHITECTURE.md at the root for the code map and invariants.

pub mod antientropy;
pub mod api;
pub mod clock;
pub mod compaction;
pub mod config;
pub mod coordinator;
pub mod gossip;
pub mod handoff;
pub mod hints;
pub mod listener;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod record;
pub mod recovery;
pub mod replica;
pub mod ring;
pub mod rpc;
pub mod server;
pub mod storage;
pub mod test_bug;
pub mod test_hooks;
pub mod topology;
pub mod transport;
pub mod version;
pub mod view;
