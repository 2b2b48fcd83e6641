//! The total order of writes to one key.
//!
//! A version is the server-assigned timestamp in milliseconds plus a
//! tie-break. Two concurrent writes may pick the same millisecond; the
//! tie-break orders them identically on every node, so every replica agrees
//! on which one wins without talking to the others.

use serde::{Deserialize, Serialize};

/// The version of one write. Ordered by `timestamp_ms`, then `tiebreak`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Milliseconds since the Unix epoch, as reported to clients.
    pub timestamp_ms: u64,
    /// `node_tag << 32 | sequence`: unique per coordinator and per write,
    /// so no two writes ever share a version.
    pub tiebreak: u64,
}

impl Version {
    pub const ZERO: Version = Version { timestamp_ms: 0, tiebreak: 0 };

    pub fn new(timestamp_ms: u64, tiebreak: u64) -> Version {
        Version { timestamp_ms, tiebreak }
    }

    /// The node that coordinated this write (upper half of the tie-break).
    pub fn node_tag(&self) -> u32 {
        (self.tiebreak >> 32) as u32
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:016x}", self.timestamp_ms, self.tiebreak)
    }
}

/// Derives a node's 32-bit tag from its id (FNV-1a), the upper half of
/// every tie-break it issues. Stable across restarts and identical on every
/// node, which is all the tie-break needs.
pub fn node_tag(node_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in node_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_dominates_tiebreak() {
        assert!(Version::new(2, 0) > Version::new(1, u64::MAX));
        assert!(Version::new(1, 2) > Version::new(1, 1));
        assert_eq!(Version::new(5, 7).node_tag(), 0);
        assert_eq!(Version::new(5, 7 << 32).node_tag(), 7);
    }

    #[test]
    fn node_tags_differ_for_usual_ids() {
        let tags: std::collections::HashSet<u32> = (1..=64).map(|i| node_tag(&format!("n{i}"))).collect();
        assert_eq!(tags.len(), 64);
    }
}
