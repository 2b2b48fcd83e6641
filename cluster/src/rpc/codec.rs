//! Binary bodies of internal RPCs. Integers are little-endian; byte strings
//! carry a `u32` length prefix; records use [`Record::encode`].

use crate::antientropy::BUCKETS;
use crate::record::Record;
use crate::transport::{Digests, Entry, Gossip, HandoffReply, HandoffRequest, SyncReply, SyncRequest, ViewDigest};
use crate::view::{Entry as MemberEntry, Status, View};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed internal message: {0}")]
pub struct DecodeError(String);

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| DecodeError(format!("wants {len} bytes at offset {}", self.at)))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn prefixed(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn record(&mut self) -> Result<Record, DecodeError> {
        Record::decode(self.prefixed()?).map_err(|error| DecodeError(error.to_string()))
    }

    fn finish(self) -> Result<(), DecodeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError(format!("{} trailing bytes", self.bytes.len() - self.at)))
        }
    }
}

fn put_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (key, record) in entries {
        put_prefixed(&mut out, key);
        put_prefixed(&mut out, &record.encode());
    }
    out
}

fn read_entries(reader: &mut Reader<'_>) -> Result<Vec<Entry>, DecodeError> {
    let count = reader.u32()? as usize;
    let mut entries = Vec::with_capacity(count.min(65_536));
    for _ in 0..count {
        let key = reader.prefixed()?.to_vec();
        entries.push((key, reader.record()?));
    }
    Ok(entries)
}

pub fn decode_entries(bytes: &[u8]) -> Result<Vec<Entry>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let entries = read_entries(&mut reader)?;
    reader.finish()?;
    Ok(entries)
}

/// A write batch: `[from][entries]`.
pub fn encode_write_batch(from: &str, entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    put_prefixed(&mut out, from.as_bytes());
    out.extend_from_slice(&encode_entries(entries));
    out
}

pub fn decode_write_batch(bytes: &[u8]) -> Result<(String, Vec<Entry>), DecodeError> {
    let mut reader = Reader::new(bytes);
    let from = read_string(&mut reader, "sender id")?;
    let entries = read_entries(&mut reader)?;
    reader.finish()?;
    Ok((from, entries))
}

fn put_digests(out: &mut Vec<u8>, digests: &Digests) {
    for leaf in &digests.0 {
        out.extend_from_slice(&leaf.to_le_bytes());
    }
}

fn read_digests(reader: &mut Reader<'_>) -> Result<Digests, DecodeError> {
    (0..BUCKETS).map(|_| reader.u64()).collect::<Result<_, _>>().map(Digests)
}

pub fn encode_sync_request(request: &SyncRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(BUCKETS * 8 + 64);
    put_prefixed(&mut out, request.from.as_bytes());
    put_digests(&mut out, &request.digests);
    out
}

pub fn decode_sync_request(bytes: &[u8]) -> Result<SyncRequest, DecodeError> {
    let mut reader = Reader::new(bytes);
    let from =
        String::from_utf8(reader.prefixed()?.to_vec()).map_err(|_| DecodeError("node id is not UTF-8".into()))?;
    let digests = read_digests(&mut reader)?;
    reader.finish()?;
    Ok(SyncRequest { from, digests })
}

pub fn encode_sync_reply(reply: &SyncReply) -> Vec<u8> {
    let mut out = Vec::with_capacity(BUCKETS * 8);
    put_digests(&mut out, &reply.digests);
    out.push(u8::from(reply.complete));
    out.extend_from_slice(&encode_entries(&reply.records));
    out
}

pub fn decode_sync_reply(bytes: &[u8]) -> Result<SyncReply, DecodeError> {
    let mut reader = Reader::new(bytes);
    let digests = read_digests(&mut reader)?;
    let complete = match reader.u8()? {
        0 => false,
        1 => true,
        other => return Err(DecodeError(format!("completeness flag {other} is neither 0 nor 1"))),
    };
    let records = read_entries(&mut reader)?;
    reader.finish()?;
    Ok(SyncReply { digests, records, complete })
}

/// One call in a batch to a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `fence`: see [`crate::topology`] (0: not fenced).
    Read {
        key: Vec<u8>,
        fence: u64,
    },
    Write {
        key: Vec<u8>,
        record: Record,
        fence: u64,
    },
    /// A put's one-round write: see [`crate::replica::Replica::write_newest`].
    WriteNewest {
        key: Vec<u8>,
        record: Record,
        fence: u64,
    },
}

/// The replica's answer to one [`Call`], in the same position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Absent,
    Found(Record),
    /// Durable on that replica (applied, or it already held as new).
    Written,
    Failed(String),
    /// The call's fence is not this replica's placement of the key.
    StaleView,
    /// A [`Call::WriteNewest`] that was not the newest this replica held
    /// (or that it could not vouch for while recovering).
    NotNewest,
}

