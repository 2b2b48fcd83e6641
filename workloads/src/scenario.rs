//! Scenario files: TOML lists of runs.
//!
//! ```toml
//! [[scenario]]
//! name = "register-partition"
//! workload = "register"
//! nemesis = ["partition"]
//! nodes = 5
//! concurrency = 10
//! rate = 100.0
//! time_limit_secs = 60
//! nemesis_interval_secs = 5
//! backend = "docker"
//! ```

use crate::{Keys, WorkloadKind};
use harness::db::Disks;
use harness::nemesis::FaultKind;
use harness::system::Adapter;
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// A client call's bound unless a scenario sets `op_timeout_ms`.
pub const DEFAULT_OP_TIMEOUT_MS: u64 = 5_000;

pub use crate::Backend;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub workload: WorkloadKind,
    /// Fault kinds the nemesis draws from; empty for none.
    #[serde(default)]
    pub nemesis: Vec<FaultKind>,
    #[serde(default = "defaults::nodes")]
    pub nodes: usize,
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// Target operations per second, all processes together.
    #[serde(default = "defaults::rate")]
    pub rate: f64,
    #[serde(default = "defaults::time_limit_secs")]
    pub time_limit_secs: u64,
    #[serde(default = "defaults::nemesis_interval_secs")]
    pub nemesis_interval_secs: u64,
    #[serde(default = "defaults::backend")]
    pub backend: Backend,
    /// The store under test: a description's name (`systems/NAME.toml`,
    /// or one the harness ships: kvnode, etcd, redis), a path to one, or
    /// `external` for `external_nodes` someone else started.
    #[serde(default = "defaults::system", skip_serializing_if = "is_kvnode")]
    pub system: String,
    /// With `system = "external"`: the client adapter their API needs.
    #[serde(default, skip_serializing_if = "is_kvnode_adapter")]
    pub adapter: Adapter,
    /// With `system = "external"`: each node's base URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_nodes: Vec<String>,
    /// Fixed seed; a fresh one (printed) when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Extra `kvnode` flags for every node (e.g. `["--test-bug", "lww"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_flags: Vec<String>,
    /// How long replicas may take to agree after the final heal.
    #[serde(default = "defaults::convergence_timeout_secs")]
    pub convergence_timeout_secs: u64,
    /// Bound on each client call: a write past it is `info`, a read `fail`.
    /// Short, and a frozen node stops holding up the processes that call it.
    #[serde(default = "defaults::op_timeout_ms")]
    pub op_timeout_ms: u64,
    /// The workload's key space, where the scenario sizes it itself
    /// (`keys = { active = 12, ops_per_key = 60 }`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub keys: Keys,
}

fn is_kvnode(system: &str) -> bool {
    system == "kvnode"
}

fn is_kvnode_adapter(adapter: &Adapter) -> bool {
    *adapter == Adapter::Kvnode
}

fn is_default(keys: &Keys) -> bool {
    *keys == Keys::default()
}

mod defaults {
    pub fn system() -> String {
        "kvnode".into()
    }
    pub fn nodes() -> usize {
        5
    }
    pub fn concurrency() -> usize {
        10
    }
    pub fn rate() -> f64 {
        100.0
    }
    pub fn time_limit_secs() -> u64 {
        60
    }
    pub fn nemesis_interval_secs() -> u64 {
        5
    }
    pub fn backend() -> super::Backend {
        super::Backend::Docker
    }
    pub fn convergence_timeout_secs() -> u64 {
        60
    }
    pub fn op_timeout_ms() -> u64 {
        super::DEFAULT_OP_TIMEOUT_MS
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    scenario: Vec<Scenario>,
}

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Parse { path: String, error: String },
    #[error("{path}: scenario {name:?}: {problem}")]
    Invalid { path: String, name: String, problem: String },
}

