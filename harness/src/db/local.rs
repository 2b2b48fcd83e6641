//! The local backend: the processes a system description launches, on
//! loopback ports, for machines without Docker and for fast tests. It kills (SIGKILL),
//! pauses (SIGSTOP), resumes (SIGCONT) and restarts nodes, and the nemesis can skew their
//! clocks and damage their disks (each data folder can sit on a power-loss
//! file system); it cannot partition them, since they share one network
//! namespace.

use super::disks::NodeDisks;
use super::{log_tail, wait_up, ClusterSpec, Db, DbError, Disks, NetNamespace};
use crate::system::{NodeAddress, SystemDescription};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a system's program is: `<NAME>_BIN` (e.g. `KVNODE_BIN`,
/// `REDIS_SERVER_BIN`), a path as given, next to the running executable's
/// target folder (`target/debug` or `target/release`, where `kvnode` is
/// built), else on the PATH.
/// `install` says how to get it, for the message when it is missing.
pub fn find_binary(name: &str, install: &str) -> Result<PathBuf, DbError> {
    if let Some(path) = std::env::var_os(SystemDescription::env_override(name, "BIN")) {
        return Ok(PathBuf::from(path));
    }
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let exe = std::env::current_exe()?;
    let beside = exe.ancestors().skip(1).take(3).map(|dir| dir.join(name));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path: Vec<PathBuf> = std::env::split_paths(&path).map(|dir| dir.join(name)).collect();
    beside.chain(on_path).find(|candidate| candidate.is_file()).ok_or_else(|| {
        let hint = if install.is_empty() { "install it" } else { install };
        let variable = SystemDescription::env_override(name, "BIN");
        DbError::Process(format!("no {name} binary: {hint}, or set {variable}"))
    })
}

/// Where the `kvnode` binary is (see [`find_binary`]).
pub fn kvnode_binary() -> Result<PathBuf, DbError> {
    let kvnode = SystemDescription::kvnode().launch.expect("kvnode's description launches it");
    find_binary(&kvnode.binary, &kvnode.install)
}

struct LocalNode {
    port: u16,
    address: NodeAddress,
    args: Vec<String>,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    /// Left the cluster (its process exited by itself): no longer one of
    /// [`Db::nodes`], its log still collected.
    retired: bool,
}

pub struct LocalDb {
    binary: PathBuf,
    cluster_secret: String,
    root: PathBuf,
    system: SystemDescription,
    /// For nodes added later: the scenario's flags and disks.
    extra_flags: Vec<String>,
    disk_kind: Disks,
    nodes: Mutex<HashMap<String, LocalNode>>,
    /// Declared after `nodes`: dropped (unmounted) after the processes.
    disks: NodeDisks,
}

/// A port free now, below the kernel's ephemeral range (32768 and up by
/// default). Why not "bind port 0": that port comes from the ephemeral range,
/// which outgoing connections draw their source ports from, so one of the
/// harness's own client connections could take it before the node binds it
/// (the cluster's tests saw "Address already in use" that way). Each process
/// starts at its own offset (its pid) and never hands a port out twice.
fn free_port() -> Result<u16, DbError> {
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let port = FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let Ok(port) = u16::try_from(port) else { continue };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(DbError::Io(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port between {FIRST} and {}", FIRST + SPAN),
    )))
}

impl LocalDb {
    /// Starts the nodes `spec.system` describes, with their data and logs
    /// under `root`: every process first, then waits until each is up
    /// (members of some stores wait for a majority before they serve).
    pub async fn start(spec: &ClusterSpec, root: &Path) -> Result<LocalDb, DbError> {
        let system = spec.system.clone();
        let launch = system.launch.as_ref().ok_or(DbError::Unsupported {
            backend: "local",
            what: "start this system",
            why: "its description has no [launch] section",
        })?;
        let binary = find_binary(&launch.binary, &launch.install)?;
        std::fs::create_dir_all(root)?;
        let ids = spec.node_ids();
        let mut addresses = Vec::new();
        for id in &ids {
            let client_port = free_port()?;
            let shared = system.peer_port == system.client_port;
            let peer_port = if shared { client_port } else { free_port()? };
            let data_dir = root.join(id).display().to_string();
            let (listen_host, advertise) = ("127.0.0.1".to_owned(), "127.0.0.1".to_owned());
            addresses.push(NodeAddress { node: id.clone(), listen_host, advertise, client_port, peer_port, data_dir });
        }
        let mut nodes = HashMap::new();
        for (index, address) in addresses.iter().enumerate() {
            std::fs::create_dir_all(&address.data_dir)?;
            let node = LocalNode {
                port: address.client_port,
                address: address.clone(),
                args: system.args(index, &addresses, &spec.extra_flags, &spec.cluster_secret),
                data_dir: PathBuf::from(&address.data_dir),
                log_path: root.join(format!("{}.process.log", address.node)),
                child: None,
                retired: false,
            };
            nodes.insert(address.node.clone(), node);
        }
        if let Err(error) = crate::powerfs::sweep_stale_mounts() {
            tracing::warn!(%error, "could not sweep power-loss file systems left by dead runs");
        }
        let disks = NodeDisks::default();
        let cluster_secret = spec.cluster_secret.clone();
        let (extra_flags, disk_kind) = (spec.extra_flags.clone(), spec.disks);
        let root = root.to_path_buf();
        let db =
            LocalDb { binary, cluster_secret, root, system, extra_flags, disk_kind, nodes: Mutex::new(nodes), disks };
        if spec.disks == Disks::PowerLoss {
            for id in &ids {
                db.disks.mount(id, &db.root.join(id))?;
            }
        }
        for id in &ids {
            db.spawn(id)?;
        }
        for id in &ids {
            db.wait_up(id).await?;
        }
        Ok(db)
    }

