//! The local backend: `kvnode` processes on loopback ports, for machines
//! without Docker and for fast tests; it can also run a three-member etcd
//! (Debian's `etcd-server`), a store nobody here wrote. It kills (SIGKILL),
//! pauses (SIGSTOP), resumes (SIGCONT) and restarts nodes, and the nemesis can skew their
//! clocks and damage their disks (each data folder can sit on a power-loss
//! file system); it cannot partition them, since they share one network
//! namespace.

use super::disks::NodeDisks;
use super::{log_tail, wait_ready, ClusterSpec, Db, DbError, Disks, NetNamespace};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the `kvnode` binary is: `KVNODE_BIN`, else next to the running
/// executable's target folder (`target/debug` or `target/release`).
pub fn kvnode_binary() -> Result<PathBuf, DbError> {
    if let Some(path) = std::env::var_os("KVNODE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let candidates = exe.ancestors().skip(1).take(3).map(|dir| dir.join("kvnode"));
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(DbError::Process("kvnode binary not found: build it (cargo build -p cluster) or set KVNODE_BIN".into()))
}

/// Where the `etcd` binary is: `ETCD_BIN`, else `etcd` on the PATH.
pub fn etcd_binary() -> Result<PathBuf, DbError> {
    if let Some(path) = std::env::var_os("ETCD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| DbError::Process("no etcd binary: apt-get install etcd-server, or set ETCD_BIN".into()))
}

struct LocalNode {
    port: u16,
    /// etcd's member-to-member port (unused by kvnode).
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

/// What the nodes are.
enum Launch {
    /// `kvnode` with these flags besides its id, address and folder.
    Kvnode { args: Vec<String> },
    /// etcd members of one new cluster (`--initial-cluster`).
    Etcd { initial_cluster: String },
}

pub struct LocalDb {
    binary: PathBuf,
    root: PathBuf,
    launch: Launch,
    nodes: Mutex<HashMap<String, LocalNode>>,
    /// Declared after `nodes`: dropped (unmounted) after the processes.
    disks: NodeDisks,
}

fn free_port() -> Result<u16, DbError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalDb {
    /// Starts the nodes with their data and logs under `root`.
    pub async fn start(spec: &ClusterSpec, root: &Path) -> Result<LocalDb, DbError> {
        let binary = kvnode_binary()?;
        std::fs::create_dir_all(root)?;
        let ids = spec.node_ids();
        let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect::<Result<_, _>>()?;
        let peers: Vec<String> = ids.iter().zip(&ports).map(|(id, port)| format!("{id}=127.0.0.1:{port}")).collect();
        let mut args = vec!["--peers".to_owned(), peers.join(",")];
        args.extend(super::node_flags(&spec.extra_flags));
        let nodes = ids
            .iter()
            .zip(&ports)
            .map(|(id, port)| {
                let node = LocalNode {
                    port: *port,
                    peer_port: 0,
                    data_dir: root.join(id),
                    log_path: root.join(format!("{id}.process.log")),
                    child: None,
                };
                (id.clone(), node)
            })
            .collect();
        if let Err(error) = crate::powerfs::sweep_stale_mounts() {
            tracing::warn!(%error, "could not sweep power-loss file systems left by dead runs");
        }
        let disks = NodeDisks::default();
        let launch = Launch::Kvnode { args };
        let db = LocalDb { binary, root: root.to_path_buf(), launch, nodes: Mutex::new(nodes), disks };
        if spec.disks == Disks::PowerLoss {
            for id in &ids {
                db.disks.mount(id, &root.join(id))?;
            }
        }
        for id in &ids {
            db.start(id).await?;
        }
        Ok(db)
    }

    /// Starts `members` etcd members (n1, n2, ...) of a new cluster on
    /// loopback, with their data and logs under `root`. Needs `etcd` on
    /// the PATH (Debian's `etcd-server`) or in `ETCD_BIN`.
    pub async fn start_etcd(members: usize, root: &Path) -> Result<LocalDb, DbError> {
        let binary = etcd_binary()?;
        std::fs::create_dir_all(root)?;
        let ids: Vec<String> = (1..=members).map(|i| format!("n{i}")).collect();
        let mut nodes = HashMap::new();
        for id in &ids {
            let (port, peer_port) = (free_port()?, free_port()?);
            let log_path = root.join(format!("{id}.process.log"));
            nodes.insert(id.clone(), LocalNode { port, peer_port, data_dir: root.join(id), log_path, child: None });
        }
        let mut initial: Vec<String> =
            nodes.iter().map(|(id, node)| format!("{id}=http://127.0.0.1:{}", node.peer_port)).collect();
        initial.sort();
        let launch = Launch::Etcd { initial_cluster: initial.join(",") };
        let db =
            LocalDb { binary, root: root.to_path_buf(), launch, nodes: Mutex::new(nodes), disks: NodeDisks::default() };
        // Members wait for each other (no leader, no health) until a
        // majority runs: start them all, then wait.
        let urls: Vec<String> = ids.iter().map(|id| db.spawn(id)).collect::<Result<_, _>>()?;
        for (id, url) in ids.iter().zip(&urls) {
            wait_ready(id, url, READY_TIMEOUT, || async { db.exit_status(id) }).await?;
        }
        Ok(db)
    }

    /// Waits until `node` accepts connections on its client port.
    async fn wait_listening(&self, node: &str) -> Result<(), DbError> {
        let port = self.nodes.lock().expect("nodes lock").get(node).map(|n| n.port);
        let port = port.ok_or_else(|| DbError::UnknownNode(node.to_owned()))?;
        let started = std::time::Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(());
            }
            if let Some(detail) = self.exit_status(node) {
                return Err(DbError::Refused { node: node.to_owned(), detail });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(DbError::NotReady { node: node.to_owned(), waited: READY_TIMEOUT, detail: "not listening".into() })
    }

    /// Why `node`'s process is gone, if it is (reaped here).
    fn exit_status(&self, node: &str) -> Option<String> {
        let mut nodes = self.nodes.lock().expect("nodes lock");
        let local = nodes.get_mut(node)?;
        let status = local.child.as_mut()?.try_wait().ok()??;
        local.child = None;
        let log = std::fs::read(&local.log_path).unwrap_or_default();
        Some(format!("exited with {status}; log: {}", log_tail(&log, 2_000)))
    }

    fn pid(&self, node: &str) -> Result<Pid, DbError> {
        let nodes = self.nodes.lock().expect("nodes lock");
        let local = nodes.get(node).ok_or_else(|| DbError::UnknownNode(node.to_owned()))?;
        let child = local.child.as_ref().ok_or_else(|| DbError::Process(format!("{node} is not running")))?;
        Ok(Pid::from_raw(child.id() as i32))
    }

    fn signal(&self, node: &str, signal: Signal) -> Result<(), DbError> {
        kill(self.pid(node)?, signal).map_err(|errno| DbError::Process(format!("{signal} to {node}: {errno}")))
    }

    fn spawn(&self, node: &str) -> Result<String, DbError> {
        let mut nodes = self.nodes.lock().expect("nodes lock");
        let local = nodes.get_mut(node).ok_or_else(|| DbError::UnknownNode(node.to_owned()))?;
        if local.child.is_some() {
            return Err(DbError::Process(format!("{node} is already running")));
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&local.log_path)?;
        let mut command = Command::new(&self.binary);
        match &self.launch {
            Launch::Kvnode { args } => {
                command.args(["--node-id", node, "--listen", &format!("127.0.0.1:{}", local.port)]);
                command.arg("--data-dir").arg(&local.data_dir).args(args);
            }
            Launch::Etcd { initial_cluster } => {
                let client = format!("http://127.0.0.1:{}", local.port);
                let peer = format!("http://127.0.0.1:{}", local.peer_port);
                command.args(["--name", node, "--listen-client-urls", &client, "--advertise-client-urls", &client]);
                command.args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer]);
                command.args(["--initial-cluster", initial_cluster, "--initial-cluster-state", "new"]);
                command.arg("--data-dir").arg(&local.data_dir);
            }
        }
        let child = command.stdout(log.try_clone()?).stderr(log).stdin(Stdio::null()).spawn()?;
        local.child = Some(child);
        Ok(format!("http://127.0.0.1:{}", local.port))
    }
}

impl Db for LocalDb {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.nodes.lock().expect("nodes lock").keys().cloned().collect();
        nodes.sort_by_key(|n| n.trim_start_matches('n').parse::<u32>().unwrap_or(u32::MAX));
        nodes
    }

    fn base_url(&self, node: &str) -> Result<String, DbError> {
        let nodes = self.nodes.lock().expect("nodes lock");
        let local = nodes.get(node).ok_or_else(|| DbError::UnknownNode(node.to_owned()))?;
        Ok(format!("http://127.0.0.1:{}", local.port))
    }

    /// `kill -9`; a node that is not running is left as it is.
    async fn kill(&self, node: &str) -> Result<(), DbError> {
        let child = {
            let mut nodes = self.nodes.lock().expect("nodes lock");
            nodes.get_mut(node).ok_or_else(|| DbError::UnknownNode(node.to_owned()))?.child.take()
        };
        let Some(mut child) = child else { return Ok(()) };
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGKILL).map_err(|errno| DbError::Process(format!("SIGKILL to {node}: {errno}")))?;
        tokio::task::spawn_blocking(move || child.wait()).await.expect("wait task")?;
        Ok(())
    }

    async fn start(&self, node: &str) -> Result<(), DbError> {
        let url = self.spawn(node)?;
        match self.launch {
            Launch::Kvnode { .. } => wait_ready(node, &url, READY_TIMEOUT, || async { self.exit_status(node) }).await,
            // An etcd member answers nothing, not even /version, until a
            // majority elects a leader, and members restarted after a kill
            // of all start one at a time: up is "listening" here; the
            // cluster's availability is the history's to show.
            Launch::Etcd { .. } => self.wait_listening(node).await,
        }
    }

    async fn pause(&self, node: &str) -> Result<(), DbError> {
        self.signal(node, Signal::SIGSTOP)
    }

    async fn resume(&self, node: &str) -> Result<(), DbError> {
        self.signal(node, Signal::SIGCONT)
    }

    async fn net_namespace(&self, _node: &str) -> Result<NetNamespace, DbError> {
        Err(DbError::Unsupported {
            backend: "local",
            what: "cut the network",
            why: "its nodes share the host's loopback interface; use the docker backend for partitions and packet loss",
        })
    }

    fn data_dir(&self, node: &str) -> Result<PathBuf, DbError> {
        let nodes = self.nodes.lock().expect("nodes lock");
        Ok(nodes.get(node).ok_or_else(|| DbError::UnknownNode(node.to_owned()))?.data_dir.clone())
    }

    async fn lose_unsynced(&self, node: &str) -> Result<serde_json::Value, DbError> {
        self.disks.lose_unsynced(node).await
    }

    fn set_fsync_delay(&self, node: &str, delay: Duration) -> Result<(), DbError> {
        self.disks.set_fsync_delay(node, delay)
    }

    async fn collect_logs(&self, dir: &Path) -> Result<(), DbError> {
        std::fs::create_dir_all(dir)?;
        for (id, node) in self.nodes.lock().expect("nodes lock").iter() {
            if node.log_path.exists() {
                std::fs::copy(&node.log_path, dir.join(format!("{id}.log")))?;
            }
        }
        Ok(())
    }

    async fn teardown(self) -> Result<(), DbError> {
        for node in self.nodes() {
            let _ = self.signal(&node, Signal::SIGCONT);
            let _ = self.kill(&node).await;
        }
        self.disks.unmount_all();
        tracing::debug!(root = %self.root.display(), "local cluster stopped");
        Ok(())
    }
}

impl Drop for LocalDb {
    fn drop(&mut self) {
        for node in self.nodes.lock().expect("nodes lock").values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