impl Scenario {
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes == 0 || self.concurrency == 0 || self.time_limit_secs == 0 || self.nemesis_interval_secs == 0 {
            return Err("nodes, concurrency, time_limit_secs and nemesis_interval_secs must be > 0".into());
        }
        if self.op_timeout_ms == 0 {
            return Err("op_timeout_ms must be > 0".into());
        }
        if self.keys.active == Some(0) || self.keys.ops_per_key == Some(0) {
            return Err("keys.active and keys.ops_per_key must be > 0".into());
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err(format!("rate must be a positive number, got {}", self.rate));
        }
        let external = self.system == crate::system::EXTERNAL;
        if external == self.external_nodes.is_empty() {
            return Err("external_nodes go with system = \"external\", and it needs at least one".into());
        }
        let system = crate::system::resolve(&self.system, self.adapter)?;
        let flags = !self.node_flags.is_empty();
        let missing = crate::system::missing(&system, self.workload, &self.nemesis, self.backend, flags);
        if !missing.is_empty() {
            return Err(format!("{} cannot run it: {}", system.name, missing.join("; ")));
        }
        let needs_network = self.nemesis.iter().any(|k| k.needs_network());
        if self.backend == Backend::Local && needs_network && !external {
            return Err("the local backend cannot partition or drop packets; use backend = \"docker\"".into());
        }
        Ok(())
    }

    /// What the nodes' data folders sit on: the power-loss file system
    /// when a fault needs it.
    pub fn disks(&self) -> Disks {
        match self.nemesis.iter().any(|k| k.needs_power_loss_disks()) {
            true => Disks::PowerLoss,
            false => Disks::Plain,
        }
    }

    /// The fault kinds, comma-separated, as the command line takes them.
    pub fn nemesis_names(&self) -> String {
        self.nemesis.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
    }
}

pub fn load(path: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read { path: shown.clone(), error })?;
    let file: ScenarioFile = toml::from_str(&text)
        .map_err(|error| ScenarioError::Parse { path: shown.clone(), error: error.to_string() })?;
    for scenario in &file.scenario {
        scenario.validate().map_err(|problem| ScenarioError::Invalid {
            path: shown.clone(),
            name: scenario.name.clone(),
            problem,
        })?;
    }
    Ok(file.scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_scenario_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut loaded = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|name| name == "bugs.toml") {
                continue; // the matrix's file: `matrix`'s tests load it
            }
            loaded += load(&path).unwrap_or_else(|e| panic!("{e}")).len();
        }
        assert!(loaded >= 6, "partition, local and faults files: {loaded}");
    }

    #[test]
    fn bad_scenarios_are_refused_clearly() {
        let dir = std::env::temp_dir().join(format!("scenario-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |text: &str| {
            let path = dir.join("s.toml");
            std::fs::write(&path, text).unwrap();
            load(&path)
        };
        assert!(matches!(write("[[scenario]]\nname = \"x\"\nworkload = \"nope\""), Err(ScenarioError::Parse { .. })));
        assert!(matches!(
            write("[[scenario]]\nname = \"x\"\nworkload = \"register\"\ntypo = 1"),
            Err(ScenarioError::Parse { .. })
        ));
        let local_partition =
            "[[scenario]]\nname = \"x\"\nworkload = \"register\"\nnemesis = [\"partition\"]\nbackend = \"local\"";
        assert!(matches!(write(local_partition), Err(ScenarioError::Invalid { .. })));
        let etcd_ttl = "[[scenario]]\nname = \"x\"\nworkload = \"ttl\"\nsystem = \"etcd\"\nbackend = \"local\"";
        match write(etcd_ttl) {
            Err(ScenarioError::Invalid { problem, .. }) => assert!(problem.contains("TTL"), "{problem}"),
            other => panic!("a TTL workload on etcd must be refused, naming the capability: {other:?}"),
        }
        let fine = write("[[scenario]]\nname = \"x\"\nworkload = \"ttl\"").unwrap();
        assert_eq!(fine[0].nodes, 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
