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
            File::open(&path)?.sync_all()?;
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
}
