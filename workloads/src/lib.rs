//! Workloads and scenarios.
//!
//! A [`Workload`] is what a run does to the cluster and what it checks:
//! a generator (operation mix, keys, rate, time limit) and the names of the
//! checkers its history needs. A [`Scenario`] (one entry of a TOML file in
//! `workloads/scenarios/`) names a workload, a nemesis and the sizes of a
//! run. `make test-partition` is a scenario list, not a script.

pub mod matrix;
pub mod run;
pub mod scenario;
pub mod system;

use harness::generator::{Generator, KeySpace, Mix, OpMix, Stagger, TimeLimit};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a scenario's nodes run: containers, or local processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Docker,
    Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Puts, deletes and strong gets on a few keys at a time: linearizability.
    Register,
    /// Eventual gets with the session's `min_timestamp`, beside puts and
    /// deletes, plus plain eventual gets: session guarantees and staleness.
    Session,
    /// Each key written once, under faults, then read: nothing acknowledged
    /// may be lost, and every replica converges.
    Durability,
    /// Puts with TTLs of 1 to 3 s, read back: expiry on time.
    Ttl,
}

impl WorkloadKind {
    pub fn name(&self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Session => "session",
            WorkloadKind::Durability => "durability",
            WorkloadKind::Ttl => "ttl",
        }
    }

    /// The checkers this workload's history needs.
    pub fn checkers(&self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Register => &["linearizable", "durability", "convergence"],
            WorkloadKind::Session => &["session", "staleness", "convergence"],
            WorkloadKind::Durability => &["durability", "convergence"],
            WorkloadKind::Ttl => &["ttl", "convergence"],
        }
    }

    fn mix(&self) -> Mix {
        match self {
            WorkloadKind::Register => Mix { put: 4, delete: 1, strong_get: 5, ..Mix::default() },
            WorkloadKind::Session => Mix { put: 3, delete: 1, session_get: 4, eventual_get: 2, ..Mix::default() },
            WorkloadKind::Durability => Mix { put: 1, ..Mix::default() },
            WorkloadKind::Ttl => Mix { put: 1, strong_get: 2, eventual_get: 1, ..Mix::default() },
        }
    }

    /// The key space by default: (key prefix, keys active at a time,
    /// operations per key). Few operations per key keep linearizability
    /// checking cheap; a key is never touched again once retired, but for
    /// the final read.
    pub fn default_keys(&self) -> (&'static str, usize, usize) {
        match self {
            WorkloadKind::Register => ("reg-", 4, 60),
            WorkloadKind::Session => ("ses-", 8, 100),
            WorkloadKind::Durability => ("dur-", 64, 1),
            WorkloadKind::Ttl => ("ttl-", 16, 24),
        }
    }
}

/// A scenario's override of its workload's key space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// Keys active at a time.
    pub active: Option<usize>,
    /// Operations each key gets before it is retired.
    pub ops_per_key: Option<usize>,
}

/// A workload instance for one run.
pub struct Workload {
    pub kind: WorkloadKind,
    pub generator: Box<dyn Generator>,
}

impl Workload {
    /// `rate` operations per second over all processes, for `time_limit`,
    /// over the workload's key space as `keys` sizes it.
    pub fn new(kind: WorkloadKind, seed: u64, rate: f64, time_limit: Duration, keys: Keys) -> Workload {
        let (prefix, active, ops_per_key) = kind.default_keys();
        let keys = KeySpace::new(prefix, keys.active.unwrap_or(active), keys.ops_per_key.unwrap_or(ops_per_key));
        let mut ops = OpMix::new(StdRng::seed_from_u64(seed), kind.mix(), keys);
        if kind == WorkloadKind::Ttl {
            ops = ops.with_ttl(1, 3);
        }
        let generator = TimeLimit { inner: Stagger::per_second(ops, rate), limit: time_limit };
        Workload { kind, generator: Box::new(generator) }
    }
}
