//! powerfs: a filesystem in userspace that keeps written-but-not-fsynced
//! state in memory and throws it away on command (Jepsen's LazyFS idea).
//!
//! # Why
//!
//! `kill -9` keeps the page cache: a write that reached `write()` survives
//! a process kill without any fsync, so killing a node never shows whether
//! it acknowledges writes before they are durable. Only a filesystem that
//! holds unsynced data itself can show what a power loss does. The harness
//! mounts one `PowerFs` per node as the node's data directory (directly for
//! local processes, bind-mounted into Docker containers with
//! `-v MOUNTPOINT:/data`), kills the node, calls [`PowerFs::power_loss`],
//! and restarts the node.
//!
//! # Durability semantics (strict POSIX)
//!
//! - File content (data bytes and size, truncation and extension by
//!   setattr or fallocate included) becomes durable at fsync or fdatasync
//!   of that file (FUSE_FSYNC, through any handle of the inode). The two are
//!   the same here.
//! - Directory entries (create, mknod, mkdir, unlink, rmdir, link, and
//!   rename: both the removal from the source directory and the addition
//!   to the destination) become durable only at fsync of the directory that
//!   holds the entry (FUSE_FSYNCDIR). A new file's entry is *not* made
//!   durable by fsync of the file itself.
//! - [`PowerFs::power_loss`]: every inode reverts to its durable content;
//!   the tree becomes what the root's durable entries reach (recursively
//!   through durable entries); inodes no durable entry reaches are gone.
//!   An inode reached by a durable entry but never fsynced itself is an
//!   empty file (or an empty directory). Renames not made durable are
//!   undone: the old name is back unless the old directory was fsynced
//!   after the rename. If only the destination directory was fsynced the
//!   file has both names afterwards (two hard links); if only the source
//!   was, it has neither and is gone (unless another durable entry names
//!   it). A directory can likewise end up in two
//!   durable parents; it keeps the first one breadth first by name, and
//!   the other entry is dropped (counted in [`PowerLoss`]).
//! - What reaches this filesystem as an fsync: fsync(2), fdatasync(2), and
//!   every write to a file opened with O_SYNC or O_DSYNC (the kernel sends
//!   FUSE_FSYNC after it). What does not, and so makes nothing durable:
//!   close(2), sync_file_range(2) (sled's flush; it only starts writeback
//!   of dirty pages, and there are none here), and syncfs(2)/sync(2)
//!   (fuser 0.18 has no syncfs request).
//! - Nothing is torn: an un-fsynced change is lost whole, never in part (a
//!   real disk may keep some sectors of it). Metadata other than size and
//!   entries (mode, owner, times) is not modelled and never rolls back.
//! - A power loss is refused while any file or directory of the mount is
//!   open (the processes using them would see inodes change under them):
//!   kill the node first. Since the kernel sends RELEASE asynchronously
//!   after a kill, `power_loss` waits up to [`RELEASE_WAIT`] for the open
//!   handles to drop to zero, then fails with [`PowerFsError::FilesOpen`].
//!
//! Supported: regular files and directories, hard links, rename with flags
//! 0 and RENAME_NOREPLACE (others: EINVAL), fallocate mode 0 (others:
//! EOPNOTSUPP; it extends the size but reserves no memory). Not supported:
//! symlinks (EPERM), device nodes, fifos and sockets (EPERM), xattrs and
//! locks (ENOSYS: the kernel then keeps POSIX locks locally).
//!
//! # Memory
//!
//! File data lives in 4 KiB pages shared between the current and the
//! durable content (copy on write), so fsync costs O(pages changed since
//! the last fsync), not O(file size) (`pages.rs`). All file data of one
//! filesystem, current and durable, is bounded by [`Limits::bytes_limit`];
//! inodes by [`Limits::inodes_limit`]. A write or truncation that would go
//! beyond fails with ENOSPC and changes nothing. An unlinked file is freed
//! once its unlink is durable (or at the next power loss), not before: a
//! power loss could bring it back.
//!
//! # Kernel caches
//!
//! The kernel must not answer from a cache after a power loss, or the
//! restarted node reads data that no longer exists:
//!
//! - Lookup, getattr, create, mkdir, link and setattr replies carry an
//!   entry and attribute TTL of zero: the kernel asks again at every path
//!   walk and stat (and drops a negative dentry at once, as an ENOENT
//!   reply is not cached).
//! - Open replies carry no FOPEN_KEEP_CACHE (fuser's default replies carry
//!   no flags either), so the kernel drops a file's page cache at every
//!   open; no FOPEN_CACHE_DIR, so directory listings are not cached. fuser
//!   0.18 does not ask for FUSE_WRITEBACK_CACHE: every `write()` reaches
//!   this filesystem before it returns, so no dirty data is left in the
//!   kernel at a kill.
//! - No FOPEN_DIRECT_IO: buffered I/O goes through the page cache (dropped
//!   at open, as said); O_DIRECT opens are accepted and their reads and
//!   writes bypass the page cache and come here directly, aligned or not.
//! - Inode numbers are never reused, across power losses too: the kernel
//!   may remember any number it was ever given. FORGET is ignored, since
//!   inodes live by the model's own rules; a request for an inode the
//!   model dropped gets ENOENT.
//!
//! # Mounting
//!
//! [`PowerFs::mount`] mounts with mount(2) (needs root and /dev/fuse; no
//! fusermount), with `allow_other` (Docker bind mounts need it) and
//! `default_permissions` (the kernel checks mode bits), source (fsname)
//! `kvtest-powerfs-<pid>`. One thread serves all requests. Dropping a
//! `PowerFs` unmounts it, lazily (MNT_DETACH) if it is busy.
//! [`sweep_stale_mounts`] detaches the mounts of processes that died.

