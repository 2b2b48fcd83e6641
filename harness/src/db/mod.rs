//! The cluster under test, and what can be done to its nodes.
//!
//! A [`Db`] starts N `kvnode`s, tells the harness where each one's client
//! API is, and kills, restarts, pauses and resumes them. Backends:
//! [`docker::DockerDb`] (containers on a user network; the one that can
//! partition) and [`local::LocalDb`] (processes on loopback).

pub mod disks;
pub mod docker;
pub mod local;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DbError {
    #[error("docker: {0}")]
    Docker(String),
    #[error("node {0} is not part of this cluster")]
    UnknownNode(String),
    #[error("node {node} did not become ready within {waited:?}: {detail}")]
    NotReady { node: String, waited: Duration, detail: String },
    /// The node's process exited instead of serving (it refused to start).
    #[error("node {node} refused to start: {detail}")]
    Refused { node: String, detail: String },
    #[error("the power-loss file system of {node}: {detail}")]
    Disk { node: String, detail: String },
    #[error("{0}")]
    Process(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the {backend} backend cannot {what}: {why}")]
    Unsupported { backend: &'static str, what: &'static str, why: &'static str },
}

/// What each node's data folder sits on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Disks {
    /// The host's (or the container's) own file system.
    #[default]
    Plain,
    /// A power-loss file system ([`crate::powerfs`]) mounted on the host,
    /// one per node: written-but-unsynced data can be thrown away, and the
    /// harness reaches the folder for disk corruption. Needs root and
    /// `/dev/fuse`.
    PowerLoss,
}

/// The shape of a cluster to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Node ids are `n1..=nN`.
    pub nodes: usize,
    /// Extra `kvnode` flags for every node.
    pub extra_flags: Vec<String>,
    pub disks: Disks,
}

impl ClusterSpec {
    pub fn new(nodes: usize) -> ClusterSpec {
        assert!(nodes > 0, "a cluster has at least one node");
        ClusterSpec { nodes, extra_flags: Vec::new(), disks: Disks::Plain }
    }

    pub fn node_ids(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }
}

