//! Unit tests of `Model`: the durability rules one at a time.

use std::ffi::OsStr;

use super::model::{FsError, Ino, Kind, Limits, Model, NewInode, SetAttr, ROOT_INO};
use super::pages::PAGE_BYTES;

const OWNER: NewInode = NewInode { perm: 0o644, uid: 0, gid: 0 };

fn model() -> Model {
    Model::new(Limits::default(), OWNER)
}

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn create(model: &mut Model, parent: Ino, file: &str) -> Ino {
    model.create(parent, name(file), Kind::File, OWNER).expect("create").ino
}

fn mkdir(model: &mut Model, parent: Ino, dir: &str) -> Ino {
    model.create(parent, name(dir), Kind::Dir, OWNER).expect("mkdir").ino
}

fn content(model: &Model, parent: Ino, file: &str) -> Option<Vec<u8>> {
    let ino = model.lookup(parent, name(file)).ok()?.ino;
    Some(model.read(ino, 0, u64::MAX).expect("read"))
}

fn names(model: &Model, dir: Ino) -> Vec<String> {
    let (_, entries) = model.read_dir(dir).expect("read_dir");
    entries.into_iter().map(|e| e.name.to_string_lossy().into_owned()).collect()
}

fn power_loss(model: &mut Model) {
    model.power_loss().expect("power loss");
    model.check_invariants();
}

#[test]
fn file_data_is_durable_only_after_fsync() {
    let mut m = model();
    let ino = create(&mut m, ROOT_INO, "f");
    m.sync(ROOT_INO).expect("fsyncdir");
    m.write(ino, 0, b"first").expect("write");
    m.sync(ino).expect("fsync");
    m.write(ino, 5, b" second").expect("write");
    assert_eq!(content(&m, ROOT_INO, "f").as_deref(), Some(&b"first second"[..]));
    let report = m.power_loss().expect("power loss");
    assert_eq!((report.files_reverted, report.unsynced_bytes_lost), (1, PAGE_BYTES));
    assert_eq!(content(&m, ROOT_INO, "f").as_deref(), Some(&b"first"[..]));
    m.check_invariants();
}

#[test]
fn truncation_before_and_after_fsync() {
    let mut m = model();
    let ino = create(&mut m, ROOT_INO, "f");
    m.sync(ROOT_INO).expect("fsyncdir");
    m.write(ino, 0, &[9; 10_000]).expect("write");
    m.sync(ino).expect("fsync");
    // Shrink, then grow: the grown part reads as zeros.
    m.set_size(ino, 3).expect("shrink");
    m.set_attr(ino, SetAttr { size_bytes: Some(8000), ..SetAttr::default() }).expect("grow");
    let mut expected = vec![9; 3];
    expected.resize(8000, 0);
    assert_eq!(content(&m, ROOT_INO, "f"), Some(expected.clone()));
    // Not fsynced: the 10,000 nines come back.
    power_loss(&mut m);
    assert_eq!(content(&m, ROOT_INO, "f"), Some(vec![9; 10_000]));
    // Fsynced: the truncation is durable.
    m.set_size(ino, 3).expect("shrink");
    m.set_size(ino, 8000).expect("grow");
    m.sync(ino).expect("fsync");
    power_loss(&mut m);
    assert_eq!(content(&m, ROOT_INO, "f"), Some(expected));
}

#[test]
fn new_entry_needs_fsync_of_its_directory_not_of_the_file() {
    let mut m = model();
    let ino = create(&mut m, ROOT_INO, "f");
    m.write(ino, 0, b"data").expect("write");
    m.sync(ino).expect("fsync of the file only");
    let report = m.power_loss().expect("power loss");
    assert_eq!((report.inodes_lost, report.entries_reverted), (1, 1));
    assert!(names(&m, ROOT_INO).is_empty());
    m.check_invariants();
}

#[test]
fn durable_entry_to_never_fsynced_file_gives_empty_file() {
    let mut m = model();
    let ino = create(&mut m, ROOT_INO, "f");
    m.write(ino, 0, b"data").expect("write");
    m.sync(ROOT_INO).expect("fsyncdir");
    power_loss(&mut m);
    assert_eq!(content(&m, ROOT_INO, "f"), Some(Vec::new()));
    let dir = mkdir(&mut m, ROOT_INO, "d");
    create(&mut m, dir, "inner");
    m.sync(ROOT_INO).expect("fsyncdir");
    power_loss(&mut m);
    let dir = m.lookup(ROOT_INO, name("d")).expect("d survives").ino;
    assert!(names(&m, dir).is_empty(), "a never fsynced directory is empty");
}

