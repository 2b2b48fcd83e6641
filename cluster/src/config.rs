//! `kvnode` configuration, from flags or `KV_*` environment variables.

use crate::api::Limits;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::test_bug::{TestBug, TestBugs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StorageKind {
    /// sled behind our write-ahead log: durable.
    Sled,
    /// A map in memory: for tests; everything is lost with the process.
    Memory,
}

/// A node of the reference leaderless key-value store.
#[derive(Clone, Debug, Parser)]
#[command(name = "kvnode", version, about)]
pub struct Config {
    /// This node's id, unique in the cluster (e.g. `n1`).
    #[arg(long, env = "KV_NODE_ID")]
    pub node_id: String,

    /// Address to serve on; port 0 picks a free port (the readiness line
    /// on stdout tells which).
    #[arg(long, env = "KV_LISTEN", default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,

    /// A second address for the replica protocol alone (the internal
    /// routes), e.g. on a private interface; the client address then
    /// serves no internal route. Peers must be given by this address.
    #[arg(long, env = "KV_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,

    /// Connections open at once, per listener; beyond that new ones wait
    /// in the kernel's backlog.
    #[arg(long, env = "KV_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// A request's head must arrive within this; it also closes keep-alive
    /// connections idle this long.
    #[arg(long, env = "KV_HEADER_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub header_read_timeout_ms: u64,

    /// A request's body must arrive within this (408 and a closed
    /// connection otherwise).
    #[arg(long, env = "KV_BODY_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_read_timeout_ms: u64,

    /// Internal calls (batches from peers) served at once; more answer 503.
    #[arg(long, env = "KV_MAX_INTERNAL_INFLIGHT", default_value_t = 256)]
    pub max_internal_inflight: usize,

    /// Hints kept for owners that are down, in bytes of keys and values;
    /// beyond it new hints are dropped (anti-entropy repairs those keys).
    #[arg(long, env = "KV_MAX_HINT_BYTES", default_value_t = 1 << 30)]
    pub max_hint_bytes: u64,

    /// `/health` answers 503 once the data folder's file system has less
    /// free space than this.
    #[arg(long, env = "KV_MIN_FREE_DISK_BYTES", default_value_t = 64 << 20)]
    pub min_free_disk_bytes: u64,

    /// Folder for the write-ahead log and sled's files.
    #[arg(long, env = "KV_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Storage engine.
    #[arg(long, env = "KV_STORAGE", value_enum, default_value = "sled")]
    pub storage: StorageKind,

    /// The cluster's first members (the seed list), as `ID=HOST:PORT`,
    /// comma-separated, the same on each of them. Members that joined
    /// later are learned by gossip.
    #[arg(long, env = "KV_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// Join a running cluster through these members (`ID=HOST:PORT`,
    /// comma-separated): learn its view from one, take a share of the
    /// ring, receive the ranges, then serve as a normal member. A node that
    /// already joined (its data folder says so) just starts.
    #[arg(long, env = "KV_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,

    /// `HOST:PORT` at which the other members reach this node (its entry
    /// in the view); by default the internal listener's, else `--listen`.
    #[arg(long, env = "KV_ADVERTISE")]
    pub advertise: Option<String>,

    /// Pause between two pages (512 records) of a member's handoff while
    /// ranges move: how gently streaming shares the node with clients.
    #[arg(long, env = "KV_STREAM_PAGE_PAUSE_MS", default_value_t = 20)]
    pub stream_page_pause_ms: u64,

    /// A step of a join or leave that makes no progress for this long (a
    /// member unreachable, say) is given up and the change undone.
    #[arg(long, env = "KV_MOVE_STEP_TIMEOUT_MS", default_value_t = 60_000)]
    pub move_step_timeout_ms: u64,

    /// N: replicas of each key.
    #[arg(long, env = "KV_REPLICAS", default_value_t = 3)]
    pub replicas: usize,

    /// W: durable acknowledgements a write waits for.
    #[arg(long, env = "KV_WRITE_QUORUM", default_value_t = 2)]
    pub write_quorum: usize,

    /// R: replicas a strong read asks.
    #[arg(long, env = "KV_READ_QUORUM", default_value_t = 2)]
    pub read_quorum: usize,

    /// Largest key, in UTF-8 bytes.
    #[arg(long, env = "KV_MAX_KEY_BYTES", default_value_t = 1024)]
    pub max_key_bytes: usize,

    /// Largest value, in decoded bytes.
    #[arg(long, env = "KV_MAX_VALUE_BYTES", default_value_t = 1024 * 1024)]
    pub max_value_bytes: usize,

    /// How long tombstones and expired values are kept before compaction
    /// may remove them.
    #[arg(long, env = "KV_TOMBSTONE_GRACE_SECS", default_value_t = 3600)]
    pub tombstone_grace_secs: u64,

    /// How often compaction looks for dead records.
    #[arg(long, env = "KV_COMPACTION_INTERVAL_SECS", default_value_t = 60)]
    pub compaction_interval_secs: u64,

    /// A client request that cannot finish in this time answers 503.
    #[arg(long, env = "KV_REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    pub request_timeout_ms: u64,

    /// Threads serving requests (default: one per CPU).
    #[arg(long, env = "KV_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Client requests served at once; more answer 503 at once.
    #[arg(long, env = "KV_MAX_INFLIGHT_REQUESTS", default_value_t = 4096)]
    pub max_inflight_requests: usize,

    /// Shared by all nodes: internal routes and test hooks answer only
    /// callers that send it. Required with peers or test hooks; there is
    /// no default (a public default would let anyone who reaches the
    /// client port write any key at any version). At least 16 visible
    /// ASCII characters, e.g. `openssl rand -hex 16`.
    #[arg(long, env = "KV_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// A record whose version is further than this ahead of the node's
    /// clock is refused wherever it arrives (replica write, write-back,
    /// hint, repair, anti-entropy), and no write goes this far ahead.
    #[arg(long, env = "KV_MAX_CLOCK_SKEW_MS", default_value_t = 600_000)]
    pub max_clock_skew_ms: u64,

    /// Bound on each call to another replica.
    #[arg(long, env = "KV_RPC_TIMEOUT_MS", default_value_t = 1000)]
    pub rpc_timeout_ms: u64,

    /// Bound on one anti-entropy exchange with a peer (each side passes
    /// over the whole store: about 1.5 s per 100,000 keys on two cores).
    #[arg(long, env = "KV_SYNC_TIMEOUT_MS", default_value_t = 10_000)]
    pub sync_timeout_ms: u64,

    /// A quorum read still short of answers after this long also asks the
    /// remaining owners.
    #[arg(long, env = "KV_HEDGE_DELAY_MS", default_value_t = 20)]
    pub hedge_delay_ms: u64,

    /// How often each peer is pinged.
    #[arg(long, env = "KV_HEARTBEAT_INTERVAL_MS", default_value_t = 250)]
    pub heartbeat_interval_ms: u64,

    /// A peer silent this long is believed down (skipped, and hinted).
    #[arg(long, env = "KV_FAILURE_TIMEOUT_MS", default_value_t = 1500)]
    pub failure_timeout_ms: u64,

    /// How often hints are offered to owners believed alive.
    #[arg(long, env = "KV_HINT_INTERVAL_MS", default_value_t = 500)]
    pub hint_interval_ms: u64,

    /// How often this node compares hash trees with each peer.
    #[arg(long, env = "KV_ANTI_ENTROPY_INTERVAL_MS", default_value_t = 5000)]
    pub anti_entropy_interval_ms: u64,

    /// One eventual read in this many repairs its key in the background
    /// (0: never).
    #[arg(long, env = "KV_READ_REPAIR_EVERY", default_value_t = 10)]
    pub read_repair_every: u32,

    /// Points per node on the hash ring.
    #[arg(long, env = "KV_VNODES", default_value_t = 64)]
    pub vnodes: usize,

    /// This node's data was lost or restored from an old copy (a replaced
    /// disk, a wiped folder): repair from the peers before answering reads,
    /// as after an unclean stop. A node with an empty data folder is
    /// otherwise taken to be new and trusted at once.
    #[arg(long, env = "KV_RECOVER_FROM_PEERS")]
    pub recover_from_peers: bool,

    /// TEST ONLY: serve `/test/v1/*` (clock offset, replica status). Never
    /// in production: it lets anyone skew this node's clock.
    #[arg(long, env = "KV_TEST_HOOKS")]
    pub test_hooks: bool,

    /// TEST ONLY: run with a known bug, for the harness to find; repeatable
    /// (see `cluster::test_bug` for the catalogue and each bug's real-world
    /// original): lww, no-write-back, strong-read-one, sloppy-quorum,
    /// ack-before-fsync, ignore-min-timestamp, early-tombstone-gc, no-repair,
    /// release-before-held.
    #[arg(long = "test-bug", env = "KV_TEST_BUG", value_enum, value_delimiter = ',')]
    pub test_bugs: Vec<TestBug>,

    /// Log filter (tracing's `EnvFilter` syntax), e.g. `info` or `cluster=debug`.
    #[arg(long, env = "KV_LOG", default_value = "info")]
    pub log: String,
}

/// The secret every node used to have by default, and so anyone knew.
const OLD_PUBLIC_SECRET: &str = "leaderless-kv-internal";
const MIN_SECRET_BYTES: usize = 16;
/// Ring points per node beyond which the ring only costs memory.
const MAX_VNODES: usize = 4096;

impl Config {
    /// Checks what clap cannot: quorum arithmetic, non-empty id, sane limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id.is_empty() || self.node_id.contains(['=', ',']) {
            return Err(format!("--node-id {:?} must be non-empty and contain no '=' or ','", self.node_id));
        }
        let (n, w, r) = (self.replicas, self.write_quorum, self.read_quorum);
        if n == 0 || w == 0 || r == 0 || w > n || r > n {
            return Err(format!("need 1 <= W <= N and 1 <= R <= N, got N={n} W={w} R={r}"));
        }
        if r + w <= n {
            return Err(format!("strong reads need R + W > N, got N={n} W={w} R={r}"));
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > 64 * 1024 {
            return Err(format!("--max-key-bytes must be 1..=65536, got {}", self.max_key_bytes));
        }
        if self.max_value_bytes > 16 * 1024 * 1024 {
            return Err(format!("--max-value-bytes must be at most 16 MiB (16777216), got {}", self.max_value_bytes));
        }
        self.validate_secret()?;
        if self.vnodes == 0 || self.vnodes > MAX_VNODES {
            return Err(format!("--vnodes must be 1..={MAX_VNODES}, got {}", self.vnodes));
        }
        // Zero would spin a loop, refuse every request or disable a bound.
        let positive = [
            ("--rpc-timeout-ms", self.rpc_timeout_ms),
            ("--heartbeat-interval-ms", self.heartbeat_interval_ms),
            ("--failure-timeout-ms", self.failure_timeout_ms),
            ("--hint-interval-ms", self.hint_interval_ms),
            ("--anti-entropy-interval-ms", self.anti_entropy_interval_ms),
            ("--max-clock-skew-ms", self.max_clock_skew_ms),
            ("--request-timeout-ms", self.request_timeout_ms),
            ("--compaction-interval-secs", self.compaction_interval_secs),
            ("--max-inflight-requests", self.max_inflight_requests as u64),
            ("--max-internal-inflight", self.max_internal_inflight as u64),
            ("--max-connections", self.max_connections as u64),
            ("--header-read-timeout-ms", self.header_read_timeout_ms),
            ("--body-read-timeout-ms", self.body_read_timeout_ms),
            ("--max-hint-bytes", self.max_hint_bytes),
            ("--sync-timeout-ms", self.sync_timeout_ms),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{flag} must be > 0"));
        }
        if self.hedge_delay_ms >= self.rpc_timeout_ms {
            // A quorum read moves on from a hung replica only at the hedge.
            return Err(format!(
                "--hedge-delay-ms ({}) must be below --rpc-timeout-ms ({})",
                self.hedge_delay_ms, self.rpc_timeout_ms
            ));
        }
        crate::membership::parse_peers(&self.join).map_err(|error| format!("--join: {error}"))?;
        if let Some(addr) = &self.advertise {
            crate::membership::parse_peers(&[format!("{}={addr}", self.node_id)])
                .map_err(|_| format!("--advertise {addr:?} is not HOST:PORT"))?;
        }
        if self.move_step_timeout_ms == 0 {
            return Err("--move-step-timeout-ms must be > 0".into());
        }
        if self.worker_threads == Some(0) {
            return Err("--worker-threads must be at least 1".into());
        }
        if self.internal_listen.is_some_and(|internal| internal == self.listen && internal.port() != 0) {
            return Err("--internal-listen must differ from --listen".into());
        }
        Ok(())
    }

    /// A secret is required where anyone else must be kept out: with peers
    /// (internal routes) and with test hooks.
    fn validate_secret(&self) -> Result<(), String> {
        let needed = self.peers.iter().any(|peer| !peer.starts_with(&format!("{}=", self.node_id)))
            || !self.join.is_empty()
            || self.test_hooks;
        match &self.cluster_secret {
            None if needed => Err(format!(
                "a node with peers or test hooks needs a cluster secret: set --cluster-secret (or KV_CLUSTER_SECRET) \
                 to the same value on every node, at least {MIN_SECRET_BYTES} visible ASCII characters, e.g. \
                 `KV_CLUSTER_SECRET=$(openssl rand -hex 16)`"
            )),
            None => Ok(()),
            Some(secret) if secret == OLD_PUBLIC_SECRET => {
                Err("--cluster-secret: that is the old public default, which anyone can send; choose your own".into())
            }
            Some(secret) if secret.len() < MIN_SECRET_BYTES || !secret.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(format!(
                    "--cluster-secret must be at least {MIN_SECRET_BYTES} visible ASCII characters (it travels in an \
                     HTTP header)"
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// `HOST:PORT` at which other members reach this node.
    pub fn advertised_addr(&self) -> String {
        match &self.advertise {
            Some(addr) => addr.clone(),
            None => self.internal_listen.unwrap_or(self.listen).to_string(),
        }
    }

    /// The known bugs this node runs with (none unless asked for).
    pub fn bugs(&self) -> TestBugs {
        TestBugs::of(&self.test_bugs)
    }

    pub fn limits(&self) -> Limits {
        Limits { max_key_bytes: self.max_key_bytes, max_value_bytes: self.max_value_bytes }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The bounds of each listener (see `crate::listener`).
    pub fn connection_limits(&self) -> crate::listener::ConnectionLimits {
        crate::listener::ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
        }
    }

    /// A configuration for tests: memory storage, a free port, a secret.
    pub fn for_tests(node_id: &str) -> Config {
        Config::parse_from([
            "kvnode",
            "--node-id",
            node_id,
            "--listen",
            "127.0.0.1:0",
            "--storage",
            "memory",
            "--cluster-secret",
            "in-process-test-secret",
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_quorums_are_checked() {
        let mut config = Config::for_tests("n1");
        assert_eq!((config.replicas, config.write_quorum, config.read_quorum), (3, 2, 2));
        assert!(config.validate().is_ok());
        config.read_quorum = 1;
        assert!(config.validate().unwrap_err().contains("R + W > N"));
        config.read_quorum = 4;
        assert!(config.validate().is_err());
    }

    #[test]
    fn a_secret_that_cannot_be_a_header_or_is_short_or_public_is_refused() {
        let mut config = Config::for_tests("n1");
        for bad in
            ["", "two words 0123456789", "caf\u{e9}0123456789abc", "line\nbreak0123456789", "short", OLD_PUBLIC_SECRET]
        {
            config.cluster_secret = Some(bad.into());
            assert!(config.validate().unwrap_err().contains("--cluster-secret"), "{bad:?} accepted");
        }
        config.cluster_secret = Some("s3cret-_.~!0123456789".into());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn peers_or_test_hooks_need_a_secret_and_a_lone_node_does_not() {
        let mut config = Config::for_tests("n1");
        config.cluster_secret = None;
        assert!(config.validate().is_ok(), "a node alone needs no secret");
        config.peers = vec!["n1=127.0.0.1:7001".into()];
        assert!(config.validate().is_ok(), "itself is not a peer");
        config.peers.push("n2=127.0.0.1:7002".into());
        let error = config.validate().unwrap_err();
        assert!(error.contains("KV_CLUSTER_SECRET") && error.contains("openssl rand"), "{error}");
        config.peers.clear();
        config.test_hooks = true;
        assert!(config.validate().unwrap_err().contains("cluster secret"));
    }

    #[test]
    fn zero_vnodes_or_intervals_are_configuration_errors() {
        let mut config = Config::for_tests("n1");
        config.vnodes = 0;
        assert!(config.validate().unwrap_err().contains("--vnodes"));
        let mut config = Config::for_tests("n1");
        config.anti_entropy_interval_ms = 0;
        assert!(config.validate().unwrap_err().contains("--anti-entropy-interval-ms"));
        let mut config = Config::for_tests("n1");
        config.heartbeat_interval_ms = 0;
        assert!(config.validate().unwrap_err().contains("--heartbeat-interval-ms"));
        for (flag, zero) in [
            ("--max-connections", Config::parse_from(["kvnode", "--node-id", "n1", "--max-connections", "0"])),
            (
                "--body-read-timeout-ms",
                Config::parse_from(["kvnode", "--node-id", "n1", "--body-read-timeout-ms", "0"]),
            ),
            ("--max-hint-bytes", Config::parse_from(["kvnode", "--node-id", "n1", "--max-hint-bytes", "0"])),
        ] {
            assert!(zero.validate().unwrap_err().contains(flag), "{flag}");
        }
    }

    #[test]
    fn test_bugs_repeat_and_default_to_none() {
        assert!(Config::for_tests("n1").bugs().is_empty());
        let config = Config::parse_from(["kvnode", "--node-id", "n1", "--test-bug", "lww", "--test-bug", "no-repair"]);
        assert_eq!(config.bugs().names(), vec!["lww", "no-repair"]);
        let listed =
            Config::try_parse_from(["kvnode", "--node-id", "n1", "--test-bug", "sloppy-quorum,ack-before-fsync"]);
        assert_eq!(listed.map(|c| c.bugs().names()).ok(), Some(vec!["sloppy-quorum", "ack-before-fsync"]));
        assert!(Config::try_parse_from(["kvnode", "--node-id", "n1", "--test-bug", "nope"]).is_err());
    }

    #[test]
    fn the_hedge_comes_before_the_rpc_timeout() {
        let mut config = Config::for_tests("n1");
        config.hedge_delay_ms = config.rpc_timeout_ms;
        assert!(config.validate().unwrap_err().contains("--hedge-delay-ms"));
    }
}
