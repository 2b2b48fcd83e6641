//! The cluster under test, and what can be done to its nodes.
//!
//! A [`Db`] starts the N nodes a [`SystemDescription`] describes, tells
//! the harness where each one's client API is, and kills, restarts, pauses
//! and resumes them. Backends: [`docker::DockerDb`] (containers on a user
//! network; the one that can partition), [`local::LocalDb`] (processes on
//! loopback) and [`external::ExternalDb`] (nodes someone else started).

pub mod disks;
pub mod docker;
pub mod external;
pub mod local;

use crate::system::{Ready, SystemDescription};
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
    /// What the nodes are, how to start them, when they are up.
    pub system: SystemDescription,
    /// Node ids are `n1..=nN`.
    pub nodes: usize,
    /// Extra launch flags for every node; each replaces the description's
    /// flag of the same name.
    pub extra_flags: Vec<String>,
    pub disks: Disks,
    /// Fills `{cluster_secret}`: fresh for every cluster, from the OS's
    /// randomness (not the run's seed: it is no part of what a replay
    /// repeats).
    pub cluster_secret: String,
}

impl ClusterSpec {
    /// `nodes` kvnodes.
    pub fn new(nodes: usize) -> ClusterSpec {
        ClusterSpec::of(SystemDescription::kvnode(), nodes)
    }

    pub fn of(system: SystemDescription, nodes: usize) -> ClusterSpec {
        assert!(nodes > 0, "a cluster has at least one node");
        let cluster_secret = format!("kvtest-{:032x}", rand::random::<u128>());
        ClusterSpec { system, nodes, extra_flags: Vec::new(), disks: Disks::Plain, cluster_secret }
    }

    pub fn node_ids(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }
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

    /// The secret the nodes were started with (`{cluster_secret}` in their
    /// description), which their test hooks ask for; `None` when the
    /// harness did not start them.
    fn cluster_secret(&self) -> Option<String> {
        None
    }

    /// Starts one more node (`n<K+1>`) that joins the running cluster
    /// through its current members (the description's `join_args`), and
    /// waits until its client API answers; its join may still be under
    /// way. Returns its id. (Both backends here; external nodes cannot.)
    fn add_node(&self) -> impl Future<Output = Result<String, DbError>> + Send {
        let backend = self.backend();
        async move { Err(DbError::Unsupported { backend, what: "add nodes", why: "not built for this backend yet" }) }
    }

    /// Waits, at most `limit`, until `node`'s process has exited by itself
    /// (it left the cluster), then drops it from [`Db::nodes`] (its log is
    /// still collected).
    fn retire_node(&self, node: &str, limit: Duration) -> impl Future<Output = Result<(), DbError>> + Send {
        let (backend, _, _) = (self.backend(), node, limit);
        async move { Err(DbError::Unsupported { backend, what: "retire nodes", why: "not built for this backend yet" }) }
    }

    /// Writes each node's log (stdout and stderr) to `dir/NODE.log`.
    fn collect_logs(&self, dir: &Path) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Stops and removes everything this cluster made.
    fn teardown(self) -> impl Future<Output = Result<(), DbError>> + Send;
}

/// Waits until the node whose client port is `port` on 127.0.0.1 is up
/// as `ready` defines it, or `limit` passes; gives up at once with
/// [`DbError::Refused`] when `exited` says the node's process is gone (and
/// why).
pub async fn wait_up<F, Fut>(node: &str, ready: &Ready, port: u16, limit: Duration, exited: F) -> Result<(), DbError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().expect("http client");
    let start = std::time::Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed() < limit {
        match ready {
            Ready::Http(path) => match client.get(format!("http://127.0.0.1:{port}{path}")).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => last = format!("status {}", response.status()),
                Err(error) => last = error.to_string(),
            },
            Ready::Listening => {
                let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
                match tokio::time::timeout(Duration::from_millis(500), connect).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(error)) => last = format!("not listening: {error}"),
                    Err(_) => last = "not listening: connect timed out".into(),
                }
            }
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
