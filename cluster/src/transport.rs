//! How a coordinator reaches replicas: the [`Transport`] trait, its
//! error, and the messages of an anti-entropy exchange.
//!
//! Its own module so that the protocol modules (`coordinator`, `hints`,
//! `antientropy`) depend on it and not on each other: the node wires an
//! HTTP implementation (`rpc::client`, with a local shortcut in `node`),
//! the simulation a fake network.

use crate::record::Record;
use crate::view::View;
use std::future::Future;
use thiserror::Error;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RpcError {
    #[error("{0} is unreachable: {1}")]
    Unreachable(String, String),
    #[error("{0} did not answer in time")]
    Timeout(String),
    #[error("{0} failed: {1}")]
    Remote(String, String),
    /// The replica places the key (or knows the membership) differently:
    /// the caller should exchange views with it and may retry.
    #[error("{0} has another view of the membership")]
    StaleView(String),
}

/// How a coordinator reaches one replica (itself included).
pub trait Transport: Send + Sync + 'static {
    /// The replica's record for `key`, without coordination. `fence` is
    /// the caller's placement of the key ([`crate::topology::Placement::fence`])
    /// or [`crate::replica::UNFENCED`].
    fn read(&self, to: &str, key: &[u8], fence: u64) -> impl Future<Output = Result<Option<Record>, RpcError>> + Send;
    /// Applies `record` if newer; `Ok` once it is durable on that replica.
    fn write(
        &self,
        to: &str,
        key: &[u8],
        record: &Record,
        fence: u64,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
    /// A put's one-round write: applies `record` if newer; `Ok(true)` once
    /// durable and only if it was newer than all that replica held
    /// ([`crate::replica::Replica::write_newest`]).
    fn write_newest(
        &self,
        to: &str,
        key: &[u8],
        record: &Record,
        fence: u64,
    ) -> impl Future<Output = Result<bool, RpcError>> + Send;
    /// Applies each record if newer; `Ok` once all are durable. `from`
    /// is the sender: the receiver takes only keys that both own in its
    /// view (see [`crate::replica::Replica::write_batch`]).
    fn write_batch(
        &self,
        to: &str,
        from: &str,
        entries: Vec<(Vec<u8>, Record)>,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
    /// One anti-entropy exchange: see [`crate::antientropy`].
    fn sync(&self, to: &str, request: SyncRequest) -> impl Future<Output = Result<SyncReply, RpcError>> + Send;
    /// One gossip exchange: see [`crate::gossip`].
    fn gossip(&self, to: &str, message: Gossip) -> impl Future<Output = Result<Gossip, RpcError>> + Send;
    /// One page of a member's part in a move: see [`crate::handoff`].
    fn handoff(&self, to: &str, request: HandoffRequest)
        -> impl Future<Output = Result<HandoffReply, RpcError>> + Send;
}

/// A gossip message: what the sender holds (each member's entry version
/// and digest) and the entries it believes the receiver lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gossip {
    pub digest: ViewDigest,
    pub entries: View,
}

pub use crate::view::ViewDigest;

/// Asks a member to push, for one page of its store, its copies of the
/// keys that move to new owners in `mover`'s change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffRequest {
    /// The joining or leaving member whose change this is.
    pub mover: String,
    /// The version of the mover's entry the receiver must know (else it
    /// answers [`RpcError::StaleView`]).
    pub mover_version: u64,
    /// Where the page starts: after this key (`None`: from the start).
    pub after: Option<Vec<u8>>,
    /// Instead of pushing: drop the records of keys the receiver owns
    /// neither now nor next (before a change, see [`crate::handoff`]).
    pub purge: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffReply {
    /// Records pushed (durably) to new owners in this page, or dropped
    /// by a purge.
    pub pushed: u64,
    /// Where the next page starts; `None` once the store is done.
    pub next: Option<Vec<u8>>,
}

/// A key and its record.
pub type Entry = (Vec<u8>, Record);

/// The leaves of a replica's hash tree (see [`crate::antientropy`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests(pub Vec<u64>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    pub from: String,
    pub digests: Digests,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReply {
    pub digests: Digests,
    /// The answering replica's records in the buckets that differ.
    pub records: Vec<Entry>,
    /// Whether `records` holds every such record (not cut at a cap).
    pub complete: bool,
}
