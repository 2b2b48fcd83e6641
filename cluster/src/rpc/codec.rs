//! Binary bodies of internal RPCs. Integers are little-endian; byte strings
//! carry a `u32` length prefix; records use [`Record::encode`].

use crate::antientropy::BUCKETS;
use crate::record::Record;
use crate::transport::{Digests, Entry, SyncReply, SyncRequest};
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
    Read { key: Vec<u8> },
    Write { key: Vec<u8>, record: Record },
}

/// The replica's answer to one [`Call`], in the same position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Absent,
    Found(Record),
    /// Durable on that replica (applied, or it already held as new).
    Written,
    Failed(String),
}

/// `[count u32]` then per call `[kind u8: 0 read, 1 write][key][record, writes only]`.
pub fn encode_calls<'c>(calls: impl ExactSizeIterator<Item = &'c Call>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(calls.len() as u32).to_le_bytes());
    for call in calls {
        match call {
            Call::Read { key } => {
                out.push(0);
                put_prefixed(&mut out, key);
            }
            Call::Write { key, record } => {
                out.push(1);
                put_prefixed(&mut out, key);
                put_prefixed(&mut out, &record.encode());
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
            0 => Call::Read { key },
            1 => Call::Write { key, record: reader.record()? },
            other => return Err(DecodeError(format!("unknown call kind {other}"))),
        });
    }
    reader.finish()?;
    Ok(calls)
}

/// `[count u32]` then per answer `[tag u8: 0 absent, 1 found, 2 written, 3 failed][record | message]`.
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
            other => return Err(DecodeError(format!("unknown answer tag {other}"))),
        });
    }
    reader.finish()?;
    Ok(answers)
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
        let (key, record) = entries[0].clone();
        let calls = vec![Call::Read { key: key.clone() }, Call::Write { key, record: record.clone() }];
        assert_eq!(decode_calls(&encode_calls(calls.iter())).unwrap(), calls);
        let answers = vec![Answer::Absent, Answer::Found(record), Answer::Written, Answer::Failed("disk".into())];
        assert_eq!(decode_answers(&encode_answers(&answers)).unwrap(), answers);
        let request = SyncRequest { from: "n1".into(), digests: Digests((0..BUCKETS as u64).collect()) };
        assert_eq!(decode_sync_request(&encode_sync_request(&request)).unwrap(), request);
        let reply = SyncReply { digests: request.digests.clone(), records: entries.clone(), complete: false };
        assert_eq!(decode_sync_reply(&encode_sync_reply(&reply)).unwrap(), reply);

        assert!(decode_entries(&[5, 0, 0, 0]).is_err());
        assert!(decode_calls(&encode_calls(calls.iter())[..10]).is_err());
        assert!(decode_answers(&[1, 0, 0, 0, 9]).is_err());
        let mut trailing = encode_entries(&entries);
        trailing.push(0);
        assert!(decode_entries(&trailing).is_err());
        assert!(decode_entries(&[255, 255, 255, 255, 255, 255, 255, 255]).is_err());
    }
}
