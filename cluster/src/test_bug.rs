//! The catalogue of known bugs a node can be started with (`--test-bug
//! NAME`, repeatable), so that the harness can show it finds each class of
//! mistake that broke a real store. Each is a small, faithful version of a
//! real-world original, never louder than it: the harness must earn the
//! detection with its workloads, faults and checkers.
//!
//! Bugs are off unless asked for on the command line (or `KV_TEST_BUG`), no
//! client request can turn one on, and a node with any on says so loudly at
//! start.

use std::collections::BTreeSet;

/// One known bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum TestBug {
    /// Writes skip the learn phase: versions come from the coordinator's
    /// clock alone (last-write-wins).
    Lww,
    /// Strong reads answer the newest version they saw without writing it
    /// back to a quorum first.
    NoWriteBack,
    /// Strong reads answer from the first replica that replies.
    StrongReadOne,
    /// Stand-ins for unreachable owners count toward R and W: a hint kept
    /// for an owner counts as its ack, and an owner believed down as a read
    /// answer of "nothing".
    SloppyQuorum,
    /// The log is fsynced on a timer (every 10 s), not before the ack.
    AckBeforeFsync,
    /// Eventual reads ignore `min_timestamp`.
    IgnoreMinTimestamp,
    /// Compaction drops tombstones past the grace period without asking
    /// whether every other owner holds them.
    EarlyTombstoneGc,
    /// No hinted handoff and no anti-entropy: replicas that missed a write
    /// only catch up through read repair, if ever.
    NoRepair,
    /// A joining or leaving node switches as soon as it announces, without
    /// waiting for the members to learn of it and without the handoff:
    /// ranges change owners before the new owners hold them.
    ReleaseBeforeHeld,
}

impl TestBug {
    pub const ALL: [TestBug; 9] = [
        TestBug::Lww,
        TestBug::NoWriteBack,
        TestBug::StrongReadOne,
        TestBug::SloppyQuorum,
        TestBug::AckBeforeFsync,
        TestBug::IgnoreMinTimestamp,
        TestBug::EarlyTombstoneGc,
        TestBug::NoRepair,
        TestBug::ReleaseBeforeHeld,
    ];

    /// The flag value (`--test-bug NAME`).
    pub fn name(self) -> &'static str {
        match self {
            TestBug::Lww => "lww",
            TestBug::NoWriteBack => "no-write-back",
            TestBug::StrongReadOne => "strong-read-one",
            TestBug::SloppyQuorum => "sloppy-quorum",
            TestBug::AckBeforeFsync => "ack-before-fsync",
            TestBug::IgnoreMinTimestamp => "ignore-min-timestamp",
            TestBug::EarlyTombstoneGc => "early-tombstone-gc",
            TestBug::NoRepair => "no-repair",
            TestBug::ReleaseBeforeHeld => "release-before-held",
        }
    }

    /// What the bug does, and where the same mistake hurt a real store.
    pub fn origin(self) -> &'static str {
        match self {
            TestBug::Lww => {
                "Versions from the coordinator's clock alone. Cassandra orders writes by client or coordinator \
                 timestamps (last write wins); Jepsen (2013) showed skewed clocks make it drop acknowledged writes."
            }
            TestBug::NoWriteBack => {
                "Quorum reads without the write-back phase of ABD. Cassandra 4.0's table option read_repair = 'NONE' \
                 gives up monotonic quorum reads for this reason: a read can see a new value and the next an older one."
            }
            TestBug::StrongReadOne => {
                "Strong reads served from one replica's local state. etcd 0.4 served reads without going through \
                 consensus, and Jepsen (2014) observed stale reads; Consul's default mode had the same flaw."
            }
            TestBug::SloppyQuorum => {
                "Stand-ins for unreachable owners count toward R and W. Riak's sloppy quorums let fallback vnodes \
                 answer reads and acknowledge writes on both sides of a partition; Jepsen (2013) showed acknowledged \
                 writes lost and stale reads."
            }
            TestBug::AckBeforeFsync => {
                "Acknowledge, fsync later. Cassandra's default commitlog_sync = periodic fsyncs every 10 s and \
                 acknowledges before; writes acknowledged in that window are lost when every replica loses power."
            }
            TestBug::IgnoreMinTimestamp => {
                "Session reads that do not honour the session's position. Jepsen (2020) found MongoDB's causal \
                 sessions, with local read and w:1 write concerns, did not give read-your-writes."
            }
            TestBug::EarlyTombstoneGc => {
                "Tombstones purged before every replica has them. Cassandra purges tombstones after gc_grace_seconds \
                 whether or not repair reached every replica; deleted data comes back (zombies)."
            }
            TestBug::NoRepair => {
                "Replicas that missed writes never caught up. Cassandra with hinted handoff off and no `nodetool \
                 repair` leaves replicas diverged for good; only reads that happen to repair fix a key."
            }
            TestBug::ReleaseBeforeHeld => {
                "Ownership moves before the data does. A Cassandra node started with auto_bootstrap: false takes its \
                 token ranges without streaming them, and quorum reads that reach it miss acknowledged writes \
                 (CASSANDRA-2434 is the consistent-range-movement fix for the same class)."
            }
        }
    }
}

/// The bugs a node runs with; empty in every real deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestBugs(BTreeSet<TestBug>);

impl TestBugs {
    pub fn none() -> TestBugs {
        TestBugs::default()
    }

    pub fn of(bugs: &[TestBug]) -> TestBugs {
        TestBugs(bugs.iter().copied().collect())
    }

    pub fn has(&self, bug: TestBug) -> bool {
        self.0.contains(&bug)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|bug| bug.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_bug_has_a_flag_name_and_a_real_world_origin() {
        for bug in TestBug::ALL {
            let parsed = TestBug::from_str(bug.name(), false).expect("the name parses as the flag value");
            assert_eq!(parsed, bug);
            assert!(bug.origin().len() > 80, "{bug:?} needs its real-world sentence");
        }
        assert_eq!(TestBug::ALL.len(), TestBug::value_variants().len(), "ALL lists every bug");
    }

    #[test]
    fn sets_answer_membership() {
        let bugs = TestBugs::of(&[TestBug::Lww, TestBug::NoRepair, TestBug::Lww]);
        assert!(bugs.has(TestBug::Lww) && bugs.has(TestBug::NoRepair) && !bugs.has(TestBug::SloppyQuorum));
        assert_eq!(bugs.names(), vec!["lww", "no-repair"]);
        assert!(TestBugs::none().is_empty());
    }
}
