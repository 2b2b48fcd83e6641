//! The pure in-memory filesystem: a tree of files and directories that
//! remembers, besides its current state, what an fsync made durable, and
//! can fall back to that (`power_loss`). No I/O and no FUSE types here; the
//! adapter in `fuse.rs` translates requests to these calls.
//!
//! Durability (see the module docs of `powerfs` for the full statement):
//! a file's content (`FileData`) is durable as of its last `sync`; a
//! directory's entries are durable as of its last `sync` (fsyncdir), kept
//! as a second entry map. Metadata other than size and entries (mode,
//! owner, times) is not modelled: it is never rolled back.
//!
//! Inode lifetime: an inode lives while a current entry names it (`links`),
//! a durable entry of any live directory names it (`durable_refs`: a power
//! loss could bring it back), or a handle has it open. Directories whose
//! durable entries form a cycle (possible after un-synced renames of
//! directories) keep each other alive until the next power loss, which
//! rebuilds everything from what the root reaches.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use super::pages::{FileData, PagesDelta, PAGE_BYTES};

/// Inode number. Never reused within one filesystem, across power losses
/// too: the kernel may still remember any number it was ever given.
pub type Ino = u64;

/// The root directory's inode number (FUSE's fixed `FUSE_ROOT_ID`).
pub const ROOT_INO: Ino = 1;

/// Longest name of a directory entry, as on ext4.
pub const NAME_MAX_BYTES: usize = 255;

/// Largest file size; keeps offset arithmetic far from overflow.
pub const FILE_MAX_BYTES: u64 = 1 << 50;

/// Bounds on what one filesystem may hold in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// File data, current and durable pages together (a page both share
    /// counts once), in bytes. Writes beyond it fail with ENOSPC.
    pub bytes_limit: u64,
    /// Files and directories, the root included, also those only a
    /// durable entry keeps. Creating more fails with ENOSPC.
    pub inodes_limit: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { bytes_limit: 2 << 30, inodes_limit: 100_000 }
    }
}

/// What an operation on the model can fail with; `fuse.rs` maps each to
/// its errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("no space left (data bytes or inode limit)")]
    NoSpace,
    #[error("invalid argument")]
    InvalidArgument,
    #[error("operation not permitted")]
    NotPermitted,
    #[error("file name too long")]
    NameTooLong,
    #[error("file too large")]
    FileTooBig,
    #[error("files or directories are open")]
    Busy,
}

pub type FsResult<T> = Result<T, FsError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// The attributes the kernel asks for (getattr, lookup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size_bytes: u64,
    /// 512-byte blocks holding data (holes excluded), as stat reports.
    pub blocks: u64,
    pub nlink: u32,
    /// Permission bits (mode & 0o7777).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// Who creates an inode, and with which permission bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewInode {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// The changes of a setattr; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub size_bytes: Option<u64>,
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: Kind,
    pub name: OsString,
}

/// Counters for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Memory held by file data, current and durable (limit: `bytes_limit`).
    pub data_bytes: u64,
    /// Bytes of the pages written or truncated since their file's last
    /// fsync (4 KiB granularity): what a power loss now would revert.
    pub unsynced_bytes: u64,
    /// Files whose content or size changed since their last fsync.
    pub unsynced_files: u64,
    /// Directories whose entries changed since their last fsync.
    pub unsynced_dirs: u64,
    /// Open file and directory handles.
    pub open_handles: u64,
    /// Inodes held, the root and those only durable entries keep included.
    pub inodes: u64,
}

/// What one power loss threw away, for the harness to record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerLoss {
    /// Surviving files whose content or size went back to their last fsync.
    pub files_reverted: u64,
    /// `Stats::unsynced_bytes` just before the power loss.
    pub unsynced_bytes_lost: u64,
    /// Names whose entry differed from their directory's durable one.
    pub entries_reverted: u64,
    /// Files and directories no durable entry reaches any more.
    pub inodes_lost: u64,
    /// Durable entries dropped because they named a directory that an
    /// earlier entry (breadth first, by name) had placed already: un-synced
    /// renames of directories can leave one directory in two durable
    /// parents, and a directory has one parent.
    pub duplicate_dir_entries_dropped: u64,
}