/// `[count u32]` then per call `[kind u8: 0 read, 1 write, 2 write newest][key][record, writes only][fence u64]`.
pub fn encode_calls<'c>(calls: impl ExactSizeIterator<Item = &'c Call>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(calls.len() as u32).to_le_bytes());
    for call in calls {
        match call {
            Call::Read { key, fence } => {
                out.push(0);
                put_prefixed(&mut out, key);
                out.extend_from_slice(&fence.to_le_bytes());
            }
            Call::Write { key, record, fence } | Call::WriteNewest { key, record, fence } => {
                out.push(if matches!(call, Call::Write { .. }) { 1 } else { 2 });
                put_prefixed(&mut out, key);
                put_prefixed(&mut out, &record.encode());
                out.extend_from_slice(&fence.to_le_bytes());
            }
        }
    }
    out
}

pub fn decode_calls(bytes: &[u8]) -> Result<Vec<Call>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let count = reader.u32()? as usize;
    let mut calls = Vec::with_capacity(count.min(65_536));
    for _ in 0..count {
        let kind = reader.take(1)?[0];
        let key = reader.prefixed()?.to_vec();
        calls.push(match kind {
            0 => Call::Read { key, fence: reader.u64()? },
            1 => {
                let record = reader.record()?;
                Call::Write { key, record, fence: reader.u64()? }
            }
            2 => {
                let record = reader.record()?;
                Call::WriteNewest { key, record, fence: reader.u64()? }
            }
            other => return Err(DecodeError(format!("unknown call kind {other}"))),
        });
    }
    reader.finish()?;
    Ok(calls)
}

/// `[count u32]` then per answer `[tag u8: 0 absent, 1 found, 2 written, 3 failed, 4 stale view, 5 not newest]`
/// then a found record or a failure's message.
pub fn encode_answers(answers: &[Answer]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(answers.len() as u32).to_le_bytes());
    for answer in answers {
        match answer {
            Answer::Absent => out.push(0),
            Answer::Found(record) => {
                out.push(1);
                put_prefixed(&mut out, &record.encode());
            }
            Answer::Written => out.push(2),
            Answer::Failed(message) => {
                out.push(3);
                put_prefixed(&mut out, message.as_bytes());
            }
            Answer::StaleView => out.push(4),
            Answer::NotNewest => out.push(5),
        }
    }
    out
}

pub fn decode_answers(bytes: &[u8]) -> Result<Vec<Answer>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let count = reader.u32()? as usize;
    let mut answers = Vec::with_capacity(count.min(65_536));
    for _ in 0..count {
        answers.push(match reader.take(1)?[0] {
            0 => Answer::Absent,
            1 => Answer::Found(reader.record()?),
            2 => Answer::Written,
            3 => Answer::Failed(String::from_utf8_lossy(reader.prefixed()?).into_owned()),
            4 => Answer::StaleView,
            5 => Answer::NotNewest,
            other => return Err(DecodeError(format!("unknown answer tag {other}"))),
        });
    }
    reader.finish()?;
    Ok(answers)
}

fn read_string(reader: &mut Reader<'_>, what: &str) -> Result<String, DecodeError> {
    String::from_utf8(reader.prefixed()?.to_vec()).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
}

fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            put_prefixed(out, bytes);
        }
    }
}

fn read_optional(reader: &mut Reader<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    match reader.u8()? {
        0 => Ok(None),
        1 => Ok(Some(reader.prefixed()?.to_vec())),
        other => Err(DecodeError(format!("presence flag {other} is neither 0 nor 1"))),
    }
}

const STATUSES: [Status; 4] = [Status::Joining, Status::Normal, Status::Leaving, Status::Left];

/// A view: `[count u32]` then per member `[id][version u64][status u8][addr][tokens: count u32, u64 each]`.
fn put_view(out: &mut Vec<u8>, view: &View) {
    let entries: Vec<_> = view.entries().collect();
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (id, entry) in entries {
        put_prefixed(out, id.as_bytes());
        out.extend_from_slice(&entry.version.to_le_bytes());
        out.push(STATUSES.iter().position(|status| *status == entry.status).expect("every status listed") as u8);
        put_prefixed(out, entry.addr.as_bytes());
        out.extend_from_slice(&(entry.tokens.len() as u32).to_le_bytes());
        for token in &entry.tokens {
            out.extend_from_slice(&token.to_le_bytes());
        }
    }
}

fn read_view(reader: &mut Reader<'_>) -> Result<View, DecodeError> {
    let mut view = View::default();
    for _ in 0..reader.u32()? {
        let id = read_string(reader, "member id")?;
        let version = reader.u64()?;
        let status =
            *STATUSES.get(usize::from(reader.u8()?)).ok_or_else(|| DecodeError("unknown member status".into()))?;
        let addr = read_string(reader, "member address")?;
        let count = reader.u32()? as usize;
        let tokens = (0..count).map(|_| reader.u64()).collect::<Result<Vec<u64>, _>>()?;
        view.offer(&id, MemberEntry { version, status, addr, tokens });
    }
    Ok(view)
}

/// `[digest: count u32, then [id][version u64][hash u64] each][view]`.
pub fn encode_gossip(message: &Gossip) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(message.digest.len() as u32).to_le_bytes());
    for (id, (version, hash)) in &message.digest {
        put_prefixed(&mut out, id.as_bytes());
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&hash.to_le_bytes());
    }
    put_view(&mut out, &message.entries);
    out
}

