//! Fuzz target `peer_messages`: what a member decodes from another member before Raft sees it.
//!
//! The peer service (cairn-store's `raft::peer_service`) receives `cairnraftpb` protobufs whose
//! payloads are our own binary encodings (`cairn_wire::raft::{codec, command}`): append-entries,
//! vote and pre-vote requests, snapshot stream headers, leadership transfers, forwarded
//! commands, and the answers to each of these a member decodes on the way back. Bytes from the peer port are
//! input: a broken or hostile peer must get an error, never crash the member.
//!
//! Checks: never a panic; every message that decodes re-encodes to bytes that decode to the
//! same message and re-encode to themselves (a canonical form, so what a leader sends is what a
//! follower reads); a forwarded command or its result decodes to the value it was encoded from.

#![no_main]

use arbitrary::Arbitrary;
use cairn_proto::cairnraftpb::{ForwardRequest, ForwardResponse, RaftMessage, SnapshotChunk};
use cairn_wire::raft::codec::{self, Reader, Writer};
use cairn_wire::raft::command::{Command, CommandResult, FORWARD_PROPOSE};
use libfuzzer_sys::fuzz_target;
use prost::Message;

#[derive(Arbitrary, Debug)]
enum Input {
    /// A `RaftMessage` / `SnapshotChunk` / `ForwardRequest` / `ForwardResponse` off the wire,
    /// then its payload as what that RPC carries (`kind` picks which).
    Wire { kind: u8, bytes: Vec<u8> },
    /// A payload directly (most inputs reach deeper this way).
    Payload { kind: u8, bytes: Vec<u8> },
}

fuzz_target!(|input: Input| match input {
    Input::Wire { kind, bytes } => wire(kind, &bytes),
    Input::Payload { kind, bytes } => payload(kind, &bytes),
});

/// Decodes an outer protobuf, checks prost's round trip, and hands the payload on.
fn wire(kind: u8, bytes: &[u8]) {
    match kind % 4 {
        0 => {
            if let Ok(m) = RaftMessage::decode(bytes) {
                assert_eq!(RaftMessage::decode(&*m.encode_to_vec()).unwrap(), m);
                payload(kind / 4, &m.data);
            }
        }
        1 => {
            if let Ok(m) = SnapshotChunk::decode(bytes) {
                assert_eq!(SnapshotChunk::decode(&*m.encode_to_vec()).unwrap(), m);
                snapshot_header(&m.meta);
            }
        }
        2 => {
            if let Ok(m) = ForwardRequest::decode(bytes) {
                assert_eq!(ForwardRequest::decode(&*m.encode_to_vec()).unwrap(), m);
                forwarded(&m.data);
            }
        }
        _ => {
            if let Ok(m) = ForwardResponse::decode(bytes) {
                assert_eq!(ForwardResponse::decode(&*m.encode_to_vec()).unwrap(), m);
                result(&m.data);
            }
        }
    }
}

fn payload(kind: u8, bytes: &[u8]) {
    match kind % 10 {
        0 => canonical(bytes, codec::decode_append_request, |r| {
            codec::encode_append_request(r)
        }),
        1 => canonical(bytes, codec::decode_append_response, |r| {
            codec::encode_append_response(r)
        }),
        // Vote and pre-vote requests share the encoding.
        2 => canonical(bytes, codec::decode_vote_request, |r| {
            codec::encode_vote_request(r)
        }),
        3 => canonical(bytes, codec::decode_vote_response, |r| {
            codec::encode_vote_response(r)
        }),
        4 => canonical(bytes, codec::decode_entry, codec::encode_entry),
        5 => canonical(bytes, codec::decode_vote, codec::encode_vote),
        6 => snapshot_header(bytes),
        7 => transfer_leader(bytes),
        8 => forwarded(bytes),
        _ => result(bytes),
    }
}

/// `decode` never panics; what it accepts has a canonical encoding that is a fixed point.
fn canonical<T>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> std::io::Result<T>,
    encode: impl Fn(&T) -> Vec<u8>,
) {
    let Ok(value) = decode(bytes) else { return };
    let once = encode(&value);
    let again = decode(&once).expect("a re-encoded message decodes");
    assert_eq!(encode(&again), once, "re-encoding is not stable");
}

/// A snapshot stream's first chunk: the sender's vote, then the snapshot's metadata.
fn snapshot_header(bytes: &[u8]) {
    let read = |b: &[u8]| -> std::io::Result<_> {
        let mut r = Reader::new(b);
        Ok((r.vote()?, r.snapshot_meta()?))
    };
    canonical(bytes, read, |(vote, meta)| {
        let mut w = Writer::default();
        w.vote(vote);
        w.snapshot_meta(meta);
        w.buf.clone()
    });
}

/// A leadership transfer: the sender's vote, the target, the sender's last log id.
fn transfer_leader(bytes: &[u8]) {
    let read = |b: &[u8]| -> std::io::Result<_> {
        let mut r = Reader::new(b);
        Ok((r.vote()?, r.u64()?, r.opt_log_id()?))
    };
    canonical(bytes, read, |(vote, to, last)| {
        let mut w = Writer::default();
        w.vote(vote);
        w.u64(*to);
        w.opt_log_id(last.as_ref());
        w.buf.clone()
    });
}

/// A forwarded request: a kind byte, then for a proposal the command itself.
fn forwarded(bytes: &[u8]) {
    if let Some((&FORWARD_PROPOSE, body)) = bytes.split_first() {
        if let Ok(cmd) = Command::decode(body) {
            let again = Command::decode(&cmd.encode()).expect("a re-encoded command decodes");
            assert_eq!(again, cmd);
        }
    }
}

/// A forwarded request's answer, as the follower decodes it.
fn result(bytes: &[u8]) {
    if let Ok(r) = CommandResult::decode(bytes) {
        let again = CommandResult::decode(&r.encode()).expect("a re-encoded result decodes");
        assert_eq!(again, r);
    }
}