/// Permission and times: not part of the durability model.
#[derive(Clone, Debug)]
struct Meta {
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

impl Meta {
    fn new(new: NewInode) -> Meta {
        let now = SystemTime::now();
        Meta { perm: new.perm & 0o7777, uid: new.uid, gid: new.gid, atime: now, mtime: now, ctime: now }
    }

    fn touch(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.ctime = now;
    }
}

#[derive(Debug, Default)]
struct Dir {
    entries: BTreeMap<OsString, Ino>,
    /// The entries as of the last fsyncdir.
    durable: BTreeMap<OsString, Ino>,
    /// The current parent, for "..".
    parent: Ino,
}

impl Dir {
    /// Names whose current entry differs from the durable one.
    fn changed_names(&self) -> u64 {
        let added_or_changed = self.entries.iter().filter(|(n, i)| self.durable.get(*n) != Some(i)).count();
        let removed = self.durable.keys().filter(|n| !self.entries.contains_key(*n)).count();
        (added_or_changed + removed) as u64
    }
}

#[derive(Debug)]
enum Body {
    File(FileData),
    Dir(Dir),
}

#[derive(Debug)]
struct Inode {
    meta: Meta,
    body: Body,
    /// Current entries naming this inode.
    links: u32,
    /// Durable entries (of live directories) naming this inode.
    durable_refs: u32,
    open_handles: u32,
}

impl Inode {
    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }
}

/// The filesystem. See the module docs.
#[derive(Debug)]
pub struct Model {
    limits: Limits,
    inodes: HashMap<Ino, Inode>,
    next_ino: Ino,
    /// Distinct pages of all files, current and durable.
    pages_in_memory: u64,
    open_handles: u64,
}

