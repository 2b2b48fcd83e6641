//! The power-loss file systems under the nodes' data folders, one per node
//! ([`super::Disks::PowerLoss`]), shared by both backends.

use super::DbError;
use crate::powerfs::{Limits, PowerFs};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a power loss waits for a killed node's files to be released.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct NodeDisks {
    mounts: Mutex<HashMap<String, Arc<PowerFs>>>,
}

fn disk_error(node: &str, error: impl std::fmt::Display) -> DbError {
    DbError::Disk { node: node.to_owned(), detail: error.to_string() }
}

impl NodeDisks {
    /// Mounts an empty power-loss file system at `dir` for `node`.
    pub fn mount(&self, node: &str, dir: &Path) -> Result<(), DbError> {
        let fs = PowerFs::mount(dir, Limits::default()).map_err(|error| disk_error(node, error))?;
        self.mounts.lock().expect("disks lock").insert(node.to_owned(), Arc::new(fs));
        Ok(())
    }

    /// Throws away what `node`'s file system holds that is not durable.
    pub async fn lose_unsynced(&self, node: &str) -> Result<serde_json::Value, DbError> {
        let fs = self.mounts.lock().expect("disks lock").get(node).cloned();
        let fs = fs.ok_or_else(|| disk_error(node, "its data folder is not a power-loss file system"))?;
        // The node is dead; its files are being released, which may take a moment.
        let lost = tokio::task::spawn_blocking(move || fs.power_loss_waiting(RELEASE_WAIT))
            .await
            .map_err(|error| disk_error(node, error))?
            .map_err(|error| disk_error(node, error))?;
        Ok(serde_json::json!({
            "files_reverted": lost.files_reverted,
            "unsynced_bytes_lost": lost.unsynced_bytes_lost,
            "entries_reverted": lost.entries_reverted,
            "inodes_lost": lost.inodes_lost,
        }))
    }

    /// Makes `node`'s fsyncs take `delay` longer (zero: normal again).
    pub fn set_fsync_delay(&self, node: &str, delay: Duration) -> Result<(), DbError> {
        let mounts = self.mounts.lock().expect("disks lock");
        let fs = mounts.get(node).ok_or_else(|| disk_error(node, "its data folder is not a power-loss file system"))?;
        fs.set_fsync_delay(delay);
        Ok(())
    }

    /// Unmounts every file system (also on drop).
    pub fn unmount_all(&self) {
        for (node, fs) in self.mounts.lock().expect("disks lock").drain() {
            match Arc::try_unwrap(fs) {
                Ok(fs) => {
                    if let Err(error) = fs.unmount() {
                        tracing::warn!(%node, %error, "could not unmount a node's power-loss file system");
                    }
                }
                // A power loss still holds it; it unmounts when that ends.
                Err(_) => tracing::warn!(%node, "a node's power-loss file system is still in use"),
            }
        }
    }
}
