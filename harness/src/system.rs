//! System descriptions: what the harness needs to know to test a store,
//! read from a TOML file (`systems/*.toml`, docs/SYSTEMS.md): how to start
//! one node (a command template), when it is up, which client adapter
//! speaks its API, how its container image is made, and what it offers
//! (its capabilities). The [`crate::db`] backends start whatever a
//! description says; nothing in them knows a particular store.
//!
//! Pure: parsing and template rendering do no I/O ([`load`] reads the file).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The descriptions that ship with the harness, usable from any folder.
const BUILTIN: [(&str, &str); 3] = [
    ("kvnode", include_str!("../../systems/kvnode.toml")),
    ("etcd", include_str!("../../systems/etcd.toml")),
    ("redis", include_str!("../../systems/redis.toml")),
];

#[derive(Debug, Error)]
pub enum SystemError {
    #[error("no system description {0:?}: name one of systems/*.toml (kvnode, etcd, redis) or give a file path")]
    Unknown(String),
    #[error("reading {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{source_name}: {error}")]
    Parse { source_name: String, error: String },
    #[error("{source_name}: {detail}")]
    Invalid { source_name: String, detail: String },
}

/// Which [`crate::client::Client`] speaks the store's API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Adapter {
    /// kvnode's JSON/HTTP API (docs/SPEC.md section 1).
    #[default]
    Kvnode,
    /// etcd v3's JSON gateway.
    Etcd,
    /// Redis's protocol (RESP), primary + replicas.
    Redis,
}

impl std::str::FromStr for Adapter {
    type Err = String;

    fn from_str(text: &str) -> Result<Adapter, String> {
        let all = [Adapter::Kvnode, Adapter::Etcd, Adapter::Redis];
        all.into_iter()
            .find(|adapter| adapter.name() == text)
            .ok_or(format!("no adapter {text:?}: kvnode, etcd or redis"))
    }
}

impl Adapter {
    pub fn name(self) -> &'static str {
        match self {
            Adapter::Kvnode => "kvnode",
            Adapter::Etcd => "etcd",
            Adapter::Redis => "redis",
        }
    }

    /// The scheme of the base URLs the Db hands this adapter.
    pub fn scheme(self) -> &'static str {
        match self {
            Adapter::Kvnode | Adapter::Etcd => "http",
            Adapter::Redis => "redis",
        }
    }
}

/// When a started node counts as up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ready {
    /// It accepts TCP connections on its client port.
    Listening,
    /// `GET <path>` on its client port answers 2xx.
    Http(String),
}

/// What a system offers the harness; a run that needs something missing
/// is refused before it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Read consistencies it offers: "strong" (linearizable), "eventual".
    pub reads: Vec<String>,
    /// Reads that honour `min_timestamp` (the session workload's reads).
    pub min_timestamp: bool,
    /// Puts with a time to live.
    pub ttl: bool,
    /// Compare-and-set.
    pub cas: bool,
    /// A look at each replica's own record of a key (the convergence check).
    pub replica_introspection: bool,
    /// A clock the harness can skew (the `clock` fault).
    pub clock_control: bool,
    /// Runs on the power-loss file system with kvnode's recovery
    /// (power-loss, corrupt, slow-disk faults).
    pub power_loss_disks: bool,
    /// Takes extra launch flags from a scenario (`node_flags`, planted bugs).
    pub node_flags: bool,
    /// Nodes join a running cluster (`launch.join_args`) and leave it
    /// through kvnode's admin API: the `membership` fault.
    #[serde(default)]
    pub membership: bool,
}

/// One node's command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// The program: a path, or a name looked up in `<NAME>_BIN`, next to
    /// the harness's own executable, then on the PATH.
    pub binary: String,
    /// Every node's arguments, with placeholders (see [`NodeAddress`]).
    pub args: Vec<String>,
    /// Arguments added for every node but the first (`n1`), for stores
    /// with one primary and replicas of it.
    #[serde(default)]
    pub replica_args: Vec<String>,
    /// One node's entry in `{peers}` (joined with commas).
    #[serde(default)]
    pub peer: String,
    /// The arguments of a node added to a running cluster, where `{peers}`
    /// is the current members' entries; empty where the store cannot grow.
    #[serde(default)]
    pub join_args: Vec<String>,
    /// How to get `binary` where it is missing, for the message.
    #[serde(default)]
    pub install: String,
}

