//! What a replica stores for one key: a version, a tombstone flag, an
//! optional expiry and the raw value bytes, with its on-disk encoding.

use crate::version::Version;
use thiserror::Error;

/// The stored state of one key on one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub version: Version,
    /// A delete: reads answer "not found" with this version's timestamp.
    pub tombstone: bool,
    /// Milliseconds since the epoch from which the value reads as absent.
    pub expires_at_ms: Option<u64>,
    /// Raw bytes, never base64 (empty for a tombstone).
    pub value: Vec<u8>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("record is {0} bytes, shorter than its {HEADER_BYTES}-byte header")]
    Truncated(usize),
    #[error("record format {0} is unknown (expected {FORMAT})")]
    UnknownFormat(u8),
    #[error("record has unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
}

const FORMAT: u8 = 1;
const FLAG_TOMBSTONE: u8 = 0b01;
const FLAG_EXPIRES: u8 = 0b10;
/// format (1) + timestamp (8) + tiebreak (8) + flags (1) + expiry (8).
pub const HEADER_BYTES: usize = 26;

/// What a key and its record count for against a byte cap (hints,
/// batches to a peer, an anti-entropy exchange): the key, the value, and a
/// fixed allowance for the header and the framing around them.
pub fn entry_bytes(key: &[u8], record: &Record) -> usize {
    key.len() + record.value.len() + 64
}

impl Record {
    pub fn value(version: Version, value: Vec<u8>, expires_at_ms: Option<u64>) -> Record {
        Record { version, tombstone: false, expires_at_ms, value }
    }

    /// Why a record that came from elsewhere (a peer, a hint, a repair, an
    /// anti-entropy exchange) must not be stored: its version is more than
    /// `max_ahead_ms` past this node's clock. Stored, it would pin the key
    /// (every later write must go above it, its tombstone could not be
    /// compacted), and a version near `u64::MAX` would leave no room at all.
    pub fn too_far_ahead(&self, now_ms: u64, max_ahead_ms: u64) -> Option<String> {
        let limit_ms = now_ms.saturating_add(max_ahead_ms);
        (self.version.timestamp_ms > limit_ms).then(|| {
            format!(
                "version {} ms is {} ms ahead of this node's clock, more than the {max_ahead_ms} ms allowed \
                 (--max-clock-skew-ms)",
                self.version.timestamp_ms,
                self.version.timestamp_ms - now_ms
            )
        })
    }

    pub fn tombstone(version: Version) -> Record {
        Record { version, tombstone: true, expires_at_ms: None, value: Vec::new() }
    }

    /// True when a read at `now_ms` sees the value (not deleted, not expired).
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        !self.tombstone && self.expires_at_ms.is_none_or(|expiry| now_ms < expiry)
    }

    /// The moment from which this record is dead (a tombstone from its
    /// write, an expiring value from its expiry), or `None` if it lives on.
    pub fn dead_since_ms(&self) -> Option<u64> {
        if self.tombstone {
            Some(self.version.timestamp_ms)
        } else {
            self.expires_at_ms
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.value.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.version.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.version.tiebreak.to_be_bytes());
        let mut flags = 0;
        if self.tombstone {
            flags |= FLAG_TOMBSTONE;
        }
        if self.expires_at_ms.is_some() {
            flags |= FLAG_EXPIRES;
        }
        out.push(flags);
        out.extend_from_slice(&self.expires_at_ms.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    /// The version of an encoded record, without copying its value: what a
    /// write's check against the held record needs.
    pub fn version_in(bytes: &[u8]) -> Result<Version, CodecError> {
        Record::check_header(bytes)?;
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(Version::new(u64_at(1), u64_at(9)))
    }

    fn check_header(bytes: &[u8]) -> Result<(), CodecError> {
        if bytes.len() < HEADER_BYTES {
            return Err(CodecError::Truncated(bytes.len()));
        }
        if bytes[0] != FORMAT {
            return Err(CodecError::UnknownFormat(bytes[0]));
        }
        Ok(())
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, CodecError> {
        Record::check_header(bytes)?;
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let flags = bytes[17];
        if flags & !(FLAG_TOMBSTONE | FLAG_EXPIRES) != 0 {
            return Err(CodecError::UnknownFlags(flags));
        }
        Ok(Record {
            version: Version::new(u64_at(1), u64_at(9)),
            tombstone: flags & FLAG_TOMBSTONE != 0,
            expires_at_ms: (flags & FLAG_EXPIRES != 0).then(|| u64_at(18)),
            value: bytes[HEADER_BYTES..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn records_too_far_ahead_are_named_and_the_edges_hold() {
        let at = |timestamp_ms| Record::tombstone(Version::new(timestamp_ms, 1));
        assert_eq!(at(1_600).too_far_ahead(1_000, 600), None, "exactly the allowance is fine");
        let reason = at(1_601).too_far_ahead(1_000, 600).unwrap();
        assert!(reason.contains("601 ms ahead") && reason.contains("--max-clock-skew-ms"), "{reason}");
        assert!(at(u64::MAX).too_far_ahead(1_000, 600).is_some());
        assert_eq!(at(u64::MAX).too_far_ahead(u64::MAX - 5, 600), None, "no overflow at the end of time");
        assert_eq!(at(0).too_far_ahead(1_000, 0), None, "the past is never refused");
    }

    use super::*;

    #[test]
    fn encoding_round_trips() {
        let all_bytes: Vec<u8> = (0..=255).collect();
        for record in [
            Record::value(Version::new(1, 2), all_bytes, None),
            Record::value(Version::new(u64::MAX, u64::MAX), Vec::new(), Some(u64::MAX)),
            Record::tombstone(Version::new(7, 3 << 32)),
        ] {
            assert_eq!(Record::decode(&record.encode()), Ok(record));
        }
    }

    #[test]
    fn decoding_rejects_garbage() {
        assert_eq!(Record::decode(&[1, 2, 3]), Err(CodecError::Truncated(3)));
        let mut bytes = Record::tombstone(Version::ZERO).encode();
        bytes[0] = 9;
        assert_eq!(Record::decode(&bytes), Err(CodecError::UnknownFormat(9)));
        assert_eq!(Record::version_in(&bytes), Err(CodecError::UnknownFormat(9)));
        assert_eq!(Record::version_in(&[1, 2, 3]), Err(CodecError::Truncated(3)));
        let record = Record::value(Version::new(7, 9), b"value".to_vec(), Some(11));
        assert_eq!(Record::version_in(&record.encode()), Ok(Version::new(7, 9)));
    }

    #[test]
    fn liveness_follows_tombstone_and_expiry() {
        let v = Version::new(100, 0);
        assert!(Record::value(v, vec![1], None).is_live_at(u64::MAX));
        assert!(Record::value(v, vec![1], Some(200)).is_live_at(199));
        assert!(!Record::value(v, vec![1], Some(200)).is_live_at(200));
        assert!(!Record::tombstone(v).is_live_at(0));
        assert_eq!(Record::tombstone(v).dead_since_ms(), Some(100));
    }
}
