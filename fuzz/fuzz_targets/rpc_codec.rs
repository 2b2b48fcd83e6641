//! The internal RPC codec: every body a peer (or anyone who has the
//! cluster secret) can send, and every reply a node reads back (replica
//! calls, anti-entropy, gossip of the membership view, handoff).
//!
//! The first byte picks the decoder, the rest is the body. Properties:
//! nothing panics (a hostile length prefix must not make a decoder
//! allocate or index past the end); and what decodes, encoded again,
//! decodes to the same value (decode(encode(x)) == x for decoded x).

#![no_main]

use cluster::rpc::codec::{
    decode_answers, decode_calls, decode_entries, decode_gossip, decode_handoff_reply, decode_handoff_request,
    decode_sync_reply, decode_sync_request, decode_write_batch, encode_answers, encode_calls, encode_entries,
    encode_gossip, encode_handoff_reply, encode_handoff_request, encode_sync_reply, encode_sync_request,
    encode_write_batch,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    match which % 9 {
        0 => {
            if let Ok(calls) = decode_calls(body) {
                assert_eq!(decode_calls(&encode_calls(calls.iter())), Ok(calls));
            }
        }
        1 => {
            if let Ok(entries) = decode_entries(body) {
                assert_eq!(decode_entries(&encode_entries(&entries)), Ok(entries));
            }
        }
        2 => {
            if let Ok(request) = decode_sync_request(body) {
                assert_eq!(decode_sync_request(&encode_sync_request(&request)), Ok(request));
            }
        }
        3 => {
            if let Ok(reply) = decode_sync_reply(body) {
                assert_eq!(decode_sync_reply(&encode_sync_reply(&reply)), Ok(reply));
            }
        }
        4 => {
            if let Ok((from, entries)) = decode_write_batch(body) {
                assert_eq!(decode_write_batch(&encode_write_batch(&from, &entries)), Ok((from, entries)));
            }
        }
        5 => {
            if let Ok(message) = decode_gossip(body) {
                assert_eq!(decode_gossip(&encode_gossip(&message)), Ok(message));
            }
        }
        6 => {
            if let Ok(request) = decode_handoff_request(body) {
                assert_eq!(decode_handoff_request(&encode_handoff_request(&request)), Ok(request));
            }
        }
        7 => {
            if let Ok(reply) = decode_handoff_reply(body) {
                assert_eq!(decode_handoff_reply(&encode_handoff_reply(&reply)), Ok(reply));
            }
        }
        _ => {
            if let Ok(answers) = decode_answers(body) {
                assert_eq!(decode_answers(&encode_answers(&answers)), Ok(answers));
            }
        }
    }
});
