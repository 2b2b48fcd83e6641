//! How a coordinator reaches replicas: the [`Transport`] trait, its
//! error, and the messages of an anti-entropy exchange.
//!
//! Its own module so that the protocol modules (`coordinator`, `hints`,
//! `antientropy`) depend on it and not on each other: the node wires an
//! HTTP implementation (`rpc::client`, with a local shortcut in `node`),
//! the simulation a fake network.

use crate::record::Record;
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
}

/// How a coordinator reaches one replica (itself included).
pub trait Transport: Send + Sync + 'static {
    /// The replica's record for `key`, without coordination.
    fn read(&self, to: &str, key: &[u8]) -> impl Future<Output = Result<Option<Record>, RpcError>> + Send;
    /// Applies `record` if newer; `Ok` once it is durable on that replica.
    fn write(&self, to: &str, key: &[u8], record: &Record) -> impl Future<Output = Result<(), RpcError>> + Send;
    /// Applies each record if newer; `Ok` once all are durable.
    fn write_batch(
        &self,
        to: &str,
        entries: Vec<(Vec<u8>, Record)>,
    ) -> impl Future<Output = Result<(), RpcError>> + Send;
    /// One anti-entropy exchange: see [`crate::antientropy`].
    fn sync(&self, to: &str, request: SyncRequest) -> impl Future<Output = Result<SyncReply, RpcError>> + Send;
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