mod fuse;
mod model;
mod mountinfo;
mod pages;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod oracle;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tracing::{info, warn};

pub use model::{Limits, PowerLoss, Stats};
pub use pages::PAGE_BYTES;

use model::{Model, NewInode};

/// How long [`PowerFs::power_loss`] waits for open handles to be released.
pub const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// What mounting, unmounting and power losses can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PowerFsError {
    #[error("cannot create or resolve the mountpoint {path}: {source}")]
    Mountpoint { path: PathBuf, source: io::Error },
    #[error("cannot mount powerfs at {path} (needs root and /dev/fuse): {source}")]
    Mount { path: PathBuf, source: io::Error },
    #[error("cannot unmount {path}: {source}")]
    Unmount { path: PathBuf, source: io::Error },
    #[error("{handles} files or directories under {path} are still open; kill the processes using them first")]
    FilesOpen { path: PathBuf, handles: u64 },
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(io::Error),
}

/// The model, shared by the FUSE thread and the [`PowerFs`] handle.
struct Shared {
    model: Mutex<Model>,
    /// Signalled at every release, for `power_loss` to wait on.
    released: Condvar,
    /// Added to every fsync and fsyncdir: a slow disk (see
    /// [`PowerFs::set_fsync_delay`]).
    fsync_delay_ms: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Model> {
        // Poisoned only if a model operation panicked (a bug): then the
        // FUSE thread is gone too and the filesystem is useless.
        self.model.lock().expect("a powerfs model operation panicked earlier")
    }
}

/// A mounted powerfs. Dropping it unmounts it.
pub struct PowerFs {
    mountpoint: PathBuf,
    shared: Arc<Shared>,
    /// `None` once unmounted.
    session: Option<BackgroundSession>,
}

impl std::fmt::Debug for PowerFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerFs").field("mountpoint", &self.mountpoint).finish_non_exhaustive()
    }
}

impl PowerFs {
    /// Mounts an empty filesystem at `mountpoint` (created if missing).
    /// Its root directory has the owner and mode of the mountpoint.
    pub fn mount(mountpoint: &Path, limits: Limits) -> Result<PowerFs, PowerFsError> {
        let resolve = || {
            std::fs::create_dir_all(mountpoint)?;
            let path = mountpoint.canonicalize()?;
            let metadata = std::fs::metadata(&path)?;
            Ok((path, metadata))
        };
        let (path, metadata) =
            resolve().map_err(|source| PowerFsError::Mountpoint { path: mountpoint.to_path_buf(), source })?;
        let root = NewInode { perm: (metadata.mode() & 0o7777) as u16, uid: metadata.uid(), gid: metadata.gid() };
        let shared = Arc::new(Shared {
            model: Mutex::new(Model::new(limits, root)),
            released: Condvar::new(),
            fsync_delay_ms: AtomicU64::new(0),
        });
        let mut config = Config::default();
        config.mount_options =
            vec![MountOption::FSName(mountinfo::fsname(std::process::id())), MountOption::DefaultPermissions];
        config.acl = SessionACL::All;
        config.n_threads = Some(1);
        let filesystem = fuse::PowerFsFuse::new(Arc::clone(&shared));
        let session = fuser::spawn_mount(filesystem, &path, &config)
            .map_err(|source| PowerFsError::Mount { path: path.clone(), source })?;
        info!(mountpoint = %path.display(), ?limits, "powerfs mounted");
        Ok(PowerFs { mountpoint: path, shared, session: Some(session) })
    }

