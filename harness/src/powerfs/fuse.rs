//! The `fuser::Filesystem` adapter: translates kernel requests to `Model`
//! calls and `FsError`s to errnos. Every reply carries TTL zero and open
//! replies carry no flags (no FOPEN_KEEP_CACHE): see the module docs of
//! `powerfs` for why the kernel must not cache anything across a power loss.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tracing::warn;

use super::model::{Attr, FsError, FsResult, Kind, NewInode, SetAttr, NAME_MAX_BYTES};
use super::pages::PAGE_BYTES;
use super::Shared;

/// Entry and attribute validity: none. The kernel asks again at every path
/// walk and stat, so after a power loss it sees the reverted tree at once.
const TTL: Duration = Duration::ZERO;

/// Inode numbers are never reused, so one generation serves for all.
const GENERATION: Generation = Generation(0);

/// The handle number in open replies. Handles are counted per inode in the
/// model (the kernel passes the inode with every request), so the number
/// itself carries nothing.
const FH: FileHandle = FileHandle(0);

pub(super) struct PowerFsFuse {
    shared: Arc<Shared>,
}

impl PowerFsFuse {
    /// Waits out the fsync delay a slow-disk fault set, if any.
    fn slow_disk(&self) {
        let delay_ms = self.shared.fsync_delay_ms.load(std::sync::atomic::Ordering::Relaxed);
        if delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
    }

    pub(super) fn new(shared: Arc<Shared>) -> PowerFsFuse {
        PowerFsFuse { shared }
    }
}

fn errno(error: FsError) -> Errno {
    match error {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::NoSpace => Errno::ENOSPC,
        FsError::InvalidArgument => Errno::EINVAL,
        FsError::NotPermitted => Errno::EPERM,
        FsError::NameTooLong => Errno::ENAMETOOLONG,
        FsError::FileTooBig => Errno::EFBIG,
        FsError::Busy => Errno::EBUSY,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size_bytes,
        blocks: attr.blocks,
        atime: attr.atime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: attr.ctime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: PAGE_BYTES as u32,
        flags: 0,
    }
}

fn new_inode(req: &Request, mode: u32, umask: u32) -> NewInode {
    NewInode { perm: (mode & !umask & 0o7777) as u16, uid: req.uid(), gid: req.gid() }
}

fn time(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn reply_entry(reply: ReplyEntry, result: FsResult<Attr>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &file_attr(&attr), GENERATION),
        Err(error) => reply.error(errno(error)),
    }
}

fn reply_empty(reply: ReplyEmpty, result: FsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(error) => reply.error(errno(error)),
    }
}

fn reply_open(reply: ReplyOpen, result: FsResult<()>) {
    match result {
        // No FOPEN_KEEP_CACHE: the kernel drops the file's page cache at
        // each open. No FOPEN_DIRECT_IO: buffered and O_DIRECT I/O both work.
        Ok(()) => reply.opened(FH, FopenFlags::empty()),
        Err(error) => reply.error(errno(error)),
    }
}