    async fn wait_up(&self, node: &str) -> Result<(), DbError> {
        let port = self.nodes.lock().expect("nodes lock").get(node).map(|n| n.port);
        let port = port.ok_or_else(|| DbError::UnknownNode(node.to_owned()))?;
        wait_up(node, &self.system.ready, port, READY_TIMEOUT, || async { self.exit_status(node) }).await
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

    /// Registers the next node (`n<K+1>`), with its ports, folder and the
    /// command line that joins it to the current members; returns its id.
    fn prepare_joiner(&self) -> Result<String, DbError> {
        let mut nodes = self.nodes.lock().expect("nodes lock");
        let highest = nodes.keys().filter_map(|id| id.trim_start_matches('n').parse::<u32>().ok()).max().unwrap_or(0);
        let id = format!("n{}", highest + 1);
        let members: Vec<NodeAddress> =
            nodes.values().filter(|node| !node.retired).map(|node| node.address.clone()).collect();
        let client_port = free_port()?;
        let peer_port = if self.system.peer_port == self.system.client_port { client_port } else { free_port()? };
        let data_dir = self.root.join(&id);
        std::fs::create_dir_all(&data_dir)?;
        let address = NodeAddress {
            node: id.clone(),
            listen_host: "127.0.0.1".into(),
            advertise: "127.0.0.1".into(),
            client_port,
            peer_port,
            data_dir: data_dir.display().to_string(),
        };
        let args = self.system.join_args(&address, &members, &self.extra_flags, &self.cluster_secret).ok_or(
            DbError::Unsupported { backend: "local", what: "add nodes", why: "the description has no join_args" },
        )?;
        let log_path = self.root.join(format!("{id}.process.log"));
        let node = LocalNode { port: client_port, address, args, data_dir, log_path, child: None, retired: false };
        nodes.insert(id.clone(), node);
        Ok(id)
    }

    fn spawn(&self, node: &str) -> Result<(), DbError> {
        let mut nodes = self.nodes.lock().expect("nodes lock");
        let local = nodes.get_mut(node).ok_or_else(|| DbError::UnknownNode(node.to_owned()))?;
        if local.child.is_some() {
            return Err(DbError::Process(format!("{node} is already running")));
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&local.log_path)?;
        let mut command = Command::new(&self.binary);
        command.args(&local.args);
        let child = command.stdout(log.try_clone()?).stderr(log).stdin(Stdio::null()).spawn()?;
        local.child = Some(child);
        Ok(())
    }
}

impl Db for LocalDb {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn nodes(&self) -> Vec<String> {
        let nodes = self.nodes.lock().expect("nodes lock");
        let mut nodes: Vec<String> = nodes.iter().filter(|(_, node)| !node.retired).map(|(id, _)| id.clone()).collect();
        nodes.sort_by_key(|n| n.trim_start_matches('n').parse::<u32>().unwrap_or(u32::MAX));
        nodes
    }

    fn base_url(&self, node: &str) -> Result<String, DbError> {
        let nodes = self.nodes.lock().expect("nodes lock");
        let local = nodes.get(node).ok_or_else(|| DbError::UnknownNode(node.to_owned()))?;
        Ok(format!("{}://127.0.0.1:{}", self.system.adapter.scheme(), local.port))
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
        self.spawn(node)?;
        self.wait_up(node).await
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

    fn cluster_secret(&self) -> Option<String> {
        Some(self.cluster_secret.clone())
    }

    async fn add_node(&self) -> Result<String, DbError> {
        let id = self.prepare_joiner()?;
        if self.disk_kind == Disks::PowerLoss {
            self.disks.mount(&id, &self.root.join(&id))?;
        }
        self.spawn(&id)?;
        self.wait_up(&id).await?;
        Ok(id)
    }

    async fn retire_node(&self, node: &str, limit: Duration) -> Result<(), DbError> {
        let started = std::time::Instant::now();
        loop {
            let running = {
                let mut nodes = self.nodes.lock().expect("nodes lock");
                let local = nodes.get_mut(node).ok_or_else(|| DbError::UnknownNode(node.to_owned()))?;
                match local.child.as_mut().map(Child::try_wait).transpose()? {
                    Some(None) => true,
                    _ => {
                        local.child = None;
                        local.retired = true;
                        false
                    }
                }
            };
            if !running {
                return Ok(());
            }
            if started.elapsed() >= limit {
                return Err(DbError::Process(format!("{node} did not stop within {limit:?} of leaving")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