/// How the docker backend gets the store's image (no registry: always
/// built on this host).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// `name:tag`; `<NAME>_IMAGE` overrides it.
    pub name: String,
    /// `host-binary` (the launch binary, the libraries `ldd` names and the
    /// loader, `docker import`ed by `harness/scripts/host-image.sh`), or a
    /// script path relative to the repository that builds the image.
    pub build: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemDescription {
    pub name: String,
    #[serde(default)]
    pub about: String,
    pub adapter: Adapter,
    /// The client port inside a container (local nodes get free ports).
    pub client_port: u16,
    /// The port nodes talk to each other on, inside a container.
    pub peer_port: u16,
    pub ready: Ready,
    pub capabilities: Capabilities,
    /// Settings of the adapter (e.g. Redis's `wait_replicas`).
    #[serde(default)]
    pub adapter_options: BTreeMap<String, toml::Value>,
    /// Absent for a system the harness cannot start (external nodes).
    pub launch: Option<Launch>,
    pub image: Option<ImageSpec>,
}

/// Where one node is, as its command line needs it. Placeholders:
/// `{node}`, `{listen_host}`, `{advertise}` (the address peers and the
/// harness reach it at), `{client_port}`, `{peer_port}`, `{data_dir}`,
/// `{peers}`, `{primary_advertise}`, `{primary_client_port}`, and
/// `{cluster_secret}` (fresh per cluster; the harness sends it to test hooks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub node: String,
    pub listen_host: String,
    pub advertise: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: String,
}

impl SystemDescription {
    pub fn parse(text: &str, source_name: &str) -> Result<SystemDescription, SystemError> {
        let description: SystemDescription = toml::from_str(text)
            .map_err(|error| SystemError::Parse { source_name: source_name.to_owned(), error: error.to_string() })?;
        description
            .validate()
            .map_err(|detail| SystemError::Invalid { source_name: source_name.to_owned(), detail })?;
        Ok(description)
    }

    /// A description the harness ships (`kvnode`, `etcd`, `redis`).
    pub fn builtin(name: &str) -> Option<SystemDescription> {
        let (_, text) = BUILTIN.iter().find(|(builtin, _)| *builtin == name)?;
        Some(SystemDescription::parse(text, &format!("systems/{name}.toml")).expect("shipped descriptions parse"))
    }

    /// kvnode, the harness's own store.
    pub fn kvnode() -> SystemDescription {
        SystemDescription::builtin("kvnode").expect("kvnode's description ships with the harness")
    }

