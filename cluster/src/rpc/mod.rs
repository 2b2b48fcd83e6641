//! Internode RPC: how replicas talk to each other over HTTP.
//!
//! Internal routes live under `/internal/v1/`, on the client listener or,
//! with `--internal-listen`, on a listener of their own (a private
//! interface, say), and
//! answer only requests that carry the cluster secret in [`SECRET_HEADER`];
//! without it they look like any unknown path (a JSON 404), so a client
//! cannot call them by accident. Bodies are compact binary ([`codec`]), not
//! JSON: this path carries every replica read and write of every request.
//!
//! Reads and writes to one peer are batched ([`client`]): calls queue per
//! peer, and each of a few in-flight HTTP requests carries every call that
//! was waiting, so under load one round trip and one group commit serve
//! many client requests.

pub mod client;
pub mod codec;
pub mod routes;

pub use kvapi::SECRET_HEADER;
pub const BATCH_PATH: &str = "/internal/v1/batch";
pub const WRITE_BATCH_PATH: &str = "/internal/v1/write-batch";
pub const SYNC_PATH: &str = "/internal/v1/sync";
pub const PING_PATH: &str = "/internal/v1/ping";
pub const GOSSIP_PATH: &str = "/internal/v1/gossip";
pub const HANDOFF_PATH: &str = "/internal/v1/handoff";
