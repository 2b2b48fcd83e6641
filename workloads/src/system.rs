//! The systems under test a scenario can name, and what each offers.
//!
//! A run is refused before anything starts when its workload, faults,
//! backend or node flags need something the system lacks, with a message
//! that names it; a check the system cannot support says "not available
//! for this system" in the report, never VALID.

use crate::scenario::Backend;
use crate::WorkloadKind;
use harness::nemesis::FaultKind;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// This project's store (`cluster/`).
    #[default]
    Kvnode,
    /// etcd v3 (Debian's `etcd-server`), through its JSON gateway.
    Etcd,
}

/// What a system offers the harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Puts with a time to live.
    pub ttl: bool,
    /// Reads that honour `min_timestamp` (the session workload's reads).
    pub min_timestamp: bool,
    /// A look at each replica's own record of a key (the convergence check).
    pub replica_introspection: bool,
    /// A clock the harness can skew (the `clock` fault).
    pub clock_control: bool,
    /// Runs on the power-loss file system (power-loss, corrupt, slow-disk).
    pub power_loss_disks: bool,
    /// Has a container image and a docker backend (network faults).
    pub docker: bool,
    /// Takes kvnode's flags (`node_flags`, planted bugs).
    pub node_flags: bool,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Kvnode => "kvnode",
            System::Etcd => "etcd",
        }
    }

    pub fn capabilities(self) -> Capabilities {
        match self {
            System::Kvnode => Capabilities {
                ttl: true,
                min_timestamp: true,
                replica_introspection: true,
                clock_control: true,
                power_loss_disks: true,
                docker: true,
                node_flags: true,
            },
            // min_timestamp: the adapter keeps it as an etcd client would
            // (a serializable read, again linearizable when older).
            System::Etcd => Capabilities {
                ttl: false,
                min_timestamp: true,
                replica_introspection: false,
                clock_control: false,
                power_loss_disks: false,
                docker: false,
                node_flags: false,
            },
        }
    }

    /// Each thing the run asks for that this system lacks, in words.
    pub fn missing(self, workload: WorkloadKind, nemesis: &[FaultKind], backend: Backend, flags: bool) -> Vec<String> {
        let can = self.capabilities();
        let name = self.name();
        let mut missing = Vec::new();
        if workload == WorkloadKind::Ttl && !can.ttl {
            missing.push(format!("the ttl workload needs puts with a TTL, which {name} does not offer"));
        }
        if workload == WorkloadKind::Session && !can.min_timestamp {
            missing.push(format!("the session workload needs min_timestamp reads, which {name} does not offer"));
        }
        if nemesis.contains(&FaultKind::Clock) && !can.clock_control {
            missing.push(format!("the clock fault needs a clock the harness can skew, which {name} does not offer"));
        }
        if nemesis.iter().any(|k| k.needs_power_loss_disks()) && !can.power_loss_disks {
            missing.push(format!(
                "power-loss, power-loss-all, corrupt and slow-disk need {name} on the power-loss file system, \
                 which is not wired up for it"
            ));
        }
        if backend == Backend::Docker && !can.docker {
            missing.push(format!("the docker backend has no image of {name} yet; use backend = \"local\""));
        }
        if flags && !can.node_flags {
            missing.push(format!("node_flags are kvnode's flags; {name} does not take them"));
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_etcd_lacks_is_named_and_kvnode_lacks_nothing() {
        let everything = FaultKind::ALL.to_vec();
        for workload in [WorkloadKind::Register, WorkloadKind::Session, WorkloadKind::Durability, WorkloadKind::Ttl] {
            assert!(System::Kvnode.missing(workload, &everything, Backend::Docker, true).is_empty());
        }
        let fine =
            System::Etcd.missing(WorkloadKind::Register, &[FaultKind::Kill, FaultKind::Pause], Backend::Local, false);
        assert!(fine.is_empty(), "{fine:?}");
        let ttl = System::Etcd.missing(WorkloadKind::Ttl, &[], Backend::Local, false);
        assert!(ttl.len() == 1 && ttl[0].contains("TTL"), "{ttl:?}");
        let all = System::Etcd.missing(
            WorkloadKind::Register,
            &[FaultKind::Clock, FaultKind::Corrupt],
            Backend::Docker,
            true,
        );
        assert_eq!(all.len(), 4, "{all:?}");
    }
}
