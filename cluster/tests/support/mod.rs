//! Starting real `kvnode` processes for integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The cluster secret every test node gets (`KV_CLUSTER_SECRET`), and
/// [`http_client`] sends.
pub const TEST_SECRET: &str = "integration-test-secret";

/// Fast background work (heartbeats, hints, anti-entropy, timeouts), so
/// that a peer is believed down within a second and tests converge in
/// seconds.
pub const FAST: &[&str] = &[
    "--heartbeat-interval-ms",
    "100",
    "--failure-timeout-ms",
    "600",
    "--hint-interval-ms",
    "200",
    "--anti-entropy-interval-ms",
    "500",
    "--rpc-timeout-ms",
    "300",
    "--request-timeout-ms",
    "2000",
];

/// A running `kvnode`, killed when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub base_url: String,
    pub data_dir: PathBuf,
}

/// The `kvnode` this build made, or `KVNODE_BIN` (to compare two builds
/// of the node under one benchmark binary, run after run).
fn kvnode_binary() -> PathBuf {
    std::env::var_os("KVNODE_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kvnode")), PathBuf::from)
}

/// A fresh, empty folder for one node's data.
pub fn temp_data_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("kvnode-test-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create data dir");
    dir
}

impl NodeProcess {
    /// Starts `kvnode` on a free port with `data_dir` and `extra` flags, and
    /// waits for its readiness line.
    pub fn start(node_id: &str, data_dir: &Path, extra: &[&str]) -> NodeProcess {
        NodeProcess::start_on(node_id, "127.0.0.1:0", data_dir, extra)
    }

    /// [`NodeProcess::start`] on a given `listen` address.
    pub fn start_on(node_id: &str, listen: &str, data_dir: &Path, extra: &[&str]) -> NodeProcess {
        NodeProcess::start_logged_on(node_id, listen, data_dir, extra, None)
    }

    /// [`NodeProcess::start_on`] with the node's log (its stderr) in the
    /// file `log` (appended to) instead of the caller's stderr.
    pub fn start_logged_on(
        node_id: &str,
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        log: Option<&Path>,
    ) -> NodeProcess {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the node's log file"),
            ),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(kvnode_binary())
            .args(["--node-id", node_id, "--listen", listen, "--log", "warn"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("KV_CLUSTER_SECRET", TEST_SECRET)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn kvnode");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read readiness line");
        let listen = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("listen="))
            .unwrap_or_else(|| panic!("no readiness line from kvnode, got {line:?}"));
        NodeProcess { child, base_url: format!("http://{listen}"), data_dir: data_dir.to_path_buf() }
    }

    pub fn item_url(&self) -> String {
        format!("{}/api/v1/item", self.base_url)
    }

    /// `kill -9`: no shutdown, no checkpoint.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL kvnode");
        self.child.wait().expect("reap kvnode");
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM kvnode");
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("poll kvnode") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kvnode did not stop within 10 s of SIGTERM");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that sends the test secret (test hooks answer only it).
pub fn http_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(cluster::rpc::SECRET_HEADER, reqwest::header::HeaderValue::from_static(TEST_SECRET));
    reqwest::Client::builder().timeout(Duration::from_secs(10)).default_headers(headers).build().expect("http client")
}

/// A client like anyone else's: no secret.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}
pub mod linearizability;

/// A port free now, below the kernel's ephemeral range (32768 and up by
/// default). Why not "bind port 0": that port comes from the ephemeral
/// range, which outgoing connections draw their source ports from, so one
/// of the many connections the tests of this process open could take it
/// before the node binds it (CI saw "Address already in use" for a node's
/// --internal-listen). Each process starts at its own offset (its pid) and
/// never hands a port out twice.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let port = FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(port).expect("below 32,000");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}

/// A cluster of `kvnode` processes on loopback, with test hooks on unless
/// told otherwise.
pub struct LocalCluster {
    pub nodes: Vec<Option<NodeProcess>>,
    ports: Vec<u16>,
    dirs: Vec<PathBuf>,
    args: Vec<String>,
    log_files: bool,
}

/// How [`LocalCluster::start_with`] runs its nodes.
pub struct ClusterOptions {
    /// `--test-hooks`; off, the nodes serve what an operator's would.
    pub test_hooks: bool,
    /// Each node's log in `<its data folder>.log` rather than on the
    /// caller's stderr, where a long run's log would drown its output.
    pub log_files: bool,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions { test_hooks: true, log_files: false }
    }
}

impl LocalCluster {
    pub fn start(name: &str, size: usize, extra: &[&str]) -> LocalCluster {
        LocalCluster::start_with(name, size, ClusterOptions::default(), extra)
    }

    pub fn start_with(name: &str, size: usize, options: ClusterOptions, extra: &[&str]) -> LocalCluster {
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let peers: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("n{}=127.0.0.1:{p}", i + 1)).collect();
        let mut args: Vec<String> = vec!["--peers".into(), peers.join(",")];
        if options.test_hooks {
            args.push("--test-hooks".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let dirs = (0..size).map(|i| temp_data_dir(&format!("{name}-n{}", i + 1))).collect();
        let nodes = (0..size).map(|_| None).collect();
        let mut cluster = LocalCluster { nodes, ports, dirs, args, log_files: options.log_files };
        for i in 0..size {
            cluster.restart(i);
        }
        cluster
    }

    /// Node `i`'s log file, when the cluster keeps logs in files.
    pub fn log_path(&self, i: usize) -> Option<PathBuf> {
        self.log_files.then(|| self.dirs[i].with_extension("log"))
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    /// Removes stopped node `i`'s data folder (a lost disk).
    pub fn wipe(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        std::fs::remove_dir_all(&self.dirs[i]).expect("remove the data folder");
        std::fs::create_dir_all(&self.dirs[i]).expect("recreate the data folder");
    }

    /// `kill -9` node `i` (0-based); its data stays.
    pub fn kill(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.kill_hard();
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.restart_with(i, &[]);
    }

    /// [`LocalCluster::restart`] with extra flags for this start only.
    pub fn restart_with(&mut self, i: usize, extra: &[&str]) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(extra);
        let listen = format!("127.0.0.1:{}", self.ports[i]);
        let log = self.log_path(i);
        let node = NodeProcess::start_logged_on(&format!("n{}", i + 1), &listen, &self.dirs[i], &args, log.as_deref());
        self.nodes[i] = Some(node);
    }
}