pub fn decode_gossip(bytes: &[u8]) -> Result<Gossip, DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut digest = ViewDigest::new();
    for _ in 0..reader.u32()? {
        let id = read_string(&mut reader, "member id")?;
        digest.insert(id, (reader.u64()?, reader.u64()?));
    }
    let entries = read_view(&mut reader)?;
    reader.finish()?;
    Ok(Gossip { digest, entries })
}

/// `[mover][mover_version u64][after: optional key][purge u8]`.
pub fn encode_handoff_request(request: &HandoffRequest) -> Vec<u8> {
    let mut out = Vec::new();
    put_prefixed(&mut out, request.mover.as_bytes());
    out.extend_from_slice(&request.mover_version.to_le_bytes());
    put_optional(&mut out, request.after.as_deref());
    out.push(u8::from(request.purge));
    out
}

pub fn decode_handoff_request(bytes: &[u8]) -> Result<HandoffRequest, DecodeError> {
    let mut reader = Reader::new(bytes);
    let mover = read_string(&mut reader, "mover id")?;
    let mover_version = reader.u64()?;
    let after = read_optional(&mut reader)?;
    let purge = match reader.u8()? {
        0 => false,
        1 => true,
        other => return Err(DecodeError(format!("purge flag {other} is neither 0 nor 1"))),
    };
    reader.finish()?;
    Ok(HandoffRequest { mover, mover_version, after, purge })
}

/// `[pushed u64][next: optional key]`.
pub fn encode_handoff_reply(reply: &HandoffReply) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&reply.pushed.to_le_bytes());
    put_optional(&mut out, reply.next.as_deref());
    out
}

pub fn decode_handoff_reply(bytes: &[u8]) -> Result<HandoffReply, DecodeError> {
    let mut reader = Reader::new(bytes);
    let pushed = reader.u64()?;
    let next = read_optional(&mut reader)?;
    reader.finish()?;
    Ok(HandoffReply { pushed, next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let entries = vec![
            (b"k1".to_vec(), Record::value(Version::new(1, 2), vec![0, 255], Some(9))),
            (vec![], Record::tombstone(Version::new(3, 4))),
        ];
        assert_eq!(decode_entries(&encode_entries(&entries)).unwrap(), entries);
        assert_eq!(
            decode_write_batch(&encode_write_batch("n2", &entries)).unwrap(),
            ("n2".to_owned(), entries.clone())
        );
        let (key, record) = entries[0].clone();
        let calls = vec![
            Call::Read { key: key.clone(), fence: 0 },
            Call::Write { key: key.clone(), record: record.clone(), fence: 7 },
            Call::WriteNewest { key, record: record.clone(), fence: 8 },
        ];
        assert_eq!(decode_calls(&encode_calls(calls.iter())).unwrap(), calls);
        let answers = vec![
            Answer::Absent,
            Answer::Found(record),
            Answer::Written,
            Answer::Failed("disk".into()),
            Answer::StaleView,
            Answer::NotNewest,
        ];
        assert_eq!(decode_answers(&encode_answers(&answers)).unwrap(), answers);
        let request = SyncRequest { from: "n1".into(), digests: Digests((0..BUCKETS as u64).collect()) };
        assert_eq!(decode_sync_request(&encode_sync_request(&request)).unwrap(), request);
        let reply = SyncReply { digests: request.digests.clone(), records: entries.clone(), complete: false };
        assert_eq!(decode_sync_reply(&encode_sync_reply(&reply)).unwrap(), reply);

        let mut view = View::default();
        view.offer(
            "n1",
            MemberEntry { version: 3, status: Status::Leaving, addr: "h:1".into(), tokens: vec![1, u64::MAX] },
        );
        view.offer("n2", MemberEntry { version: 0, status: Status::Normal, addr: String::new(), tokens: vec![] });
        let gossip = Gossip { digest: crate::gossip::digest(&view), entries: view };
        assert_eq!(decode_gossip(&encode_gossip(&gossip)).unwrap(), gossip);
        assert!(decode_gossip(&encode_gossip(&gossip)[..20]).is_err());
        let handoff = HandoffRequest { mover: "n9".into(), mover_version: 2, after: Some(b"k".to_vec()), purge: true };
        assert_eq!(decode_handoff_request(&encode_handoff_request(&handoff)).unwrap(), handoff);
        let reply = HandoffReply { pushed: 5, next: None };
        assert_eq!(decode_handoff_reply(&encode_handoff_reply(&reply)).unwrap(), reply);
        assert!(decode_handoff_reply(&[0, 0, 0, 0, 0, 0, 0, 0, 2]).is_err());

        assert!(decode_entries(&[5, 0, 0, 0]).is_err());
        assert!(decode_calls(&encode_calls(calls.iter())[..10]).is_err());
        assert!(decode_answers(&[1, 0, 0, 0, 9]).is_err());
        let mut trailing = encode_entries(&entries);
        trailing.push(0);
        assert!(decode_entries(&trailing).is_err());
        assert!(decode_entries(&[255, 255, 255, 255, 255, 255, 255, 255]).is_err());
    }
}
