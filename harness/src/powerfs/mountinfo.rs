//! Finding our mounts in /proc/self/mountinfo (pure parsing; the sweep
//! that unmounts is in `mod.rs`).
//!
//! Each mount is tagged by its source ("fsname"): `kvtest-powerfs-<pid>`,
//! the pid of the process that serves it. A mount whose process is gone is
//! dead: every access fails with ENOTCONN until it is unmounted.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// The prefix of the source of every powerfs mount.
pub const FSNAME_PREFIX: &str = "kvtest-powerfs-";

/// The source of the mounts this process serves.
pub fn fsname(pid: u32) -> String {
    format!("{FSNAME_PREFIX}{pid}")
}

/// One powerfs mount listed in mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OurMount {
    pub mount_point: PathBuf,
    /// The pid in the source: the process serving the mount.
    pub owner_pid: u32,
}

/// The powerfs mounts in the text of a mountinfo file.
///
/// A line: `36 35 98:0 /root /mnt/point rw,noatime shared:1 - fuse SOURCE rw,...`:
/// the mount point is the 5th field, the filesystem type and the source
/// follow the " - " separator (optional fields come before it).
pub fn our_mounts(mountinfo: &str) -> Vec<OurMount> {
    mountinfo.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<OurMount> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let source = after.next()?;
    if fstype != "fuse" && !fstype.starts_with("fuse.") {
        return None;
    }
    let owner_pid = unescape(source).strip_prefix(FSNAME_PREFIX.as_bytes())?.to_vec();
    let owner_pid = String::from_utf8(owner_pid).ok()?.parse().ok()?;
    Some(OurMount { mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))), owner_pid })
}

/// The kernel writes space, tab, newline and backslash in mountinfo as
/// three-digit octal escapes (`\040`).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
98 22 0:52 / /tmp/with\\040space rw,nosuid,nodev,relatime shared:60 - fuse kvtest-powerfs-4242 rw,user_id=0,group_id=0,allow_other
99 22 0:53 / /tmp/other rw,nosuid,nodev,relatime - fuse.sshfs host:/ rw,user_id=0
100 22 0:54 / /tmp/x rw master:3 shared:7 - fuse.kvtest kvtest-powerfs-17 rw
101 22 0:55 / /tmp/y rw - fuse kvtest-powerfs-notapid rw
102 22 0:56 / /tmp/z rw - tmpfs kvtest-powerfs-5 rw
";

    #[test]
    fn finds_our_fuse_mounts_only() {
        let mounts = our_mounts(SAMPLE);
        assert_eq!(
            mounts,
            vec![
                OurMount { mount_point: PathBuf::from("/tmp/with space"), owner_pid: 4242 },
                OurMount { mount_point: PathBuf::from("/tmp/x"), owner_pid: 17 },
            ]
        );
    }

    #[test]
    fn unescapes_octal_and_leaves_other_backslashes() {
        assert_eq!(unescape("a\\011b\\134c\\x"), b"a\tb\\c\\x");
        assert_eq!(unescape("end\\04"), b"end\\04");
    }

    #[test]
    fn fsname_round_trips() {
        let line = format!("1 1 0:1 / /m rw - fuse {} rw", fsname(7));
        assert_eq!(our_mounts(&line)[0].owner_pid, 7);
    }
}