impl Model {
    /// An empty filesystem whose root belongs to `root`.
    pub fn new(limits: Limits, root: NewInode) -> Model {
        let dir = Dir { parent: ROOT_INO, ..Dir::default() };
        let inode = Inode { meta: Meta::new(root), body: Body::Dir(dir), links: 1, durable_refs: 0, open_handles: 0 };
        let inodes = HashMap::from([(ROOT_INO, inode)]);
        Model { limits, inodes, next_ino: ROOT_INO + 1, pages_in_memory: 0, open_handles: 0 }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn open_handles(&self) -> u64 {
        self.open_handles
    }

    pub fn inode_count(&self) -> u64 {
        self.inodes.len() as u64
    }

    pub fn data_bytes(&self) -> u64 {
        self.pages_in_memory * PAGE_BYTES
    }

    fn inode(&self, ino: Ino) -> FsResult<&Inode> {
        self.inodes.get(&ino).ok_or(FsError::NotFound)
    }

    fn inode_mut(&mut self, ino: Ino) -> FsResult<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    fn dir(&self, ino: Ino) -> FsResult<&Dir> {
        match &self.inode(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(FsError::NotDir),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> FsResult<&mut Dir> {
        match &mut self.inode_mut(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(FsError::NotDir),
        }
    }

    fn file(&self, ino: Ino) -> FsResult<&FileData> {
        match &self.inode(ino)?.body {
            Body::File(file) => Ok(file),
            Body::Dir(_) => Err(FsError::IsDir),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> FsResult<&mut FileData> {
        match &mut self.inode_mut(ino)?.body {
            Body::File(file) => Ok(file),
            Body::Dir(_) => Err(FsError::IsDir),
        }
    }

    /// A directory new entries may go into: one rmdir has not removed.
    fn live_dir(&self, ino: Ino) -> FsResult<&Dir> {
        let dir = self.dir(ino)?;
        if self.inode(ino)?.links == 0 {
            return Err(FsError::NotFound);
        }
        Ok(dir)
    }

    fn entry(&self, parent: Ino, name: &OsStr) -> FsResult<Ino> {
        self.dir(parent)?.entries.get(name).copied().ok_or(FsError::NotFound)
    }

    fn add_pages(&mut self, delta: PagesDelta) {
        self.pages_in_memory = self.pages_in_memory.checked_add_signed(delta).expect("page accounting went below zero");
    }

    fn ensure_pages(&self, cost_pages: u64) -> FsResult<()> {
        let limit_pages = self.limits.bytes_limit / PAGE_BYTES;
        match self.pages_in_memory.checked_add(cost_pages) {
            Some(total) if total <= limit_pages => Ok(()),
            _ => Err(FsError::NoSpace),
        }
    }

    pub fn attr(&self, ino: Ino) -> FsResult<Attr> {
        let inode = self.inode(ino)?;
        let (size_bytes, blocks, nlink) = match &inode.body {
            Body::File(file) => (file.size_bytes(), file.current_pages() * (PAGE_BYTES / 512), inode.links),
            Body::Dir(dir) => (PAGE_BYTES, PAGE_BYTES / 512, 2 + self.subdirs(dir)),
        };
        let meta = &inode.meta;
        Ok(Attr {
            ino,
            kind: inode.kind(),
            size_bytes,
            blocks,
            nlink,
            perm: meta.perm,
            uid: meta.uid,
            gid: meta.gid,
            atime: meta.atime,
            mtime: meta.mtime,
            ctime: meta.ctime,
        })
    }

    fn subdirs(&self, dir: &Dir) -> u32 {
        let dirs = dir.entries.values().filter(|ino| self.inodes.get(ino).is_some_and(|i| i.kind() == Kind::Dir));
        dirs.count() as u32
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        let ino = self.entry(parent, name)?;
        self.attr(ino)
    }
}

fn check_name(name: &OsStr) -> FsResult<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(FsError::InvalidArgument);
    }
    if bytes.len() > NAME_MAX_BYTES {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

/// Creating, linking and removing entries.
impl Model {
    /// Creates an empty file or directory `name` in `parent`.
    pub fn create(&mut self, parent: Ino, name: &OsStr, kind: Kind, new: NewInode) -> FsResult<Attr> {
        check_name(name)?;
        if self.live_dir(parent)?.entries.contains_key(name) {
            return Err(FsError::Exists);
        }
        if self.inode_count() >= self.limits.inodes_limit {
            return Err(FsError::NoSpace);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = match kind {
            Kind::File => Body::File(FileData::default()),
            Kind::Dir => Body::Dir(Dir { parent, ..Dir::default() }),
        };
        let inode = Inode { meta: Meta::new(new), body, links: 1, durable_refs: 0, open_handles: 0 };
        self.inodes.insert(ino, inode);
        self.dir_mut(parent)?.entries.insert(name.to_os_string(), ino);
        self.inode_mut(parent)?.meta.touch();
        self.attr(ino)
    }

    /// A second name for a file (hard link).
    pub fn link(&mut self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> FsResult<Attr> {
        check_name(new_name)?;
        let inode = self.inode(ino)?;
        if inode.kind() == Kind::Dir {
            return Err(FsError::NotPermitted);
        }
        if inode.links == 0 {
            return Err(FsError::NotFound);
        }
        if self.live_dir(new_parent)?.entries.contains_key(new_name) {
            return Err(FsError::Exists);
        }
        self.dir_mut(new_parent)?.entries.insert(new_name.to_os_string(), ino);
        self.inode_mut(new_parent)?.meta.touch();
        let inode = self.inode_mut(ino)?;
        inode.links += 1;
        inode.meta.ctime = SystemTime::now();
        self.attr(ino)
    }

    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let ino = self.entry(parent, name)?;
        if self.inode(ino)?.kind() == Kind::Dir {
            return Err(FsError::IsDir);
        }
        self.remove_entry(parent, name, ino)
    }

    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let ino = self.entry(parent, name)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.remove_entry(parent, name, ino)
    }

    fn remove_entry(&mut self, parent: Ino, name: &OsStr, ino: Ino) -> FsResult<()> {
        self.dir_mut(parent)?.entries.remove(name);
        self.inode_mut(parent)?.meta.touch();
        let inode = self.inode_mut(ino)?;
        inode.links = inode.links.checked_sub(1).expect("an entry named an inode with no links");
        inode.meta.ctime = SystemTime::now();
        self.maybe_drop(ino);
        Ok(())
    }

    /// rename(2); `no_replace` is RENAME_NOREPLACE.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> FsResult<()> {
        check_name(new_name)?;
        let ino = self.entry(parent, name)?;
        let replaced = self.live_dir(new_parent)?.entries.get(new_name).copied();
        if replaced.is_some() && no_replace {
            return Err(FsError::Exists);
        }
        if replaced == Some(ino) {
            // Two names of one file, or a name onto itself: POSIX says
            // rename does nothing.
            return Ok(());
        }
        self.check_rename_kinds(ino, replaced, new_parent)?;
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(new_parent)?.entries.insert(new_name.to_os_string(), ino);
        if let Body::Dir(dir) = &mut self.inode_mut(ino)?.body {
            dir.parent = new_parent;
        }
        self.inode_mut(parent)?.meta.touch();
        self.inode_mut(new_parent)?.meta.touch();
        self.inode_mut(ino)?.meta.ctime = SystemTime::now();
        if let Some(replaced) = replaced {
            let inode = self.inode_mut(replaced)?;
            inode.links = inode.links.checked_sub(1).expect("an entry named an inode with no links");
            self.maybe_drop(replaced);
        }
        Ok(())
    }

    /// The checks of rename(2) on what is moved and what it replaces.
    fn check_rename_kinds(&self, ino: Ino, replaced: Option<Ino>, new_parent: Ino) -> FsResult<()> {
        let kind = self.inode(ino)?.kind();
        if let Some(replaced) = replaced {
            match (kind, self.inode(replaced)?.kind()) {
                (Kind::Dir, Kind::File) => return Err(FsError::NotDir),
                (Kind::File, Kind::Dir) => return Err(FsError::IsDir),
                (Kind::Dir, Kind::Dir) if !self.dir(replaced)?.entries.is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        if kind == Kind::Dir && self.is_same_or_below(new_parent, ino)? {
            return Err(FsError::InvalidArgument);
        }
        Ok(())
    }

    /// Whether `dir` is `ancestor` or inside it, following current parents.
    fn is_same_or_below(&self, mut dir: Ino, ancestor: Ino) -> FsResult<bool> {
        loop {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = self.dir(dir)?.parent;
        }
    }

    /// Frees `ino` if nothing keeps it any more, and then whatever only
    /// its durable entries kept.
    fn maybe_drop(&mut self, ino: Ino) {
        let mut candidates = vec![ino];
        while let Some(ino) = candidates.pop() {
            let Some(inode) = self.inodes.get(&ino) else { continue };
            if ino == ROOT_INO || inode.links > 0 || inode.durable_refs > 0 || inode.open_handles > 0 {
                continue;
            }
            let Some(inode) = self.inodes.remove(&ino) else { continue };
            match inode.body {
                Body::File(file) => self.add_pages(-(file.pages_in_memory() as i64)),
                Body::Dir(dir) => {
                    assert!(dir.entries.is_empty(), "directory {ino} dropped with entries");
                    for child in dir.durable.into_values() {
                        let child_inode = self.inodes.get_mut(&child).expect("a durable entry named a dropped inode");
                        child_inode.durable_refs -= 1;
                        candidates.push(child);
                    }
                }
            }
        }
    }
}

/// Handles, data and durability.
impl Model {
    /// Counts an open (file or directory) handle: keeps an unlinked inode
    /// readable, and a power loss waits for all to be released.
    pub fn open(&mut self, ino: Ino) -> FsResult<()> {
        self.inode_mut(ino)?.open_handles += 1;
        self.open_handles += 1;
        Ok(())
    }

    pub fn release(&mut self, ino: Ino) -> FsResult<()> {
        let inode = self.inode_mut(ino)?;
        inode.open_handles = inode.open_handles.checked_sub(1).ok_or(FsError::InvalidArgument)?;
        self.open_handles -= 1;
        self.maybe_drop(ino);
        Ok(())
    }

    pub fn read(&self, ino: Ino, offset: u64, len: u64) -> FsResult<Vec<u8>> {
        Ok(self.file(ino)?.read(offset, len))
    }

    /// Writes all of `data` at `offset` or nothing (ENOSPC, EFBIG).
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<u64> {
        let len = data.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > FILE_MAX_BYTES) {
            return Err(FsError::FileTooBig);
        }
        self.ensure_pages(self.file(ino)?.write_cost_pages(offset, len))?;
        let delta = self.file_mut(ino)?.write(offset, data);
        self.add_pages(delta);
        self.inode_mut(ino)?.meta.touch();
        Ok(len)
    }

    /// Truncates or extends a file.
    pub fn set_size(&mut self, ino: Ino, size_bytes: u64) -> FsResult<()> {
        if size_bytes > FILE_MAX_BYTES {
            return Err(FsError::FileTooBig);
        }
        self.ensure_pages(self.file(ino)?.set_size_cost_pages(size_bytes))?;
        let delta = self.file_mut(ino)?.set_size(size_bytes);
        self.add_pages(delta);
        self.inode_mut(ino)?.meta.touch();
        Ok(())
    }

    /// setattr: the size first (the only change that can fail), then the
    /// metadata; on an error nothing changed.
    pub fn set_attr(&mut self, ino: Ino, set: SetAttr) -> FsResult<Attr> {
        if let Some(size_bytes) = set.size_bytes {
            self.set_size(ino, size_bytes)?;
        }
        let meta = &mut self.inode_mut(ino)?.meta;
        meta.perm = set.perm.map_or(meta.perm, |perm| perm & 0o7777);
        meta.uid = set.uid.unwrap_or(meta.uid);
        meta.gid = set.gid.unwrap_or(meta.gid);
        meta.atime = set.atime.unwrap_or(meta.atime);
        meta.mtime = set.mtime.unwrap_or(meta.mtime);
        meta.ctime = SystemTime::now();
        self.attr(ino)
    }

    /// fallocate mode 0: extends the size to `offset + len` if smaller.
    /// Reserves no memory (a later write can still fail with ENOSPC).
    pub fn allocate(&mut self, ino: Ino, offset: u64, len: u64) -> FsResult<()> {
        let size_bytes = self.file(ino)?.size_bytes();
        if len == 0 {
            return Err(FsError::InvalidArgument);
        }
        let end = offset.checked_add(len).ok_or(FsError::FileTooBig)?;
        if end > size_bytes {
            self.set_size(ino, end)?;
        }
        Ok(())
    }

    /// fsync/fdatasync of a file makes its content durable; fsyncdir of a
    /// directory makes its entries durable. Nothing else.
    pub fn sync(&mut self, ino: Ino) -> FsResult<()> {
        match &mut self.inode_mut(ino)?.body {
            Body::File(file) => {
                let delta = file.sync();
                self.add_pages(delta);
            }
            Body::Dir(_) => self.sync_dir(ino)?,
        }
        Ok(())
    }

    fn sync_dir(&mut self, ino: Ino) -> FsResult<()> {
        let dir = self.dir_mut(ino)?;
        let added: Vec<Ino> =
            dir.entries.iter().filter(|(n, i)| dir.durable.get(*n) != Some(i)).map(|e| *e.1).collect();
        let removed: Vec<Ino> =
            dir.durable.iter().filter(|(n, i)| dir.entries.get(*n) != Some(i)).map(|e| *e.1).collect();
        dir.durable = dir.entries.clone();
        for child in added {
            self.inode_mut(child).expect("a current entry named a dropped inode").durable_refs += 1;
        }
        for child in removed {
            self.inode_mut(child).expect("a durable entry named a dropped inode").durable_refs -= 1;
            self.maybe_drop(child);
        }
        Ok(())
    }

    /// The parent (for "..") and the entries of a directory, by name.
    pub fn read_dir(&self, ino: Ino) -> FsResult<(Ino, Vec<DirEntry>)> {
        let dir = self.dir(ino)?;
        let entries = dir
            .entries
            .iter()
            .map(|(name, &child)| {
                let kind = self.inode(child).expect("an entry named a dropped inode").kind();
                DirEntry { ino: child, kind, name: name.clone() }
            })
            .collect();
        Ok((dir.parent, entries))
    }

    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            data_bytes: self.data_bytes(),
            open_handles: self.open_handles,
            inodes: self.inode_count(),
            ..Stats::default()
        };
        for inode in self.inodes.values() {
            match &inode.body {
                Body::File(file) => {
                    stats.unsynced_bytes += file.unsynced_bytes();
                    stats.unsynced_files += u64::from(file.is_unsynced());
                }
                Body::Dir(dir) => stats.unsynced_dirs += u64::from(dir.entries != dir.durable),
            }
        }
        stats
    }
}

/// Power loss.
impl Model {
    /// Drops everything not durable. Refused (`Busy`) while handles are
    /// open: their processes would see inodes change under them.
    pub fn power_loss(&mut self) -> FsResult<PowerLoss> {
        if self.open_handles > 0 {
            return Err(FsError::Busy);
        }
        let survivors = self.durable_tree();
        let stats = self.stats();
        let mut report = PowerLoss {
            unsynced_bytes_lost: stats.unsynced_bytes,
            inodes_lost: (self.inodes.len() - survivors.links.len()) as u64,
            duplicate_dir_entries_dropped: survivors.duplicate_dir_entries,
            ..PowerLoss::default()
        };
        for (ino, inode) in &self.inodes {
            match &inode.body {
                Body::File(file) => {
                    report.files_reverted += u64::from(file.is_unsynced() && survivors.links.contains_key(ino))
                }
                Body::Dir(dir) => report.entries_reverted += dir.changed_names(),
            }
        }
        self.rebuild(survivors);
        Ok(report)
    }

    /// What the root reaches through durable entries, breadth first and
    /// by name, each directory placed once.
    fn durable_tree(&self) -> DurableTree {
        let mut tree = DurableTree::default();
        tree.links.insert(ROOT_INO, 1);
        tree.parents.insert(ROOT_INO, ROOT_INO);
        let mut queue = VecDeque::from([ROOT_INO]);
        while let Some(dir_ino) = queue.pop_front() {
            let dir = self.dir(dir_ino).expect("the durable tree reached a dropped directory");
            let mut kept = BTreeMap::new();
            for (name, &child) in &dir.durable {
                let child_inode = self.inodes.get(&child).expect("a durable entry named a dropped inode");
                if child_inode.kind() == Kind::Dir {
                    if tree.parents.contains_key(&child) {
                        tree.duplicate_dir_entries += 1;
                        continue;
                    }
                    tree.parents.insert(child, dir_ino);
                    queue.push_back(child);
                }
                *tree.links.entry(child).or_insert(0) += 1;
                kept.insert(name.clone(), child);
            }
            tree.entries.insert(dir_ino, kept);
        }
        tree
    }

    /// Keeps the inodes of `tree`, each reverted to its durable state.
    fn rebuild(&mut self, mut tree: DurableTree) {
        self.inodes.retain(|ino, _| tree.links.contains_key(ino));
        let mut pages = 0;
        for (ino, inode) in &mut self.inodes {
            let links = tree.links[ino];
            inode.links = links;
            inode.durable_refs = if *ino == ROOT_INO { 0 } else { links };
            match &mut inode.body {
                Body::File(file) => {
                    file.revert();
                    pages += file.pages_in_memory();
                }
                Body::Dir(dir) => {
                    let entries = tree.entries.remove(ino).expect("every surviving directory was listed");
                    dir.durable = entries.clone();
                    dir.entries = entries;
                    dir.parent = tree.parents[ino];
                }
            }
        }
        self.pages_in_memory = pages;
    }
}

#[derive(Debug, Default)]
struct DurableTree {
    /// Surviving inodes and their number of entries.
    links: HashMap<Ino, u32>,
    /// Surviving directories and their parent.
    parents: HashMap<Ino, Ino>,
    /// Each surviving directory's entries.
    entries: HashMap<Ino, BTreeMap<OsString, Ino>>,
    duplicate_dir_entries: u64,
}

#[cfg(test)]
impl Model {
    /// Panics unless the counters match a recount from scratch.
    pub fn check_invariants(&self) {
        let mut links: HashMap<Ino, u32> = HashMap::from([(ROOT_INO, 1)]);
        let mut durable_refs: HashMap<Ino, u32> = HashMap::new();
        let mut pages = 0;
        let mut handles = 0;
        for inode in self.inodes.values() {
            handles += u64::from(inode.open_handles);
            match &inode.body {
                Body::File(file) => {
                    file.check_invariants();
                    pages += file.pages_in_memory();
                }
                Body::Dir(dir) => {
                    dir.entries.values().for_each(|i| *links.entry(*i).or_default() += 1);
                    dir.durable.values().for_each(|i| *durable_refs.entry(*i).or_default() += 1);
                }
            }
        }
        assert_eq!(pages, self.pages_in_memory, "page accounting");
        assert_eq!(handles, self.open_handles, "handle count");
        for (ino, inode) in &self.inodes {
            assert_eq!(links.get(ino).copied().unwrap_or(0), inode.links, "links of {ino}");
            assert_eq!(durable_refs.get(ino).copied().unwrap_or(0), inode.durable_refs, "durable refs of {ino}");
            let kept = *ino == ROOT_INO || inode.links + inode.durable_refs + inode.open_handles > 0;
            assert!(kept, "inode {ino} should have been dropped");
        }
        for ino in links.keys().chain(durable_refs.keys()) {
            assert!(self.inodes.contains_key(ino), "an entry names dropped inode {ino}");
        }
    }
}