/// Helpers shared by several requests.
impl PowerFsFuse {
    fn do_setattr(&self, ino: INodeNo, set: SetAttr, reply: ReplyAttr) {
        let result = self.shared.lock().set_attr(ino.0, set);
        match result {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn do_create(&self, parent: INodeNo, name: &OsStr, kind: Kind, new: NewInode, reply: ReplyEntry) {
        let result = self.shared.lock().create(parent.0, name, kind, new);
        reply_entry(reply, result);
    }

    fn do_release(&self, ino: INodeNo, reply: ReplyEmpty) {
        let result = self.shared.lock().release(ino.0);
        self.shared.released.notify_all();
        if let Err(error) = result {
            warn!(ino = ino.0, %error, "powerfs: release of an inode with no open handle");
        }
        reply_empty(reply, result);
    }
}

impl Filesystem for PowerFsFuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.shared.lock().lookup(parent.0, name);
        reply_entry(reply, result);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let result = self.shared.lock().attr(ino.0);
        match result {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            size_bytes: size,
            perm: mode.map(|mode| (mode & 0o7777) as u16),
            uid,
            gid,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        self.do_setattr(ino, set, reply);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Regular files only; filesystems without a node type say EPERM.
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        self.do_create(parent, name, Kind::File, new_inode(req, mode, umask), reply);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.do_create(parent, name, Kind::Dir, new_inode(req, mode, umask), reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut model = self.shared.lock();
        let result = model.create(parent.0, name, Kind::File, new_inode(req, mode, umask));
        let result = result.and_then(|attr| model.open(attr.ino).map(|()| attr));
        drop(model);
        match result {
            Ok(attr) => reply.created(&TTL, &file_attr(&attr), GENERATION, FH, FopenFlags::empty()),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.shared.lock().unlink(parent.0, name);
        reply_empty(reply, result);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.shared.lock().rmdir(parent.0, name);
        reply_empty(reply, result);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let no_replace = if flags.is_empty() {
            false
        } else if flags == RenameFlags::RENAME_NOREPLACE {
            true
        } else {
            // RENAME_EXCHANGE and RENAME_WHITEOUT are not supported.
            return reply.error(Errno::EINVAL);
        };
        let result = self.shared.lock().rename(parent.0, name, newparent.0, newname, no_replace);
        reply_empty(reply, result);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let result = self.shared.lock().link(ino.0, newparent.0, newname);
        reply_entry(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut model = self.shared.lock();
        let result = model.attr(ino.0).and_then(|attr| match attr.kind {
            Kind::File => model.open(ino.0),
            Kind::Dir => Err(FsError::IsDir),
        });
        drop(model);
        reply_open(reply, result);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.shared.lock().read(ino.0, offset, u64::from(size));
        match result {
            Ok(data) => reply.data(&data),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self.shared.lock().write(ino.0, offset, data);
        match result {
            // A FUSE write is at most max_write (16 MiB) bytes: fits u32.
            Ok(written) => reply.written(written as u32),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.do_release(ino, reply);
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.slow_disk();
        // fsync and fdatasync alike: data and size are all there is.
        let result = self.shared.lock().sync(ino.0);
        reply_empty(reply, result);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut model = self.shared.lock();
        let result = model.attr(ino.0).and_then(|attr| match attr.kind {
            Kind::Dir => model.open(ino.0),
            Kind::File => Err(FsError::NotDir),
        });
        drop(model);
        reply_open(reply, result);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let result = self.shared.lock().read_dir(ino.0);
        let (parent, entries) = match result {
            Ok(listing) => listing,
            Err(error) => return reply.error(errno(error)),
        };
        let dots = [(ino.0, FileType::Directory, OsStr::new(".")), (parent, FileType::Directory, OsStr::new(".."))];
        let entries = entries.iter().map(|e| (e.ino, file_type(e.kind), e.name.as_os_str()));
        // The offset of an entry is its position + 1: where the next call
        // resumes.
        for (position, (child, kind, name)) in dots.into_iter().chain(entries).enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), position as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.do_release(ino, reply);
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.slow_disk();
        let result = self.shared.lock().sync(ino.0);
        reply_empty(reply, result);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let model = self.shared.lock();
        let limits = model.limits();
        let blocks = limits.bytes_limit / PAGE_BYTES;
        let free_blocks = blocks.saturating_sub(model.data_bytes() / PAGE_BYTES);
        let free_inodes = limits.inodes_limit.saturating_sub(model.inode_count());
        drop(model);
        let (block, name_max) = (PAGE_BYTES as u32, NAME_MAX_BYTES as u32);
        reply.statfs(blocks, free_blocks, free_blocks, limits.inodes_limit, free_inodes, block, name_max, block);
    }

    // No extended attributes: the kernel asks for `security.capability` at
    // every write, and "none" is the answer (not ENOSYS, which fuser logs).
    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        match size {
            0 => reply.size(0),
            _ => reply.data(&[]),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions: the kernel checks the mode
        // bits itself and does not send access; answer existence anyway.
        let result = self.shared.lock().attr(ino.0).map(|_| ());
        reply_empty(reply, result);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            // Punching holes, zeroing ranges, KEEP_SIZE: not supported.
            return reply.error(Errno::EOPNOTSUPP);
        }
        let result = self.shared.lock().allocate(ino.0, offset, length);
        reply_empty(reply, result);
    }
}
