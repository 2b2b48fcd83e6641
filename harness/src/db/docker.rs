//! The default backend: one container per node on a user network of its own,
//! through testcontainers, from the system's locally built image (`make
//! image`, `make images`; no registry is involved), started with the
//! command line its description gives.
//!
//! Every container and network of a run is named `kvtest-<pid>-<n>-...` and
//! labelled with the harness's pid. Containers go when the [`DockerDb`] is
//! torn down or dropped (also on a panic); networks go with their last
//! container. What a killed harness left behind is swept by the next one:
//! [`sweep_leftovers`] removes every container and network whose owner pid
//! is gone.

use super::disks::NodeDisks;
use super::{log_tail, wait_up, ClusterSpec, Db, DbError, Disks, NetNamespace};
use crate::system::{NodeAddress, SystemDescription};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testcontainers::bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptions, ListContainersOptions, ListNetworksOptions, RemoveContainerOptions,
};
use testcontainers::bollard::Docker;
use testcontainers::core::{IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

const OWNER_LABEL: &str = "org.kvtest.owner-pid";
const RUN_LABEL: &str = "org.kvtest.run";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The node's data folder inside its container.
const DATA_DIR: &str = "/data";

/// The image of `system`: its description's, or `<NAME>_IMAGE` (e.g.
/// `KVNODE_IMAGE`).
pub fn image_reference(system: &SystemDescription) -> Result<(String, String), DbError> {
    let image = system.image.as_ref().ok_or(DbError::Unsupported {
        backend: "docker",
        what: "start this system",
        why: "its description has no [image] section",
    })?;
    let variable = SystemDescription::env_override(&system.name, "IMAGE");
    let reference = std::env::var(variable).unwrap_or_else(|_| image.name.clone());
    Ok(match reference.rsplit_once(':') {
        Some((name, tag)) => (name.to_owned(), tag.to_owned()),
        None => (reference, "latest".to_owned()),
    })
}

/// The command that builds `system`'s image, for a message.
fn build_hint(system: &SystemDescription) -> String {
    match system.image.as_ref().map(|image| image.build.as_str()) {
        Some("host-binary") => format!("make images (or harness/scripts/host-image.sh systems/{}.toml)", system.name),
        Some(script) => script.to_owned(),
        None => "nothing: it has no image".to_owned(),
    }
}

fn docker_error(error: impl std::fmt::Display) -> DbError {
    DbError::Docker(error.to_string())
}

/// A client of the local Docker engine, if one answers.
pub async fn connect() -> Result<Docker, DbError> {
    let docker = Docker::connect_with_local_defaults().map_err(docker_error)?;
    docker.ping().await.map_err(|error| DbError::Docker(format!("no Docker engine answers: {error}")))?;
    Ok(docker)
}

pub struct DockerDb {
    system: SystemDescription,
    cluster_secret: String,
    run_id: String,
    network: String,
    docker: Docker,
    /// Every node's container, those that left included (their logs are
    /// still collected); grows as the membership fault adds nodes.
    containers: Mutex<HashMap<String, Arc<ContainerAsync<GenericImage>>>>,
    /// Nodes that left the cluster: no longer among [`Db::nodes`].
    retired: Mutex<BTreeSet<String>>,
    /// Each node's address, for a joiner's `{peers}`.
    addresses: Mutex<Vec<NodeAddress>>,
    /// What a node added later is started from.
    image: (String, String),
    extra_flags: Vec<String>,
    disk_kind: Disks,
    urls: Mutex<HashMap<String, String>>,
    /// With [`Disks::PowerLoss`]: each node's data folder on the host, a
    /// power-loss file system bind-mounted at `/data` in its container.
    host_dirs: Mutex<HashMap<String, PathBuf>>,
    /// Declared after `containers`: unmounted after they are gone.
    disks: NodeDisks,
}

/// Where a run's power-loss file systems are mounted on the host.
fn disks_root(run_id: &str) -> PathBuf {
    std::env::temp_dir().join("kvtest-powerfs").join(run_id)
}

fn new_run_id() -> String {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    format!("kvtest-{}-{}-{:05x}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed), nanos & 0xfffff)
}

impl DockerDb {
    /// Sweeps leftovers of dead runs, then starts `spec.nodes` containers
    /// and waits until every node printed its readiness line.
    pub async fn start(spec: &ClusterSpec) -> Result<DockerDb, DbError> {
        let docker = connect().await?;
        sweep_leftovers(&docker).await?;
        if let Err(error) = crate::powerfs::sweep_stale_mounts() {
            tracing::warn!(%error, "could not sweep power-loss file systems left by dead runs");
        }
        let system = spec.system.clone();
        let (image_name, image_tag) = image_reference(&system)?;
        if docker.inspect_image(&format!("{image_name}:{image_tag}")).await.is_err() {
            return Err(DbError::Docker(format!(
                "image {image_name}:{image_tag} is missing: build it with {} (locally; nothing is pulled)",
                build_hint(&system)
            )));
        }
        let run_id = new_run_id();
        let network = format!("{run_id}-net");
        let nodes = spec.node_ids();
        let addresses: Vec<NodeAddress> = nodes.iter().map(|node| address(&system, &run_id, node)).collect();
        let disks = NodeDisks::default();
        let mut host_dirs = HashMap::new();
        if spec.disks == Disks::PowerLoss {
            for node in &nodes {
                let dir = disks_root(&run_id).join(node);
                disks.mount(node, &dir)?;
                host_dirs.insert(node.clone(), dir);
            }
        }
        let image = (image_name, image_tag);
        let starts = nodes.iter().enumerate().map(|(index, node)| {
            let args = system.args(index, &addresses, &spec.extra_flags, &spec.cluster_secret);
            let place = Placement { image: &image, network: &network, run_id: &run_id };
            start_container(place, &system, node, args, host_dirs.get(node))
        });
        let started = futures::future::join_all(starts).await;
        let mut containers = HashMap::new();
        let mut first_error = None;
        for (node, result) in nodes.iter().zip(started) {
            match result {
                Ok(container) => {
                    containers.insert(node.clone(), Arc::new(container));
                }
                Err(error) => first_error = first_error.or(Some(DbError::Docker(format!("starting {node}: {error}")))),
            }
        }
        let db = DockerDb {
            system,
            cluster_secret: spec.cluster_secret.clone(),
            run_id,
            network,
            docker,
            containers: Mutex::new(containers),
            retired: Mutex::new(BTreeSet::new()),
            addresses: Mutex::new(addresses),
            image,
            extra_flags: spec.extra_flags.clone(),
            disk_kind: spec.disks,
            urls: Mutex::new(HashMap::new()),
            host_dirs: Mutex::new(host_dirs),
            disks,
        };
        if let Some(error) = first_error {
            let _ = db.teardown().await;
            return Err(error);
        }
        for node in &nodes {
            if let Err(error) = db.wait_up(node).await {
                let _ = db.teardown().await;
                return Err(error);
            }
        }
        tracing::info!(run_id = %db.run_id, system = %db.system.name, nodes = nodes.len(), "docker cluster ready");
        Ok(db)
    }

    /// Reads the node's (new) host port and waits until it is up.
    async fn wait_up(&self, node: &str) -> Result<(), DbError> {
        let port = match self.refresh_port(node).await {
            Ok(port) => port,
            // No port: the process exited at once.
            Err(error) => return Err(self.refusal(node).await.unwrap_or(error)),
        };
        wait_up(node, &self.system.ready, port, READY_TIMEOUT, || async { self.exit_detail(node).await }).await
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn container(&self, node: &str) -> Result<Arc<ContainerAsync<GenericImage>>, DbError> {
        let containers = self.containers.lock().expect("containers lock");
        containers.get(node).cloned().ok_or_else(|| DbError::UnknownNode(node.to_owned()))
    }

    /// The host port of a container changes when it restarts.
    async fn refresh_port(&self, node: &str) -> Result<u16, DbError> {
        let container = self.container(node)?;
        let port = container.get_host_port_ipv4(self.system.client_port).await.map_err(docker_error)?;
        let url = format!("{}://127.0.0.1:{port}", self.system.adapter.scheme());
        self.urls.lock().expect("urls lock").insert(node.to_owned(), url);
        Ok(port)
    }
}

impl Db for DockerDb {
    fn backend(&self) -> &'static str {
        "docker"
    }

    fn nodes(&self) -> Vec<String> {
        let retired = self.retired.lock().expect("retired lock").clone();
        let containers = self.containers.lock().expect("containers lock");
        let mut nodes: Vec<String> = containers.keys().filter(|id| !retired.contains(*id)).cloned().collect();
        nodes.sort_by_key(|n| n.trim_start_matches('n').parse::<u32>().unwrap_or(u32::MAX));
        nodes
    }

    fn base_url(&self, node: &str) -> Result<String, DbError> {
        if self.retired.lock().expect("retired lock").contains(node) {
            return Err(DbError::UnknownNode(node.to_owned()));
        }
        self.urls.lock().expect("urls lock").get(node).cloned().ok_or_else(|| DbError::UnknownNode(node.to_owned()))
    }

    /// `kill -9`; a container that is not running is left as it is.
    async fn kill(&self, node: &str) -> Result<(), DbError> {
        if self.exit_detail(node).await.is_some() {
            return Ok(());
        }
        let id = self.container(node)?.id().to_owned();
        let options = KillContainerOptions { signal: "SIGKILL".into() };
        self.docker.kill_container(&id, Some(options)).await.map_err(docker_error)
    }

    async fn start(&self, node: &str) -> Result<(), DbError> {
        self.container(node)?.start().await.map_err(docker_error)?;
        self.wait_up(node).await
    }

    async fn pause(&self, node: &str) -> Result<(), DbError> {
        self.container(node)?.pause().await.map_err(docker_error)
    }

    async fn resume(&self, node: &str) -> Result<(), DbError> {
        self.container(node)?.unpause().await.map_err(docker_error)
    }

    async fn net_namespace(&self, node: &str) -> Result<NetNamespace, DbError> {
        let id = self.container(node)?.id().to_owned();
        let inspect =
            self.docker.inspect_container(&id, None::<InspectContainerOptions>).await.map_err(docker_error)?;
        let pid = inspect.state.as_ref().and_then(|s| s.pid).filter(|pid| *pid > 0);
        let pid = pid.ok_or_else(|| DbError::Docker(format!("{node} has no running process")))?;
        let ip = inspect
            .network_settings
            .and_then(|settings| settings.networks)
            .and_then(|networks| networks.get(&self.network).and_then(|n| n.ip_address.clone()))
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| DbError::Docker(format!("{node} has no address on {}", self.network)))?;
        Ok(NetNamespace { pid: pid as u32, ip })
    }

    fn data_dir(&self, node: &str) -> Result<PathBuf, DbError> {
        self.container(node)?;
        self.host_dirs.lock().expect("host dirs lock").get(node).cloned().ok_or(DbError::Unsupported {
            backend: "docker",
            what: "reach a node's data folder",
            why: "it lives in the container; disk faults need the power-loss file system (Disks::PowerLoss)",
        })
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
        let (node, args) = self.prepare_joiner()?;
        let mut host_dir = None;
        if self.disk_kind == Disks::PowerLoss {
            let dir = disks_root(&self.run_id).join(&node);
            self.disks.mount(&node, &dir)?;
            self.host_dirs.lock().expect("host dirs lock").insert(node.clone(), dir.clone());
            host_dir = Some(dir);
        }
        let place = Placement { image: &self.image, network: &self.network, run_id: &self.run_id };
        let container = start_container(place, &self.system, &node, args, host_dir.as_ref())
            .await
            .map_err(|error| DbError::Docker(format!("starting {node}: {error}")))?;
        self.containers.lock().expect("containers lock").insert(node.clone(), Arc::new(container));
        self.wait_up(&node).await?;
        Ok(node)
    }

    async fn retire_node(&self, node: &str, limit: Duration) -> Result<(), DbError> {
        let started = std::time::Instant::now();
        while self.exit_detail(node).await.is_none() {
            if started.elapsed() >= limit {
                return Err(DbError::Docker(format!("{node} did not stop within {limit:?} of leaving")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.retired.lock().expect("retired lock").insert(node.to_owned());
        Ok(())
    }

    async fn collect_logs(&self, dir: &Path) -> Result<(), DbError> {
        std::fs::create_dir_all(dir)?;
        let containers: Vec<(String, Arc<ContainerAsync<GenericImage>>)> =
            self.containers.lock().expect("containers lock").iter().map(|(n, c)| (n.clone(), c.clone())).collect();
        for (node, container) in containers {
            let mut log = container.stdout_to_vec().await.map_err(docker_error)?;
            log.extend(container.stderr_to_vec().await.map_err(docker_error)?);
            std::fs::write(dir.join(format!("{node}.log")), log)?;
        }
        Ok(())
    }

    async fn teardown(self) -> Result<(), DbError> {
        let mut first_error = None;
        let containers = std::mem::take(&mut *self.containers.lock().expect("containers lock"));
        for (node, container) in containers {
            // The only holder by now; were it not, dropping it removes it too.
            let Ok(container) = Arc::try_unwrap(container) else { continue };
            if let Err(error) = container.rm().await {
                first_error = first_error.or(Some(DbError::Docker(format!("removing {node}: {error}"))));
            }
        }
        // testcontainers drops the network with its last container; make sure.
        let _ = self.docker.remove_network(&self.network).await;
        self.disks.unmount_all();
        if !self.host_dirs.lock().expect("host dirs lock").is_empty() {
            let _ = std::fs::remove_dir_all(disks_root(&self.run_id));
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Where a run's containers go: its image, network and name prefix.
#[derive(Clone, Copy)]
struct Placement<'a> {
    image: &'a (String, String),
    network: &'a str,
    run_id: &'a str,
}

/// `node`'s address inside the run's network.
fn address(system: &SystemDescription, run_id: &str, node: &str) -> NodeAddress {
    NodeAddress {
        node: node.to_owned(),
        listen_host: "0.0.0.0".into(),
        advertise: format!("{run_id}-{node}"),
        client_port: system.client_port,
        peer_port: system.peer_port,
        data_dir: DATA_DIR.into(),
    }
}

/// Starts one node's container with `args` (its data folder a host
/// folder, when given).
async fn start_container(
    place: Placement<'_>,
    system: &SystemDescription,
    node: &str,
    args: Vec<String>,
    host_dir: Option<&PathBuf>,
) -> testcontainers::core::error::Result<ContainerAsync<GenericImage>> {
    let (name, tag) = place.image;
    let mut image = GenericImage::new(name.clone(), tag.clone())
        .with_exposed_port(system.client_port.tcp())
        .with_wait_for(WaitFor::Nothing)
        .with_network(place.network)
        .with_container_name(format!("{}-{node}", place.run_id))
        .with_label(OWNER_LABEL, std::process::id().to_string())
        .with_label(RUN_LABEL, place.run_id)
        .with_startup_timeout(READY_TIMEOUT)
        .with_cmd(args);
    if let Some(dir) = host_dir {
        image = image.with_mount(Mount::bind_mount(dir.display().to_string(), DATA_DIR));
    }
    image.start().await
}

impl DockerDb {
    /// Registers the next node (`n<K+1>`) and the command line that joins
    /// it to the current members; returns its id and arguments.
    fn prepare_joiner(&self) -> Result<(String, Vec<String>), DbError> {
        let mut addresses = self.addresses.lock().expect("addresses lock");
        let highest = addresses.iter().filter_map(|a| a.node.trim_start_matches('n').parse::<u32>().ok()).max();
        let node = format!("n{}", highest.unwrap_or(0) + 1);
        let retired = self.retired.lock().expect("retired lock").clone();
        let members: Vec<NodeAddress> = addresses.iter().filter(|a| !retired.contains(&a.node)).cloned().collect();
        let joiner = address(&self.system, &self.run_id, &node);
        let args = self.system.join_args(&joiner, &members, &self.extra_flags, &self.cluster_secret).ok_or(
            DbError::Unsupported { backend: "docker", what: "add nodes", why: "the description has no join_args" },
        )?;
        addresses.push(joiner);
        Ok((node, args))
    }

    /// Why `node`'s container is not running, if it is not: its exit code
    /// and the end of its log.
    async fn exit_detail(&self, node: &str) -> Option<String> {
        let container = self.container(node).ok()?;
        let inspect = self.docker.inspect_container(container.id(), None::<InspectContainerOptions>).await.ok()?;
        let state = inspect.state?;
        if state.running == Some(true) {
            return None;
        }
        let mut log = container.stdout_to_vec().await.unwrap_or_default();
        log.extend(container.stderr_to_vec().await.unwrap_or_default());
        Some(format!("exited with code {}; log: {}", state.exit_code.unwrap_or(-1), log_tail(&log, 2_000)))
    }

    async fn refusal(&self, node: &str) -> Option<DbError> {
        let detail = self.exit_detail(node).await?;
        Some(DbError::Refused { node: node.to_owned(), detail })
    }
}

/// Removes containers and networks of harness runs whose process is gone.
pub async fn sweep_leftovers(docker: &Docker) -> Result<(), DbError> {
    let alive = |pid: &str| pid.parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    let filters = HashMap::from([("label".to_owned(), vec![OWNER_LABEL.to_owned()])]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    for container in docker.list_containers(Some(options)).await.map_err(docker_error)? {
        let owner = container.labels.as_ref().and_then(|labels| labels.get(OWNER_LABEL)).cloned().unwrap_or_default();
        if let (false, Some(id)) = (alive(&owner), container.id) {
            tracing::warn!(%id, %owner, "removing a container left by a dead harness run");
            let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            docker.remove_container(&id, Some(options)).await.map_err(docker_error)?;
        }
    }
    let filters = HashMap::from([("name".to_owned(), vec!["kvtest-".to_owned()])]);
    for network in
        docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await.map_err(docker_error)?
    {
        let Some(name) = network.name else { continue };
        let owner = name.strip_prefix("kvtest-").and_then(|rest| rest.split('-').next()).unwrap_or("");
        if !alive(owner) {
            tracing::warn!(%name, "removing a network left by a dead harness run");
            let _ = docker.remove_network(&name).await;
        }
    }
    Ok(())
}