    /// Nodes someone else started: no launch, no image, and only what
    /// every store offers (strong and eventual reads through `adapter`).
    pub fn external(adapter: Adapter) -> SystemDescription {
        // Each adapter's store ships a description of the same name.
        let mut description = SystemDescription::builtin(adapter.name()).expect("every adapter's store ships");
        description.name = format!("external-{}", description.name);
        description.about = "nodes started outside the harness".to_owned();
        description.launch = None;
        description.image = None;
        description.capabilities.power_loss_disks = false;
        description.capabilities.node_flags = false;
        // Their status and clock calls are test hooks, which nodes someone
        // else started need not have turned on.
        description.capabilities.replica_introspection = false;
        description.capabilities.clock_control = false;
        description
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("name {:?} must be letters, digits, - or _", self.name));
        }
        for read in &self.capabilities.reads {
            if read != "strong" && read != "eventual" {
                return Err(format!("capabilities.reads: {read:?} is not \"strong\" or \"eventual\""));
            }
        }
        if let Some(launch) = &self.launch {
            let known = [
                "node",
                "listen_host",
                "advertise",
                "client_port",
                "peer_port",
                "data_dir",
                "peers",
                "primary_advertise",
                "primary_client_port",
                "cluster_secret",
            ];
            let templates = launch.args.iter().chain(&launch.replica_args).chain(&launch.join_args);
            for template in templates.chain(std::iter::once(&launch.peer)) {
                for name in placeholders(template) {
                    if !known.contains(&name) {
                        return Err(format!("launch: unknown placeholder {{{name}}} in {template:?}"));
                    }
                }
            }
            if launch.args.iter().any(|arg| arg.contains("{peers}")) && launch.peer.is_empty() {
                return Err("launch: args use {peers} but `peer` is not set".into());
            }
        }
        Ok(())
    }

    /// The environment variable that overrides `what` (`BIN`, `IMAGE`):
    /// `REDIS_SERVER_BIN` for a binary named `redis-server`.
    pub fn env_override(name: &str, what: &str) -> String {
        format!("{}_{what}", name.to_ascii_uppercase().replace('-', "_"))
    }

    /// The arguments of node number `index` (0-based) of `nodes`, with
    /// `extra` flags (a scenario's `node_flags`) replacing the description's
    /// own flags of the same name.
    pub fn args(&self, index: usize, nodes: &[NodeAddress], extra: &[String], secret: &str) -> Vec<String> {
        let Some(launch) = &self.launch else { return Vec::new() };
        let node = &nodes[index];
        let primary = &nodes[0];
        let peers: Vec<String> = nodes.iter().map(|n| render(&launch.peer, n, primary, "", secret)).collect();
        let peers = peers.join(",");
        let mut args: Vec<String> = launch.args.iter().map(|arg| render(arg, node, primary, &peers, secret)).collect();
        if index > 0 {
            args.extend(launch.replica_args.iter().map(|arg| render(arg, node, primary, &peers, secret)));
        }
        override_flags(&args, extra)
    }

    /// The command line of `node`, added to a running cluster whose
    /// members are `members`; `None` where the description has no
    /// `join_args`.
    pub fn join_args(
        &self,
        node: &NodeAddress,
        members: &[NodeAddress],
        extra: &[String],
        secret: &str,
    ) -> Option<Vec<String>> {
        let launch = self.launch.as_ref().filter(|launch| !launch.join_args.is_empty())?;
        let primary = members.first().unwrap_or(node);
        let peers: Vec<String> = members.iter().map(|n| render(&launch.peer, n, primary, "", secret)).collect();
        let peers = peers.join(",");
        let args: Vec<String> = launch.join_args.iter().map(|arg| render(arg, node, primary, &peers, secret)).collect();
        Some(override_flags(&args, extra))
    }

    pub fn offers_read(&self, consistency: &str) -> bool {
        self.capabilities.reads.iter().any(|read| read == consistency)
    }

    /// An adapter option as an unsigned number, `default` when absent.
    pub fn option_u64(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.adapter_options.get(key) {
            None => Ok(default),
            Some(toml::Value::Integer(n)) if *n >= 0 => Ok(*n as u64),
            Some(other) => Err(format!("{}: adapter_options.{key} = {other} is not a whole number", self.name)),
        }
    }
}

/// Reads a description: a file path (anything with a `/` or ending in
/// `.toml`), else `systems/NAME.toml` under the current folder, else one
/// the harness ships.
pub fn load(name_or_path: &str) -> Result<SystemDescription, SystemError> {
    let looks_like_path = name_or_path.contains('/') || name_or_path.ends_with(".toml");
    let path = if looks_like_path {
        PathBuf::from(name_or_path)
    } else {
        Path::new("systems").join(format!("{name_or_path}.toml"))
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => SystemDescription::parse(&text, &path.display().to_string()),
        Err(error) if looks_like_path => Err(SystemError::Read { path, error }),
        Err(_) => SystemDescription::builtin(name_or_path).ok_or_else(|| SystemError::Unknown(name_or_path.to_owned())),
    }
}

/// The `{name}`s in `template`.
fn placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        names.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    names
}

fn render(template: &str, node: &NodeAddress, primary: &NodeAddress, peers: &str, secret: &str) -> String {
    template
        .replace("{cluster_secret}", secret)
        .replace("{node}", &node.node)
        .replace("{listen_host}", &node.listen_host)
        .replace("{advertise}", &node.advertise)
        .replace("{client_port}", &node.client_port.to_string())
        .replace("{peer_port}", &node.peer_port.to_string())
        .replace("{data_dir}", &node.data_dir)
        .replace("{peers}", peers)
        .replace("{primary_advertise}", &primary.advertise)
        .replace("{primary_client_port}", &primary.client_port.to_string())
}

