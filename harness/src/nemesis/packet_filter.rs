//! Real packet filter rules inside a node's network namespace, run from the
//! host (`nsenter --net=/proc/PID/ns/net iptables ...`): nothing is needed
//! inside the image. Our rules live in a chain of our own, [`CHAIN`],
//! jumped to from INPUT and OUTPUT; healing flushes it. Docker's own rules
//! (its DNS redirect in `nat`) are never touched.

use crate::db::NetNamespace;
use std::process::Command;
use thiserror::Error;

pub const CHAIN: &str = "KVNEMESIS";

#[derive(Debug, Error)]
pub enum FilterError {
    #[error("`{command}` failed: {output}")]
    Failed { command: String, output: String },
    #[error("cannot run {tool}: {error} (install iptables and util-linux's nsenter on the host)")]
    Missing { tool: &'static str, error: String },
}

/// Runs `tool args` inside `ns`'s network namespace.
fn run_in(ns: &NetNamespace, tool: &'static str, args: &[&str]) -> Result<String, FilterError> {
    let netns = format!("--net=/proc/{}/ns/net", ns.pid);
    let output = Command::new("nsenter")
        .arg(&netns)
        .arg(tool)
        .args(args)
        .output()
        .map_err(|error| FilterError::Missing { tool: "nsenter", error: error.to_string() })?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        return Err(FilterError::Failed {
            command: format!("nsenter {netns} {tool} {}", args.join(" ")),
            output: text,
        });
    }
    Ok(text)
}

fn iptables(ns: &NetNamespace, args: &[&str]) -> Result<String, FilterError> {
    let mut all = vec!["-w", "5"];
    all.extend_from_slice(args);
    run_in(ns, "iptables", &all)
}

/// Creates [`CHAIN`] and the jumps to it, once; empties it.
pub fn install(ns: &NetNamespace) -> Result<(), FilterError> {
    ensure(ns)?;
    heal(ns)
}

/// Creates [`CHAIN`] and its jumps if this namespace lacks them (a
/// restarted container has a new, empty namespace).
fn ensure(ns: &NetNamespace) -> Result<(), FilterError> {
    if iptables(ns, &["-S", CHAIN]).is_err() {
        iptables(ns, &["-N", CHAIN])?;
    }
    for hook in ["INPUT", "OUTPUT"] {
        if iptables(ns, &["-C", hook, "-j", CHAIN]).is_err() {
            iptables(ns, &["-I", hook, "1", "-j", CHAIN])?;
        }
    }
    Ok(())
}

/// Removes every rule of ours in this namespace.
pub fn heal(ns: &NetNamespace) -> Result<(), FilterError> {
    ensure(ns)?;
    iptables(ns, &["-F", CHAIN]).map(|_| ())
}

/// Drops every packet to and from `peer_ip`.
pub fn cut(ns: &NetNamespace, peer_ip: &str) -> Result<(), FilterError> {
    ensure(ns)?;
    iptables(ns, &["-A", CHAIN, "-s", peer_ip, "-j", "DROP"])?;
    iptables(ns, &["-A", CHAIN, "-d", peer_ip, "-j", "DROP"]).map(|_| ())
}

/// Drops packets from `peer_ip` at random with `probability`.
pub fn lose(ns: &NetNamespace, peer_ip: &str, probability: f64) -> Result<(), FilterError> {
    ensure(ns)?;
    let probability = format!("{probability:.4}");
    iptables(
        ns,
        &[
            "-A",
            CHAIN,
            "-s",
            peer_ip,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &probability,
            "-j",
            "DROP",
        ],
    )
    .map(|_| ())
}

/// The rules currently in our chain (for tests and reports).
pub fn rules(ns: &NetNamespace) -> Result<String, FilterError> {
    iptables(ns, &["-S", CHAIN])
}

/// Adds `delay_ms` to every packet leaving the node, if the kernel has
/// netem; the error says so when it has not.
pub fn delay(ns: &NetNamespace, delay_ms: u64) -> Result<(), FilterError> {
    let delay = format!("{delay_ms}ms");
    run_in(ns, "tc", &["qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &delay]).map(|_| ())
}

pub fn clear_delay(ns: &NetNamespace) -> Result<(), FilterError> {
    match run_in(ns, "tc", &["qdisc", "del", "dev", "eth0", "root"]) {
        Ok(_) => Ok(()),
        // Nothing to delete is healed already.
        Err(FilterError::Failed { output, .. })
            if output.contains("No such file") || output.contains("Cannot delete") =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}
