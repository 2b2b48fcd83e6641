//! A small write-ahead log: the reason a write is durable when acknowledged.
//!
//! Frames are `[payload length u32 LE][crc32 of payload u32 LE][payload]`,
//! the payload `[key length u32 LE][key][encoded record]`. A batch of frames
//! is written with one `write_all` and one `sync_data` (group commit). On
//! open, frames are read back until the first torn or corrupt one, which a
//! crash mid-write leaves at the tail; the file is cut there.

use super::StorageError;
use crate::record::Record;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const FRAME_HEADER_BYTES: usize = 8;
/// Larger than any record the node accepts; a frame claiming more is garbage.
const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// One logged write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    pub key: Vec<u8>,
    pub record: Record,
}

pub struct Wal {
    file: File,
    path: PathBuf,
    len_bytes: u64,
}

impl Wal {
    /// Opens (or creates) `dir/wal.log` and returns the entries it holds.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<WalEntry>), StorageError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("wal.log");
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (entries, valid_len) = parse_frames(&bytes);
        if valid_len < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept_bytes = valid_len,
                dropped_bytes = bytes.len() - valid_len,
                "write-ahead log ends in a torn or corrupt frame; cutting it there (unacknowledged writes only)"
            );
            file.set_len(valid_len as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(valid_len as u64))?;
        Ok((Wal { file, path, len_bytes: valid_len as u64 }, entries))
    }

    /// Appends `entries` and returns once they are on disk.
    pub fn append_batch(&mut self, entries: &[&WalEntry]) -> Result<(), StorageError> {
        let mut buffer = Vec::with_capacity(entries.iter().map(|e| e.key.len() + e.record.value.len() + 64).sum());
        for entry in entries {
            encode_frame(entry, &mut buffer);
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.len_bytes += buffer.len() as u64;
        Ok(())
    }

    /// Empties the log; call only once everything in it is durable elsewhere.
    pub fn reset(&mut self) -> Result<(), StorageError> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.sync_all()?;
        self.len_bytes = 0;
        Ok(())
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn encode_frame(entry: &WalEntry, out: &mut Vec<u8>) {
    let record = entry.record.encode();
    let mut payload = Vec::with_capacity(4 + entry.key.len() + record.len());
    payload.extend_from_slice(&(entry.key.len() as u32).to_le_bytes());
    payload.extend_from_slice(&entry.key);
    payload.extend_from_slice(&record);
    assert!(payload.len() <= MAX_PAYLOAD_BYTES, "a WAL frame must fit the node's limits");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Entries of every whole, intact frame, and the length they span.
fn parse_frames(bytes: &[u8]) -> (Vec<WalEntry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some((entry, frame_len)) = parse_frame(&bytes[at..]) {
        entries.push(entry);
        at += frame_len;
    }
    (entries, at)
}

fn parse_frame(bytes: &[u8]) -> Option<(WalEntry, usize)> {
    let header = bytes.get(..FRAME_HEADER_BYTES)?;
    let payload_len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if payload_len > MAX_PAYLOAD_BYTES {
        return None;
    }
    let payload = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload_len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let key_len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let key = payload.get(4..4 + key_len)?.to_vec();
    let record = Record::decode(&payload[4 + key_len..]).ok()?;
    Some((WalEntry { key, record }, FRAME_HEADER_BYTES + payload_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;

    fn entry(i: u64) -> WalEntry {
        WalEntry {
            key: format!("k{i}").into_bytes(),
            record: Record::value(Version::new(i, 1), vec![i as u8; 10], None),
        }
    }

    #[test]
    fn entries_survive_reopen_and_torn_tail_is_cut() {
        let dir = std::env::temp_dir().join(format!("wal-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut wal, replayed) = Wal::open(&dir).unwrap();
        assert!(replayed.is_empty());
        let written: Vec<WalEntry> = (0..5).map(entry).collect();
        wal.append_batch(&written.iter().collect::<Vec<_>>()).unwrap();
        let full_len = wal.len_bytes();
        drop(wal);
        // A crash in the middle of the next frame leaves half of it behind.
        let mut torn = Vec::new();
        encode_frame(&entry(9), &mut torn);
        let mut file = OpenOptions::new().append(true).open(dir.join("wal.log")).unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(file);

        let (wal, replayed) = Wal::open(&dir).unwrap();
        assert_eq!(replayed, written);
        assert_eq!(wal.len_bytes(), full_len);
        assert_eq!(std::fs::metadata(dir.join("wal.log")).unwrap().len(), full_len);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_flipped_bit_ends_the_log() {
        let mut bytes = Vec::new();
        for i in 0..3 {
            encode_frame(&entry(i), &mut bytes);
        }
        let (all, len) = parse_frames(&bytes);
        assert_eq!((all.len(), len), (3, bytes.len()));
        let second_frame = len / 3 + FRAME_HEADER_BYTES + 2;
        bytes[second_frame] ^= 0x40;
        let (kept, _) = parse_frames(&bytes);
        assert_eq!(kept, vec![entry(0)]);
    }
}