/// `base` with `extra` on top: a `--flag` given in `extra` replaces the
/// same flag of `base` (with its value), since a program usually takes
/// each flag once.
pub fn override_flags(base: &[String], extra: &[String]) -> Vec<String> {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < base.len() {
        let takes_value = base[i].starts_with("--") && base.get(i + 1).is_some_and(|next| !next.starts_with("--"));
        let width = if takes_value { 2 } else { 1 };
        if !extra.contains(&base[i]) {
            flags.extend_from_slice(&base[i..i + width]);
        }
        i += width;
    }
    flags.extend_from_slice(extra);
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(node: &str, port: u16) -> NodeAddress {
        NodeAddress {
            node: node.into(),
            listen_host: "127.0.0.1".into(),
            advertise: "127.0.0.1".into(),
            client_port: port,
            peer_port: port + 1,
            data_dir: format!("/tmp/{node}"),
        }
    }

    #[test]
    fn every_shipped_description_parses() {
        for (name, _) in BUILTIN {
            let description = SystemDescription::builtin(name).unwrap();
            assert_eq!(description.name, name);
            assert!(description.launch.is_some() && description.image.is_some());
        }
    }

    #[test]
    fn templates_render_peers_and_the_primary() {
        let nodes = [address("n1", 7000), address("n2", 7010)];
        let etcd = SystemDescription::builtin("etcd").unwrap();
        let args = etcd.args(1, &nodes, &[], "s");
        let at = args.iter().position(|a| a == "--initial-cluster").unwrap();
        assert_eq!(args[at + 1], "n1=http://127.0.0.1:7001,n2=http://127.0.0.1:7011");
        assert!(args.contains(&"/tmp/n2".to_owned()));
        let redis = SystemDescription::builtin("redis").unwrap();
        assert!(!redis.args(0, &nodes, &[], "s").contains(&"--replicaof".to_owned()));
        let replica = redis.args(1, &nodes, &[], "s");
        let at = replica.iter().position(|a| a == "--replicaof").unwrap();
        assert_eq!(replica[at + 1..at + 3], ["127.0.0.1", "7000"]);
        assert_eq!(replica.iter().position(|a| a == "--save").map(|i| replica[i + 1].as_str()), Some(""));
    }

    #[test]
    fn extra_flags_replace_the_description_s() {
        let nodes = [address("n1", 7000)];
        let extra: Vec<String> = ["--anti-entropy-interval-ms", "900", "--test-bug", "lww"].map(String::from).to_vec();
        let args = SystemDescription::kvnode().args(0, &nodes, &extra, "sekrit-0123456789");
        assert_eq!(args.iter().filter(|f| *f == "--anti-entropy-interval-ms").count(), 1);
        let at = args.iter().position(|f| f == "--anti-entropy-interval-ms").unwrap();
        assert_eq!(args[at + 1], "900");
        assert!(args.contains(&"--test-hooks".to_owned()) && args.contains(&"--hint-interval-ms".to_owned()));
        assert!(args.ends_with(&extra));
        let at = args.iter().position(|f| f == "--cluster-secret").unwrap();
        assert_eq!(args[at + 1], "sekrit-0123456789");
    }

    #[test]
    fn bad_descriptions_are_refused_with_the_reason() {
        let etcd = include_str!("../../systems/etcd.toml");
        let typo = etcd.replace("{data_dir}", "{datadir}");
        let error = SystemDescription::parse(&typo, "x.toml").unwrap_err().to_string();
        assert!(error.contains("unknown placeholder {datadir}"), "{error}");
        let read = etcd.replace("reads = [\"strong\", \"eventual\"]", "reads = [\"quorum\"]");
        assert!(SystemDescription::parse(&read, "x.toml").unwrap_err().to_string().contains("quorum"));
        let field = format!("{etcd}\nport = 1\n");
        assert!(SystemDescription::parse(&field, "x.toml").unwrap_err().to_string().contains("port"));
        assert!(matches!(load("no-such-store"), Err(SystemError::Unknown(_))));
        assert!(matches!(load("/nonexistent/x.toml"), Err(SystemError::Read { .. })));
    }
}
