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

use harness::generator::{Generator, KeySpace, Mix, OpMix, Stagger, TimeLimit};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

    fn mix_and_keys(&self) -> (Mix, KeySpace) {
        match self {
            WorkloadKind::Register => {
                (Mix { put: 4, delete: 1, strong_get: 5, ..Mix::default() }, KeySpace::new("reg-", 4, 60))
            }
            WorkloadKind::Session => (
                Mix { put: 3, delete: 1, session_get: 4, eventual_get: 2, ..Mix::default() },
                KeySpace::new("ses-", 8, 100),
            ),
            WorkloadKind::Durability => (Mix { put: 1, ..Mix::default() }, KeySpace::new("dur-", 64, 1)),
            WorkloadKind::Ttl => {
                (Mix { put: 1, strong_get: 2, eventual_get: 1, ..Mix::default() }, KeySpace::new("ttl-", 16, 24))
            }
        }
    }
}

/// A workload instance for one run.
pub struct Workload {
    pub kind: WorkloadKind,
    pub generator: Box<dyn Generator>,
}

impl Workload {
    /// `rate` operations per second over all processes, for `time_limit`.
    pub fn new(kind: WorkloadKind, seed: u64, rate: f64, time_limit: Duration) -> Workload {
        let (mix, keys) = kind.mix_and_keys();
        let mut ops = OpMix::new(StdRng::seed_from_u64(seed), mix, keys);
        if kind == WorkloadKind::Ttl {
            ops = ops.with_ttl(1, 3);
        }
        let generator = TimeLimit { inner: Stagger::per_second(ops, rate), limit: time_limit };
        Workload { kind, generator: Box::new(generator) }
    }
}
