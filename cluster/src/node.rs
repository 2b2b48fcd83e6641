//! One node's service: what a put, get or delete does, apart from HTTP.
//!
//! For now a node answers from its own replica; the quorum coordination of
//! SPEC section 2 replaces the bodies of these methods, not their shapes.

use crate::api::{GetCommand, PutCommand};
use crate::clock::Clock;
use crate::config::Config;
use crate::record::Record;
use crate::storage::{Store, StoreError};
use crate::version::{node_tag, Version};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NodeError {
    /// A quorum or the asked `min_timestamp` was not reached in time; for a
    /// write the outcome is unknown.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Found {
        value: Vec<u8>,
        version: Version,
    },
    /// Nothing live: `version` is the tombstone's or expired value's, if any.
    NotFound {
        version: Option<Version>,
    },
}

pub struct Node {
    pub config: Config,
    pub clock: Arc<Clock>,
    pub store: Arc<Store>,
    tag: u32,
    sequence: AtomicU32,
}

impl Node {
    pub fn new(config: Config, clock: Arc<Clock>, store: Arc<Store>) -> Node {
        let tag = node_tag(&config.node_id);
        Node {
            config,
            clock,
            store,
            tag,
            sequence: AtomicU32::new(0),
        }
    }

    pub async fn put(&self, command: PutCommand) -> Result<Version, NodeError> {
        let held = self.store.get(command.key.as_bytes())?;
        let version = self.next_version(held.map(|r| r.version));
        let expires_at_ms = command
            .ttl_secs
            .map(|ttl| version.timestamp_ms + u64::from(ttl) * 1000);
        let record = Record::value(version, command.value, expires_at_ms);
        self.store.apply(command.key.into_bytes(), record).await?;
        Ok(version)
    }

    pub async fn delete(&self, key: String) -> Result<Version, NodeError> {
        let held = self.store.get(key.as_bytes())?;
        let version = self.next_version(held.map(|r| r.version));
        self.store
            .apply(key.into_bytes(), Record::tombstone(version))
            .await?;
        Ok(version)
    }

    pub async fn get(&self, command: &GetCommand) -> Result<ReadOutcome, NodeError> {
        let held = self.store.get(command.key.as_bytes())?;
        if let Some(min_ms) = command.min_timestamp_ms {
            if held
                .as_ref()
                .is_some_and(|record| record.version.timestamp_ms < min_ms)
            {
                return Err(NodeError::Unavailable(format!(
                    "no replica could answer with a version at least as new as min_timestamp {min_ms}"
                )));
            }
        }
        Ok(read_outcome(held, self.clock.now_ms()))
    }

    /// A version newer than `highest` and than any this node issued:
    /// `max(now, highest + 1)` with this node's tie-break.
    fn next_version(&self, highest: Option<Version>) -> Version {
        let floor_ms = highest.map_or(0, |v| v.timestamp_ms + 1);
        let timestamp_ms = self.clock.now_ms().max(floor_ms);
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        Version::new(
            timestamp_ms,
            u64::from(self.tag) << 32 | u64::from(sequence),
        )
    }
}

/// How a stored record reads at `now_ms`.
pub fn read_outcome(held: Option<Record>, now_ms: u64) -> ReadOutcome {
    match held {
        Some(record) if record.is_live_at(now_ms) => ReadOutcome::Found {
            value: record.value,
            version: record.version,
        },
        Some(record) => ReadOutcome::NotFound {
            version: Some(record.version),
        },
        None => ReadOutcome::NotFound { version: None },
    }
}