#[test]
fn unlink_is_undone_unless_directory_fsynced() {
    let mut m = model();
    let ino = create(&mut m, ROOT_INO, "f");
    m.write(ino, 0, b"keep").expect("write");
    m.sync(ino).expect("fsync");
    m.sync(ROOT_INO).expect("fsyncdir");
    m.unlink(ROOT_INO, name("f")).expect("unlink");
    assert!(names(&m, ROOT_INO).is_empty());
    assert_eq!(m.stats().data_bytes, PAGE_BYTES, "kept for a power loss");
    power_loss(&mut m);
    assert_eq!(content(&m, ROOT_INO, "f").as_deref(), Some(&b"keep"[..]));
    m.unlink(ROOT_INO, name("f")).expect("unlink");
    m.sync(ROOT_INO).expect("fsyncdir");
    assert_eq!((m.stats().data_bytes, m.stats().inodes), (0, 1), "freed once the unlink is durable");
    power_loss(&mut m);
    assert!(names(&m, ROOT_INO).is_empty());
}

#[test]
fn rename_needs_fsync_of_both_directories() {
    let mut m = model();
    let src = mkdir(&mut m, ROOT_INO, "src");
    let dst = mkdir(&mut m, ROOT_INO, "dst");
    let ino = create(&mut m, src, "f");
    m.write(ino, 0, b"x").expect("write");
    for dir in [ino, src, dst, ROOT_INO] {
        m.sync(dir).expect("fsync");
    }
    // Not made durable: undone.
    m.rename(src, name("f"), dst, name("g"), false).expect("rename");
    power_loss(&mut m);
    assert_eq!((names(&m, src), names(&m, dst)), (vec!["f".to_owned()], vec![]));
    // Only the destination fsynced: the file has both names.
    m.rename(src, name("f"), dst, name("g"), false).expect("rename");
    m.sync(dst).expect("fsyncdir dst");
    power_loss(&mut m);
    assert_eq!((names(&m, src), names(&m, dst)), (vec!["f".to_owned()], vec!["g".to_owned()]));
    assert_eq!(m.lookup(dst, name("g")).expect("g").nlink, 2);
    // Only the source fsynced: the file is gone.
    m.unlink(dst, name("g")).expect("unlink");
    m.sync(dst).expect("fsyncdir dst");
    m.rename(src, name("f"), dst, name("g"), false).expect("rename");
    m.sync(src).expect("fsyncdir src");
    let report = m.power_loss().expect("power loss");
    assert_eq!(report.inodes_lost, 1);
    assert!(names(&m, src).is_empty() && names(&m, dst).is_empty());
    m.check_invariants();
}

#[test]
fn nested_directories_need_every_level_fsynced() {
    let mut m = model();
    let a = mkdir(&mut m, ROOT_INO, "a");
    let b = mkdir(&mut m, a, "b");
    let f = create(&mut m, b, "f");
    m.write(f, 0, b"deep").expect("write");
    for ino in [f, b, a] {
        m.sync(ino).expect("fsync");
    }
    // The root was not fsynced: a, and with it everything below, is lost.
    let report = m.power_loss().expect("power loss");
    assert_eq!(report.inodes_lost, 3);
    m.check_invariants();

    let a = mkdir(&mut m, ROOT_INO, "a");
    let b = mkdir(&mut m, a, "b");
    let f = create(&mut m, b, "f");
    m.write(f, 0, b"deep").expect("write");
    for ino in [f, b, a, ROOT_INO] {
        m.sync(ino).expect("fsync");
    }
    power_loss(&mut m);
    let a = m.lookup(ROOT_INO, name("a")).expect("a").ino;
    let b = m.lookup(a, name("b")).expect("b").ino;
    assert_eq!(content(&m, b, "f").as_deref(), Some(&b"deep"[..]));
    assert_eq!(m.read_dir(b).expect("b").0, a, "parent restored");
}