/// `kvnode` flags every harness cluster uses: test hooks on (clock skew,
/// replica status, probes) and background work fast enough for short runs.
pub fn harness_flags() -> Vec<String> {
    [
        "--test-hooks",
        "--heartbeat-interval-ms",
        "200",
        "--failure-timeout-ms",
        "1000",
        "--hint-interval-ms",
        "500",
        "--anti-entropy-interval-ms",
        "2000",
        "--rpc-timeout-ms",
        "500",
        "--request-timeout-ms",
        "3000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The harness's flags with `extra` on top: a flag given in `extra`
/// replaces the harness's own (with its value), since kvnode takes each
/// flag once.
pub fn node_flags(extra: &[String]) -> Vec<String> {
    let defaults = harness_flags();
    let mut flags = Vec::new();
    let mut i = 0;
    while i < defaults.len() {
        let takes_value = defaults.get(i + 1).is_some_and(|next| !next.starts_with("--"));
        let width = if takes_value { 2 } else { 1 };
        if !extra.contains(&defaults[i]) {
            flags.extend_from_slice(&defaults[i..i + width]);
        }
        i += width;
    }
    flags.extend_from_slice(extra);
    flags
}

/// Where a node's network namespace is, for packet filters run from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetNamespace {
    /// A process inside the namespace (`/proc/PID/ns/net`).
    pub pid: u32,
    /// The node's address on the cluster network.
    pub ip: String,
}

/// A running cluster.
pub trait Db: Send + Sync {
    fn backend(&self) -> &'static str;

    /// `n1..=nN`.
    fn nodes(&self) -> Vec<String>;

    /// The base URL (`http://HOST:PORT`) at which the harness reaches
    /// `node`'s client API right now (it may change after a restart).
    fn base_url(&self, node: &str) -> Result<String, DbError>;

    /// `kill -9`: no shutdown; the node's data stays.
    fn kill(&self, node: &str) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Starts a killed node again and waits until it is ready.
    fn start(&self, node: &str) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Freezes every process of the node (it stops answering, keeps state).
    fn pause(&self, node: &str) -> impl Future<Output = Result<(), DbError>> + Send;

    fn resume(&self, node: &str) -> impl Future<Output = Result<(), DbError>> + Send;

    /// The node's network namespace, for partitions and packet loss.
    fn net_namespace(&self, node: &str) -> impl Future<Output = Result<NetNamespace, DbError>> + Send;

    /// The node's data folder on this host, where the harness can reach it
    /// while the node is stopped (disk faults): local processes, and
    /// containers whose folder is a power-loss file system.
    fn data_dir(&self, node: &str) -> Result<PathBuf, DbError>;

    /// Throws away whatever the stopped node wrote that its file system
    /// has not made durable (a power loss); needs [`Disks::PowerLoss`].
    /// Returns what was lost, for the history.
    fn lose_unsynced(&self, node: &str) -> impl Future<Output = Result<serde_json::Value, DbError>> + Send;

    /// Makes every fsync on the node's disk take `delay` longer (a slow
    /// disk; zero heals it); needs [`Disks::PowerLoss`].
    fn set_fsync_delay(&self, node: &str, delay: Duration) -> Result<(), DbError>;

    /// Writes each node's log (stdout and stderr) to `dir/NODE.log`.
    fn collect_logs(&self, dir: &Path) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Stops and removes everything this cluster made.
    fn teardown(self) -> impl Future<Output = Result<(), DbError>> + Send;
}

/// Polls `GET /health` until it answers 200 or `limit` passes.
pub async fn wait_healthy(node: &str, base_url: &str, limit: Duration) -> Result<(), DbError> {
    wait_ready(node, base_url, limit, || async { None }).await
}

/// [`wait_healthy`], giving up at once with [`DbError::Refused`] when
/// `exited` says the node's process is gone (and why).
pub async fn wait_ready<F, Fut>(node: &str, base_url: &str, limit: Duration, exited: F) -> Result<(), DbError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().expect("http client");
    let start = std::time::Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed() < limit {
        match client.get(format!("{base_url}/health")).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last = format!("status {}", response.status()),
            Err(error) => last = error.to_string(),
        }
        if let Some(detail) = exited().await {
            return Err(DbError::Refused { node: node.to_owned(), detail });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(DbError::NotReady { node: node.to_owned(), waited: limit, detail: last })
}

/// The file a node finds in its data folder when its data was lost: it
/// repairs from its peers before answering reads (kvnode's
/// `--recover-from-peers`, see `cluster::recovery`).
pub const RECOVER_MARKER: &str = "recover-from-peers";

/// What an operator does with a node whose disk is beyond repair: empties
/// its data folder and leaves [`RECOVER_MARKER`], so that the node starts
/// empty and repairs from its peers before it answers reads.
pub fn wipe_data(dir: &Path) -> Result<(), DbError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::File::create(dir.join(RECOVER_MARKER))?.sync_all()?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The last `max_bytes` of a node's log, for a message.
pub fn log_tail(log: &[u8], max_bytes: usize) -> String {
    let text = String::from_utf8_lossy(&log[log.len().saturating_sub(max_bytes)..]).into_owned();
    text.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_flags_replace_the_harness_defaults() {
        let extra: Vec<String> = ["--anti-entropy-interval-ms", "900", "--test-bug", "lww"].map(String::from).to_vec();
        let flags = node_flags(&extra);
        assert_eq!(flags.iter().filter(|f| *f == "--anti-entropy-interval-ms").count(), 1);
        let at = flags.iter().position(|f| f == "--anti-entropy-interval-ms").unwrap();
        assert_eq!(flags[at + 1], "900");
        assert!(flags.contains(&"--test-hooks".to_owned()) && flags.contains(&"--hint-interval-ms".to_owned()));
        assert_eq!(node_flags(&[]), harness_flags());
    }
}
