//! A Jepsen-style harness for leaderless key-value stores.
//!
//! - [`db`]: the cluster under test (Docker containers, or local processes)
//!   and what can be done to its nodes.
//! - [`nemesis`]: faults — partitions, kills, pauses, clock skew, packet
//!   loss — injected and healed on a schedule.
//! - [`node_api`]: the test-hook calls the harness makes to a node.
//! - [`powerfs`]: a file system that forgets what was not fsynced, for
//!   power-loss faults.
//! - [`report`]: the HTML report of a run folder, and the index of runs.
//!
//! See ARCHITECTURE.md at the root.

pub mod checker;
pub mod client;
pub mod db;
pub mod generator;
pub mod history;
pub mod model;
pub mod nemesis;
pub mod node_api;
pub mod powerfs;
pub mod report;
pub mod runner;
pub mod utc;
pub mod verdict;
