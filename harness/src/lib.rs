//! A Jepsen-style harness for leaderless key-value stores.
//!
//! - [`db`]: the cluster under test (Docker containers, local processes, or
//!   nodes someone else started) and what can be done to its nodes.
//! - [`client`]: the `Client` trait and the adapters of kvnode, etcd, Redis.
//! - [`nemesis`]: faults — partitions, kills, pauses, clock skew, packet
//!   loss — injected and healed on a schedule.
//! - [`interop`]: Jepsen's and Porcupine's histories, imported and exported.
//! - [`node_api`]: the test-hook calls the harness makes to a node.
//! - [`powerfs`]: a file system that forgets what was not fsynced, for
//!   power-loss faults.
//! - [`report`]: the HTML report of a run folder, and the index of runs.
//! - [`system`]: system descriptions (`systems/*.toml`): how to start,
//!   reach and judge a store, and what it offers.
//!
//! See ARCHITECTURE.md at the root.

pub mod checker;
pub mod client;
pub mod db;
pub mod generator;
pub mod hash;
pub mod history;
pub mod interop;
pub mod model;
pub mod nemesis;
pub mod node_api;
pub mod powerfs;
pub mod report;
pub mod runner;
pub mod system;
pub mod utc;
pub mod verdict;