    /// The mountpoint, canonical.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Drops everything not durable (see the module docs) and returns
    /// what was lost. Waits up to [`RELEASE_WAIT`] for open handles.
    pub fn power_loss(&self) -> Result<PowerLoss, PowerFsError> {
        self.power_loss_waiting(RELEASE_WAIT)
    }

    /// [`PowerFs::power_loss`], waiting up to `wait` for open handles to
    /// be released before giving up with [`PowerFsError::FilesOpen`].
    pub fn power_loss_waiting(&self, wait: Duration) -> Result<PowerLoss, PowerFsError> {
        let deadline = Instant::now() + wait;
        let mut model = self.shared.lock();
        while model.open_handles() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PowerFsError::FilesOpen { path: self.mountpoint.clone(), handles: model.open_handles() });
            }
            let (guard, _) = self.shared.released.wait_timeout(model, left).expect("powerfs model poisoned");
            model = guard;
        }
        let handles = model.open_handles();
        let report =
            model.power_loss().map_err(|_busy| PowerFsError::FilesOpen { path: self.mountpoint.clone(), handles })?;
        drop(model);
        info!(mountpoint = %self.mountpoint.display(), ?report, "powerfs power loss");
        Ok(report)
    }

    /// Makes every fsync and fsyncdir take `delay` longer, like a disk
    /// whose cache flushes crawl (zero: back to normal). The filesystem
    /// serves one request at a time, so everything else waits too, as it
    /// would behind a stalled device queue.
    pub fn set_fsync_delay(&self, delay: Duration) {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.fsync_delay_ms.store(delay_ms, Ordering::Relaxed);
        info!(mountpoint = %self.mountpoint.display(), delay_ms, "powerfs fsync delay set");
    }

    /// Bytes written but not yet durable, open handles and the like.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    /// Unmounts, lazily (MNT_DETACH) if the filesystem is busy: then it
    /// goes away when its last user closes it.
    pub fn unmount(mut self) -> Result<(), PowerFsError> {
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> Result<(), PowerFsError> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let path = self.mountpoint.clone();
        match session.umount_and_join() {
            Ok(()) => {
                info!(mountpoint = %path.display(), "powerfs unmounted");
                Ok(())
            }
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                // The session thread goes on serving the open files until
                // the kernel drops the detached mount.
                umount2(&path, MntFlags::MNT_DETACH)
                    .map_err(|errno| PowerFsError::Unmount { path: path.clone(), source: errno.into() })?;
                warn!(mountpoint = %path.display(), "powerfs busy: detached lazily");
                Ok(())
            }
            Err(source) => Err(PowerFsError::Unmount { path, source }),
        }
    }
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        if let Err(error) = self.unmount_now() {
            warn!(%error, "powerfs: unmount on drop failed");
        }
    }
}

/// Unmounts (lazily, MNT_DETACH) every powerfs mount whose owner process,
/// named in its source `kvtest-powerfs-<pid>`, is no longer alive, as
/// listed in /proc/self/mountinfo. Returns how many it unmounted. Mounts of
/// live processes, this one included, are left alone (so is a dead one
/// whose pid a new process took: it is swept once that process is gone).
/// Tries every stale mount, then reports the first failure, if any.
pub fn sweep_stale_mounts() -> Result<usize, PowerFsError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(PowerFsError::MountInfo)?;
    let mut swept = 0;
    let mut first_error = None;
    for mount in mountinfo::our_mounts(&text) {
        if process_alive(mount.owner_pid) {
            continue;
        }
        match umount2(&mount.mount_point, MntFlags::MNT_DETACH) {
            Ok(()) => {
                info!(mountpoint = %mount.mount_point.display(), pid = mount.owner_pid, "swept stale powerfs mount");
                swept += 1;
            }
            // Gone meanwhile, e.g. below a mount detached just before.
            Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(errno) => {
                warn!(mountpoint = %mount.mount_point.display(), %errno, "cannot sweep stale powerfs mount");
                let error = PowerFsError::Unmount { path: mount.mount_point, source: errno.into() };
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(swept),
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // Signal 0 checks existence; EPERM means it exists as another user.
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}