#[test]
fn byte_limit_gives_enospc_and_changes_nothing() {
    let limits = Limits { bytes_limit: 4 * PAGE_BYTES, inodes_limit: 10 };
    let mut m = Model::new(limits, OWNER);
    let ino = create(&mut m, ROOT_INO, "f");
    m.write(ino, 0, &[1; 3 * PAGE_BYTES as usize]).expect("fits");
    m.sync(ino).expect("fsync");
    // Overwriting shared pages needs copies: 2 more pages do not fit.
    assert_eq!(m.write(ino, 0, &[2; 2 * PAGE_BYTES as usize]), Err(FsError::NoSpace));
    assert_eq!(m.read(ino, 0, u64::MAX).expect("read"), vec![1; 3 * PAGE_BYTES as usize]);
    assert_eq!(m.stats().data_bytes, 3 * PAGE_BYTES);
    m.write(ino, 0, &[2; PAGE_BYTES as usize]).expect("one copy fits");
    // Shrinking into a shared page needs a copy too.
    assert_eq!(m.set_size(ino, PAGE_BYTES + 1), Err(FsError::NoSpace));
    assert_eq!(m.attr(ino).expect("attr").size_bytes, 3 * PAGE_BYTES);
    m.set_size(ino, PAGE_BYTES).expect("aligned shrink copies nothing");
    m.check_invariants();
}

#[test]
fn inode_limit_gives_enospc() {
    let mut m = Model::new(Limits { bytes_limit: 1 << 20, inodes_limit: 3 }, OWNER);
    create(&mut m, ROOT_INO, "a");
    mkdir(&mut m, ROOT_INO, "b");
    assert_eq!(m.create(ROOT_INO, name("c"), Kind::File, OWNER), Err(FsError::NoSpace));
    assert_eq!(names(&m, ROOT_INO), ["a", "b"]);
}

#[test]
fn power_loss_is_refused_while_handles_are_open() {
    let mut m = model();
    let ino = create(&mut m, ROOT_INO, "f");
    m.open(ino).expect("open");
    m.unlink(ROOT_INO, name("f")).expect("unlink");
    m.write(ino, 0, b"still writable").expect("write to an unlinked open file");
    assert_eq!(m.power_loss(), Err(FsError::Busy));
    assert_eq!(m.stats().open_handles, 1);
    m.release(ino).expect("release");
    assert_eq!(m.stats().inodes, 1, "dropped at its last release");
    m.power_loss().expect("power loss");
}

#[test]
fn inode_numbers_are_never_reused() {
    let mut m = model();
    let first = create(&mut m, ROOT_INO, "f");
    power_loss(&mut m);
    let second = create(&mut m, ROOT_INO, "f");
    assert!(second > first);
    assert_eq!(m.attr(first), Err(FsError::NotFound));
}

#[test]
fn rename_errors_follow_posix() {
    let mut m = model();
    let d = mkdir(&mut m, ROOT_INO, "d");
    let sub = mkdir(&mut m, d, "sub");
    create(&mut m, ROOT_INO, "f");
    create(&mut m, sub, "g");
    assert_eq!(m.rename(ROOT_INO, name("d"), sub, name("x"), false), Err(FsError::InvalidArgument));
    assert_eq!(m.rename(ROOT_INO, name("f"), ROOT_INO, name("d"), false), Err(FsError::IsDir));
    assert_eq!(m.rename(d, name("sub"), ROOT_INO, name("f"), false), Err(FsError::NotDir));
    let empty = mkdir(&mut m, ROOT_INO, "empty");
    assert_eq!(m.rename(ROOT_INO, name("empty"), ROOT_INO, name("d"), false), Err(FsError::NotEmpty));
    assert_eq!(m.rename(ROOT_INO, name("f"), ROOT_INO, name("empty"), true), Err(FsError::Exists));
    m.rename(d, name("sub"), ROOT_INO, name("empty"), false).expect("replace an empty directory");
    assert_eq!(m.attr(empty), Err(FsError::NotFound));
    assert_eq!(m.read_dir(sub).expect("sub").0, ROOT_INO);
    m.check_invariants();
}

#[test]
fn directory_in_two_durable_parents_is_placed_once() {
    let mut m = model();
    let a = mkdir(&mut m, ROOT_INO, "a");
    let b = mkdir(&mut m, a, "b");
    m.sync(a).expect("fsyncdir a");
    m.rename(a, name("b"), ROOT_INO, name("b"), false).expect("move b up");
    m.sync(ROOT_INO).expect("fsyncdir root");
    // Durable now: root → {a, b}, a → {b}.
    let report = m.power_loss().expect("power loss");
    assert_eq!(report.duplicate_dir_entries_dropped, 1);
    assert_eq!(names(&m, ROOT_INO), ["a", "b"]);
    assert!(names(&m, a).is_empty());
    assert_eq!(m.read_dir(b).expect("b").0, ROOT_INO);
    m.check_invariants();
}
