//! Which store a scenario runs against, and whether it can: the scenario's
//! `system` names a description (`systems/NAME.toml`, a file path, or one
//! the harness ships; see `harness::system`), or `external` for nodes
//! someone else started.
//!
//! A run is refused before anything starts when its workload, faults,
//! backend or node flags need something the system lacks, with a message
//! that names it; a check the system cannot support says "not available
//! for this system" in the report, never VALID.

use crate::{Backend, WorkloadKind};
use harness::nemesis::FaultKind;
use harness::system::{self, Adapter, SystemDescription};

/// The name that means "nodes someone else started".
pub const EXTERNAL: &str = "external";

/// The description a scenario's `system` names (`adapter`: the client
/// adapter of external nodes).
pub fn resolve(name: &str, adapter: Adapter) -> Result<SystemDescription, String> {
    if name == EXTERNAL {
        return Ok(SystemDescription::external(adapter));
    }
    system::load(name).map_err(|error| error.to_string())
}

/// Each thing the run asks for that `system` lacks, in words.
pub fn missing(
    system: &SystemDescription,
    workload: WorkloadKind,
    nemesis: &[FaultKind],
    backend: Backend,
    flags: bool,
) -> Vec<String> {
    let can = &system.capabilities;
    let name = &system.name;
    let mut missing = Vec::new();
    if !system.offers_read("strong") {
        missing.push(format!("every workload ends with strong (linearizable) reads, which {name} does not offer"));
    }
    if workload == WorkloadKind::Session && !system.offers_read("eventual") {
        missing.push(format!("the session workload needs eventual reads, which {name} does not offer"));
    }
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
             which its description does not offer (capabilities.power_loss_disks)"
        ));
    }
    if system.launch.is_none() && !nemesis.is_empty() {
        missing.push(format!("faults need nodes the harness started; {name}'s were started by someone else"));
    }
    if system.launch.is_some() && backend == Backend::Docker && system.image.is_none() {
        missing.push(format!("the docker backend needs an image of {name} ([image] in its description)"));
    }
    if nemesis.contains(&FaultKind::Membership) && !can.membership {
        missing.push(format!(
            "the membership fault needs nodes that join and leave a running cluster, which {name}'s description \
             does not offer (capabilities.membership, launch.join_args)"
        ));
    }
    if flags && !can.node_flags {
        missing.push(format!("node_flags: {name}'s description does not take extra launch flags"));
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(name: &str) -> SystemDescription {
        SystemDescription::builtin(name).unwrap()
    }

    #[test]
    fn what_etcd_and_redis_lack_is_named_and_kvnode_lacks_nothing() {
        let everything = FaultKind::ALL.to_vec();
        let kvnode = builtin("kvnode");
        for workload in [WorkloadKind::Register, WorkloadKind::Session, WorkloadKind::Durability, WorkloadKind::Ttl] {
            assert!(missing(&kvnode, workload, &everything, Backend::Docker, true).is_empty());
        }
        let etcd = missing(&builtin("etcd"), WorkloadKind::Register, &[FaultKind::Membership], Backend::Local, false);
        assert!(etcd.iter().any(|m| m.contains("capabilities.membership")), "{etcd:?}");
        let faults = [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition];
        for name in ["etcd", "redis"] {
            for workload in [WorkloadKind::Register, WorkloadKind::Session] {
                let fine = missing(&builtin(name), workload, &faults, Backend::Docker, false);
                assert!(fine.is_empty(), "{name}: {fine:?}");
            }
        }
        let ttl = missing(&builtin("etcd"), WorkloadKind::Ttl, &[], Backend::Local, false);
        assert!(ttl.len() == 1 && ttl[0].contains("TTL"), "{ttl:?}");
        let all = missing(
            &builtin("redis"),
            WorkloadKind::Register,
            &[FaultKind::Clock, FaultKind::Corrupt],
            Backend::Docker,
            true,
        );
        assert_eq!(all.len(), 3, "{all:?}");
    }

    #[test]
    fn external_nodes_take_no_faults() {
        let external = SystemDescription::external(Adapter::Etcd);
        assert!(missing(&external, WorkloadKind::Register, &[], Backend::Local, false).is_empty());
        let kill = missing(&external, WorkloadKind::Register, &[FaultKind::Kill], Backend::Local, false);
        assert!(kill.len() == 1 && kill[0].contains("someone else"), "{kill:?}");
    }
}
