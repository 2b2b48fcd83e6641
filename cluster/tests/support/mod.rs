//! Starting real `kvnode` processes for integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A running `kvnode`, killed when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub base_url: String,
    pub data_dir: PathBuf,
}

/// A fresh, empty folder for one node's data.
pub fn temp_data_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("kvnode-test-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create data dir");
    dir
}

impl NodeProcess {
    /// Starts `kvnode` on a free port with `data_dir` and `extra` flags, and
    /// waits for its readiness line.
    pub fn start(node_id: &str, data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kvnode"))
            .args(["--node-id", node_id, "--listen", "127.0.0.1:0", "--log", "warn"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kvnode");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read readiness line");
        let listen = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("listen="))
            .unwrap_or_else(|| panic!("no readiness line from kvnode, got {line:?}"));
        NodeProcess { child, base_url: format!("http://{listen}"), data_dir: data_dir.to_path_buf() }
    }

    pub fn item_url(&self) -> String {
        format!("{}/api/v1/item", self.base_url)
    }

    /// `kill -9`: no shutdown, no checkpoint.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL kvnode");
        self.child.wait().expect("reap kvnode");
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM kvnode");
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("poll kvnode") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kvnode did not stop within 10 s of SIGTERM");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}
pub mod linearizability;
