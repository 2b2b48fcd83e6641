//! Making files and directory entries durable.
//!
//! `sync_data` on a file makes its bytes durable, not its name: a file
//! created (or renamed) since its directory was last synced can vanish in a
//! power loss even though its contents were synced. The harness's power-loss
//! file system models exactly that (strict POSIX), and so do some real ones.

use std::fs::File;
use std::io;
use std::path::Path;

/// Syncs the directory `dir` itself: the names it holds become durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Syncs every file and directory under `root`, and `root` itself: after
/// it, what `root` holds survives a power loss as it is now. Files are
/// synced before the directories naming them.
pub fn sync_tree(root: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            match File::open(&path) {
                Ok(file) => file.sync_all()?,
                // Removed since it was listed (sled deletes blob files
                // in its own threads): nothing left to sync, and the
                // directory sync below makes the removal durable.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
    }
    sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_syncs_without_error_and_missing_roots_are_errors() {
        let root = std::env::temp_dir().join(format!("fsync-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/file"), b"x").unwrap();
        std::fs::write(root.join("top"), b"y").unwrap();
        sync_tree(&root).unwrap();
        assert!(sync_tree(&root.join("missing")).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// sled removes files from its own threads while a checkpoint syncs
    /// its folder (found by `make soak`: a blob file listed, then gone
    /// before it was opened, failed the checkpoint and so the store).
    #[test]
    fn files_removed_while_the_tree_is_synced_are_no_error() {
        let root = std::env::temp_dir().join(format!("fsync-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::write(root.join(format!("blob-{}", i % 64)), b"x").unwrap();
                    let _ = std::fs::remove_file(root.join(format!("blob-{}", (i + 32) % 64)));
                    i += 1;
                }
            })
        };
        let results: Vec<io::Result<()>> = (0..300).map(|_| sync_tree(&root)).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        for result in results {
            result.unwrap();
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
