//! powerfs through a real FUSE mount. Needs root and /dev/fuse; without
//! them each test panics saying so. KVTEST_SKIP_FUSE=1 skips them.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::powerfs::{sweep_stale_mounts, Limits, PowerFs, PowerFsError, PAGE_BYTES};

/// A mount under a fresh temporary directory, removed at drop.
struct TestMount {
    fs: Option<PowerFs>,
    dir: PathBuf,
}

impl TestMount {
    fn fs(&self) -> &PowerFs {
        self.fs.as_ref().expect("mounted")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.fs().mountpoint().join(name)
    }

    fn power_loss(&self) -> harness::powerfs::PowerLoss {
        self.fs().power_loss().expect("power loss")
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        drop(self.fs.take());
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `None` (and a message) when KVTEST_SKIP_FUSE=1; panics without root or
/// /dev/fuse.
fn mount(test: &str, limits: Limits) -> Option<TestMount> {
    if std::env::var_os("KVTEST_SKIP_FUSE").is_some_and(|v| v == "1") {
        eprintln!("powerfs test {test} skipped: KVTEST_SKIP_FUSE=1");
        return None;
    }
    let skip = "set KVTEST_SKIP_FUSE=1 to skip the powerfs tests";
    assert!(Path::new("/dev/fuse").exists(), "powerfs tests need /dev/fuse, which is missing; {skip}");
    assert_eq!(effective_uid(), Some(0), "powerfs tests need root (mount(2)); {skip}");
    let dir = std::env::temp_dir().join(format!("powerfs-test-{}-{test}", std::process::id()));
    let fs = PowerFs::mount(&dir.join("mnt"), limits).expect("mount powerfs");
    Some(TestMount { fs: Some(fs), dir })
}

fn mounted(path: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let path = path.to_str().expect("test paths are UTF-8");
    mountinfo.lines().any(|line| line.split(' ').nth(4) == Some(path))
}

fn fsync_dir(path: &Path) {
    File::open(path).and_then(|dir| dir.sync_all()).expect("fsync directory");
}

fn read(path: &Path) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(data) => Some(data),
        Err(error) if error.kind() == ErrorKind::NotFound => None,
        Err(error) => panic!("read {}: {error}", path.display()),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[test]
fn unsynced_file_is_lost_and_synced_file_survives() {
    let Some(m) = mount("survives", Limits::default()) else { return };
    let kept = pattern(100_000, 7);
    let mut file = File::create(m.path("kept")).expect("create");
    file.write_all(&kept).expect("write");
    file.sync_all().expect("fsync");
    fsync_dir(m.fs().mountpoint());
    // Changed after the fsync, and read back so the page cache holds the
    // changed data: the kernel must not serve it after the power loss.
    file.write_all_at(b"changed", 10).expect("overwrite");
    file.write_all(b"appended").expect("append");
    drop(file);
    assert_eq!(&read(&m.path("kept")).expect("kept")[10..17], b"changed");
    fs::write(m.path("lost"), b"never fsynced").expect("write lost");
    assert!(m.fs().stats().unsynced_bytes > 0);

    let report = m.power_loss();
    assert_eq!((report.files_reverted, report.inodes_lost, report.entries_reverted), (1, 1, 1));
    assert_eq!(read(&m.path("kept")), Some(kept));
    assert_eq!(fs::metadata(m.path("kept")).expect("stat").len(), 100_000);
    assert_eq!(read(&m.path("lost")), None);
    assert_eq!(m.fs().stats().unsynced_bytes, 0);
}

#[test]
fn fdatasync_makes_data_durable_through_any_handle() {
    let Some(m) = mount("fdatasync", Limits::default()) else { return };
    let mut writer = File::create(m.path("f")).expect("create");
    fsync_dir(m.fs().mountpoint());
    writer.write_all(b"durable").expect("write");
    File::open(m.path("f")).and_then(|other| other.sync_data()).expect("fdatasync through another handle");
    writer.write_all(b" not").expect("write");
    drop(writer);
    // fdatasync of a file whose entry was never fsynced keeps nothing.
    let mut orphan = File::create(m.path("orphan")).expect("create");
    orphan.write_all(b"data").and_then(|()| orphan.sync_data()).expect("write + fdatasync");
    drop(orphan);

    m.power_loss();
    assert_eq!(read(&m.path("f")).as_deref(), Some(&b"durable"[..]));
    assert_eq!(read(&m.path("orphan")), None);
}

#[test]
fn o_dsync_writes_are_durable_and_syncfs_is_not_an_fsync() {
    let Some(m) = mount("odsync", Limits::default()) else { return };
    let open = |name: &str, flags| OpenOptions::new().write(true).create(true).custom_flags(flags).open(m.path(name));
    let dsync = open("dsync", libc::O_DSYNC).expect("open O_DSYNC");
    let plain = open("plain", 0).expect("open");
    fsync_dir(m.fs().mountpoint());
    dsync.write_all_at(b"each write synced", 0).expect("write");
    plain.write_all_at(b"synced by syncfs?", 0).expect("write");
    // fuser 0.18 has no syncfs operation (an unknown request gets ENOSYS):
    // syncfs makes nothing durable here.
    nix::unistd::syncfs(&plain).expect("syncfs");
    drop((dsync, plain));
    m.power_loss();
    assert_eq!(read(&m.path("dsync")).as_deref(), Some(&b"each write synced"[..]));
    assert_eq!(read(&m.path("plain")).as_deref(), Some(&b""[..]));
}

#[test]
fn rename_survives_only_with_directory_fsync() {
    let Some(m) = mount("rename", Limits::default()) else { return };
    let dir = m.path("d");
    fs::create_dir(&dir).expect("mkdir");
    fsync_dir(m.fs().mountpoint());
    let mut file = File::create(dir.join("tmp")).expect("create");
    file.write_all(b"payload").and_then(|()| file.sync_all()).expect("write + fsync");
    drop(file);
    fs::rename(dir.join("tmp"), dir.join("final")).expect("rename");
    fsync_dir(&dir);
    m.power_loss();
    assert_eq!(read(&dir.join("final")).as_deref(), Some(&b"payload"[..]));
    assert_eq!(read(&dir.join("tmp")), None);

    fs::rename(dir.join("final"), dir.join("other")).expect("rename");
    m.power_loss();
    assert_eq!(read(&dir.join("final")).as_deref(), Some(&b"payload"[..]), "un-fsynced rename undone");
    assert_eq!(read(&dir.join("other")), None);
}

#[test]
fn truncation_is_durable_only_after_fsync() {
    let Some(m) = mount("truncate", Limits::default()) else { return };
    let path = m.path("f");
    let file = File::create(&path).expect("create");
    fsync_dir(m.fs().mountpoint());
    file.write_all_at(&[9; 10_000], 0).and_then(|()| file.sync_all()).expect("write + fsync");
    file.set_len(3).and_then(|()| file.set_len(8000)).expect("shrink, grow");
    let mut shrunk_grown = vec![9; 3];
    shrunk_grown.resize(8000, 0);
    assert_eq!(read(&path), Some(shrunk_grown.clone()));
    drop(file);
    m.power_loss();
    assert_eq!(read(&path), Some(vec![9; 10_000]));

    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(3).and_then(|()| file.set_len(8000)).and_then(|()| file.sync_data()).expect("truncate + fsync");
    drop(file);
    m.power_loss();
    assert_eq!(read(&path), Some(shrunk_grown));
}

/// A 4 KiB-aligned buffer inside a Vec, without unsafe code.
fn aligned(buffer: &mut Vec<u8>, len: usize) -> &mut [u8] {
    buffer.resize(len + PAGE_BYTES as usize, 0);
    let start = buffer.as_ptr().align_offset(PAGE_BYTES as usize);
    &mut buffer[start..start + len]
}

#[test]
fn o_direct_writes_reach_the_filesystem() {
    let Some(m) = mount("odirect", Limits::default()) else { return };
    let path = m.path("direct");
    let open = |options: &mut OpenOptions| options.custom_flags(libc::O_DIRECT).open(&path);
    let file = open(OpenOptions::new().read(true).write(true).create(true)).expect("O_DIRECT open is accepted");
    fsync_dir(m.fs().mountpoint());
    let mut storage = Vec::new();
    let block = aligned(&mut storage, 4 * PAGE_BYTES as usize);
    block.copy_from_slice(&pattern(4 * PAGE_BYTES as usize, 3));
    for i in 0..4u64 {
        let range = (i * PAGE_BYTES) as usize..((i + 1) * PAGE_BYTES) as usize;
        file.write_all_at(&block[range], i * PAGE_BYTES).expect("aligned O_DIRECT write");
    }
    file.sync_data().expect("fdatasync");
    // Not aligned: FUSE accepts this too (no block device underneath).
    file.write_all_at(b"unaligned", 5).expect("unaligned O_DIRECT write");
    drop(file);
    m.power_loss();

    let file = open(OpenOptions::new().read(true)).expect("O_DIRECT open");
    let mut storage = Vec::new();
    let back = aligned(&mut storage, 4 * PAGE_BYTES as usize);
    file.read_exact_at(back, 0).expect("O_DIRECT read");
    assert_eq!(back, &pattern(4 * PAGE_BYTES as usize, 3)[..]);
    assert_eq!(read(&path), Some(pattern(4 * PAGE_BYTES as usize, 3)));
}

#[test]
fn thousand_fdatasynced_records_all_survive() {
    let Some(m) = mount("records", Limits::default()) else { return };
    let path = m.path("wal");
    let mut log = OpenOptions::new().append(true).create(true).open(&path).expect("open log");
    fsync_dir(m.fs().mountpoint());
    let started = Instant::now();
    for i in 0..1000 {
        let record = format!("record {i:06} {}\n", "x".repeat(i % 50));
        log.write_all(record.as_bytes()).and_then(|()| log.sync_data()).expect("write + fdatasync");
    }
    let elapsed = started.elapsed();
    eprintln!("1000 × (write + fdatasync) through powerfs: {elapsed:?}");
    log.write_all(b"torn tail, never synced\n").expect("write");
    drop(log);
    m.power_loss();
    let text = String::from_utf8(read(&path).expect("log survives")).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1000);
    for (i, line) in lines.iter().enumerate() {
        assert!(line.starts_with(&format!("record {i:06} ")), "line {i}: {line}");
    }
}

#[test]
fn power_loss_waits_for_open_files_then_refuses() {
    let Some(m) = mount("busy", Limits::default()) else { return };
    let file = File::create(m.path("open")).expect("create");
    match m.fs().power_loss_waiting(Duration::from_millis(100)) {
        Err(PowerFsError::FilesOpen { handles: 1, .. }) => {}
        other => panic!("expected FilesOpen with one handle, got {other:?}"),
    }
    drop(file);
    // The kernel releases asynchronously; power_loss waits for it.
    m.power_loss();
    assert_eq!(m.fs().stats().open_handles, 0);
}

#[test]
fn byte_limit_gives_enospc_and_statfs_reports_it() {
    let limits = Limits { bytes_limit: 16 * PAGE_BYTES, inodes_limit: 100 };
    let Some(m) = mount("enospc", limits) else { return };
    let file = File::create(m.path("f")).expect("create");
    file.write_all_at(&[1; 16 * PAGE_BYTES as usize], 0).expect("fits");
    let error = file.write_all_at(&[1; 100], 16 * PAGE_BYTES).expect_err("beyond the limit");
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(fs::metadata(m.path("f")).expect("stat").len(), 16 * PAGE_BYTES, "nothing changed");
    let stat = nix::sys::statvfs::statvfs(m.fs().mountpoint()).expect("statvfs");
    assert_eq!((stat.block_size(), stat.blocks(), stat.blocks_free()), (4096, 16, 0));
    assert_eq!(stat.files(), 100);
}

/// Run as a child process by the sweep test: mounts at the path in
/// KVTEST_POWERFS_HELPER_MOUNT and waits to be killed.
#[test]
#[ignore = "helper process of sweep_detaches_dead_mounts_and_leaves_live_ones"]
fn helper_mount_until_killed() {
    let Some(path) = std::env::var_os("KVTEST_POWERFS_HELPER_MOUNT") else { return };
    let _fs = PowerFs::mount(Path::new(&path), Limits::default()).expect("helper mount");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn sweep_detaches_dead_mounts_and_leaves_live_ones() {
    let Some(m) = mount("sweep", Limits::default()) else { return };
    let helper_mount = m.dir.join("helper");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "helper_mount_until_killed", "--ignored", "--quiet"])
        .env("KVTEST_POWERFS_HELPER_MOUNT", &helper_mount)
        .spawn()
        .expect("spawn helper");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mounted(&helper_mount) {
        assert!(Instant::now() < deadline, "helper did not mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    sweep_stale_mounts().expect("sweep");
    assert!(mounted(&helper_mount), "a live process's mount is left alone");
    child.kill().and_then(|()| child.wait()).expect("kill helper");
    assert!(mounted(&helper_mount), "a dead process's mount stays until swept");

    assert!(sweep_stale_mounts().expect("sweep") >= 1);
    assert!(!mounted(&helper_mount), "dead mount swept");
    assert!(mounted(m.fs().mountpoint()), "our own mount is left alone");
    fs::write(m.path("still"), b"usable").expect("our mount still works");
}

#[test]
fn unmount_on_drop_leaves_no_mount_even_when_busy() {
    let Some(mut m) = mount("drop", Limits::default()) else { return };
    let path = m.fs().mountpoint().to_path_buf();
    fs::write(m.path("f"), b"x").expect("write");
    assert!(mounted(&path));
    drop(m.fs.take());
    assert!(!mounted(&path), "unmounted on drop");

    let busy = mount("drop-busy", Limits::default()).expect("mount");
    let busy_path = busy.fs().mountpoint().to_path_buf();
    let open = File::create(busy.path("open")).expect("create");
    drop(busy);
    assert!(!mounted(&busy_path), "detached lazily while a file is open");
    drop(open);
}
