//! The byte encoding of the Raft types we persist or send to peers.
//!
//! openraft's types are encoded by hand rather than through serde so that the bytes in the log
//! are ours and documented (docs/log-format.md, "entry payload"). Every integer is little-endian;
//! strings and byte strings are `[len: u32][bytes]`; an `Option<T>` is `[0]` or `[1][T]`.
//!
//! Decoding never panics: truncated or malformed input is an [`io::Error`] of kind
//! `InvalidData`, which the log store reports as corruption.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};

use super::{
    Command, Entry, EntryPayload, LeaderId, LogId, Member, MemberId, Membership, SnapshotMeta,
    StoredMembership, TypeConfig, Vote,
};

const PAYLOAD_BLANK: u8 = 0;
const PAYLOAD_NORMAL: u8 = 1;
const PAYLOAD_MEMBERSHIP: u8 = 2;

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed {what}"))
}

/// Appends encoded values to a byte buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn strs(&mut self, v: &[String]) {
        self.u32(v.len() as u32);
        for s in v {
            self.str(s);
        }
    }
    pub fn leader_id(&mut self, l: &LeaderId) {
        self.u64(l.term);
        self.u64(l.node_id);
    }
    pub fn log_id(&mut self, id: &LogId) {
        self.leader_id(&id.leader_id);
        self.u64(id.index);
    }
    pub fn opt_log_id(&mut self, id: Option<&LogId>) {
        match id {
            None => self.u8(0),
            Some(id) => {
                self.u8(1);
                self.log_id(id);
            }
        }
    }
    pub fn vote(&mut self, v: &Vote) {
        self.leader_id(&v.leader_id);
        self.bool(v.committed);
    }
    pub fn member(&mut self, m: &Member) {
        self.str(&m.name);
        self.strs(&m.peer_urls);
        self.bool(m.voter_pending);
    }
    pub fn membership(&mut self, m: &Membership) {
        let configs = m.get_joint_config();
        self.u32(configs.len() as u32);
        for config in configs {
            self.u32(config.len() as u32);
            for id in config {
                self.u64(*id);
            }
        }
        let nodes: Vec<_> = m.nodes().collect();
        self.u32(nodes.len() as u32);
        for (id, node) in nodes {
            self.u64(*id);
            self.member(node);
        }
    }
    pub fn stored_membership(&mut self, m: &StoredMembership) {
        self.opt_log_id(m.log_id().as_ref());
        self.membership(m.membership());
    }
    pub fn entry(&mut self, e: &Entry) {
        self.log_id(&e.log_id);
        match &e.payload {
            EntryPayload::Blank => self.u8(PAYLOAD_BLANK),
            EntryPayload::Normal(cmd) => {
                self.u8(PAYLOAD_NORMAL);
                cmd.encode_to(&mut self.buf);
            }
            EntryPayload::Membership(m) => {
                self.u8(PAYLOAD_MEMBERSHIP);
                self.membership(m);
            }
        }
    }
    pub fn snapshot_meta(&mut self, m: &SnapshotMeta) {
        self.opt_log_id(m.last_log_id.as_ref());
        self.stored_membership(&m.last_membership);
    }
}

/// Reads values written by [`Writer`] from a byte slice.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(invalid("record: truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> io::Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(invalid("bool")),
        }
    }
    pub fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    pub fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    pub fn i64(&mut self) -> io::Result<i64> {
        Ok(self.u64()? as i64)
    }
    pub fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> io::Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| invalid("string"))
    }
    pub fn strings(&mut self) -> io::Result<Vec<String>> {
        let n = self.u32()? as usize;
        // Each string takes at least its 4-byte length: bound the allocation by the input.
        if n > self.buf.len() / 4 {
            return Err(invalid("string list"));
        }
        (0..n).map(|_| self.string()).collect()
    }
    pub fn leader_id(&mut self) -> io::Result<LeaderId> {
        Ok(LeaderId {
            term: self.u64()?,
            node_id: self.u64()?,
        })
    }
    pub fn log_id(&mut self) -> io::Result<LogId> {
        let leader_id = self.leader_id()?;
        Ok(LogId::new(leader_id, self.u64()?))
    }
    pub fn opt_log_id(&mut self) -> io::Result<Option<LogId>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.log_id()?)),
            _ => Err(invalid("optional log id")),
        }
    }
    pub fn vote(&mut self) -> io::Result<Vote> {
        let leader_id = self.leader_id()?;
        let committed = self.bool()?;
        Ok(Vote {
            leader_id,
            committed,
        })
    }
    pub fn member(&mut self) -> io::Result<Member> {
        Ok(Member {
            name: self.string()?,
            peer_urls: self.strings()?,
            voter_pending: self.bool()?,
        })
    }
    pub fn membership(&mut self) -> io::Result<Membership> {
        let n = self.u32()? as usize;
        if n > self.buf.len() / 4 {
            return Err(invalid("membership"));
        }
        let mut configs = Vec::with_capacity(n);
        for _ in 0..n {
            let m = self.u32()? as usize;
            if m > self.buf.len() / 8 {
                return Err(invalid("membership"));
            }
            let mut set = BTreeSet::new();
            for _ in 0..m {
                set.insert(self.u64()?);
            }
            configs.push(set);
        }
        let n = self.u32()? as usize;
        let mut nodes = BTreeMap::new();
        for _ in 0..n {
            let id: MemberId = self.u64()?;
            nodes.insert(id, self.member()?);
        }
        if configs.is_empty() {
            return Ok(Membership::default());
        }
        Membership::new(configs, nodes).map_err(|_| invalid("membership"))
    }
    pub fn stored_membership(&mut self) -> io::Result<StoredMembership> {
        let log_id = self.opt_log_id()?;
        Ok(StoredMembership::new(log_id, self.membership()?))
    }
    /// Decodes one entry; the entry must span the rest of the input.
    pub fn entry(&mut self) -> io::Result<Entry> {
        let log_id = self.log_id()?;
        let payload = match self.u8()? {
            PAYLOAD_BLANK => EntryPayload::Blank,
            PAYLOAD_NORMAL => {
                let cmd = Command::decode(self.buf)?;
                self.buf = &[];
                EntryPayload::Normal(cmd)
            }
            PAYLOAD_MEMBERSHIP => EntryPayload::Membership(self.membership()?),
            _ => return Err(invalid("entry payload kind")),
        };
        Ok(Entry { log_id, payload })
    }
    pub fn snapshot_meta(&mut self) -> io::Result<SnapshotMeta> {
        Ok(SnapshotMeta {
            last_log_id: self.opt_log_id()?,
            last_membership: self.stored_membership()?,
        })
    }
}

/// Encodes one entry into a fresh buffer (the log record payload).
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.entry(e);
    w.buf
}

pub fn decode_entry(buf: &[u8]) -> io::Result<Entry> {
    Reader::new(buf).entry()
}

pub fn encode_vote(v: &Vote) -> Vec<u8> {
    let mut w = Writer::default();
    w.vote(v);
    w.buf
}

pub fn decode_vote(buf: &[u8]) -> io::Result<Vote> {
    Reader::new(buf).vote()
}

pub fn encode_opt_log_id(id: Option<&LogId>) -> Vec<u8> {
    let mut w = Writer::default();
    w.opt_log_id(id);
    w.buf
}

pub fn decode_opt_log_id(buf: &[u8]) -> io::Result<Option<LogId>> {
    Reader::new(buf).opt_log_id()
}

pub fn encode_append_request(req: &AppendEntriesRequest<TypeConfig>) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + req.entries.len() * 64);
    w.vote(&req.vote);
    w.opt_log_id(req.prev_log_id.as_ref());
    w.opt_log_id(req.leader_commit.as_ref());
    w.u32(req.entries.len() as u32);
    let mut entry = Writer::default();
    for e in &req.entries {
        entry.buf.clear();
        entry.entry(e);
        w.bytes(&entry.buf);
    }
    w.buf
}

pub fn decode_append_request(buf: &[u8]) -> io::Result<AppendEntriesRequest<TypeConfig>> {
    let mut r = Reader::new(buf);
    let vote = r.vote()?;
    let prev_log_id = r.opt_log_id()?;
    let leader_commit = r.opt_log_id()?;
    let n = r.u32()? as usize;
    if n > buf.len() / 4 {
        return Err(invalid("append entries"));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(decode_entry(r.bytes()?)?);
    }
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit,
    })
}

pub fn encode_append_response(resp: &AppendEntriesResponse<TypeConfig>) -> Vec<u8> {
    let mut w = Writer::default();
    match resp {
        AppendEntriesResponse::Success => w.u8(0),
        AppendEntriesResponse::PartialSuccess(id) => {
            w.u8(1);
            w.opt_log_id(id.as_ref());
        }
        AppendEntriesResponse::Conflict => w.u8(2),
        AppendEntriesResponse::HigherVote(v) => {
            w.u8(3);
            w.vote(v);
        }
    }
    w.buf
}

pub fn decode_append_response(buf: &[u8]) -> io::Result<AppendEntriesResponse<TypeConfig>> {
    let mut r = Reader::new(buf);
    Ok(match r.u8()? {
        0 => AppendEntriesResponse::Success,
        1 => AppendEntriesResponse::PartialSuccess(r.opt_log_id()?),
        2 => AppendEntriesResponse::Conflict,
        3 => AppendEntriesResponse::HigherVote(r.vote()?),
        _ => return Err(invalid("append entries response")),
    })
}

pub fn encode_vote_request(req: &VoteRequest<TypeConfig>) -> Vec<u8> {
    let mut w = Writer::default();
    w.vote(&req.vote);
    w.opt_log_id(req.last_log_id.as_ref());
    w.bool(req.leadership_transfer);
    w.buf
}

pub fn decode_vote_request(buf: &[u8]) -> io::Result<VoteRequest<TypeConfig>> {
    let mut r = Reader::new(buf);
    let mut req = VoteRequest::new(r.vote()?, r.opt_log_id()?);
    req.leadership_transfer = r.bool()?;
    Ok(req)
}

pub fn encode_vote_response(resp: &VoteResponse<TypeConfig>) -> Vec<u8> {
    let mut w = Writer::default();
    w.vote(&resp.vote);
    w.bool(resp.vote_granted);
    w.opt_log_id(resp.last_log_id.as_ref());
    w.buf
}

pub fn decode_vote_response(buf: &[u8]) -> io::Result<VoteResponse<TypeConfig>> {
    let mut r = Reader::new(buf);
    let vote = r.vote()?;
    let granted = r.bool()?;
    let last = r.opt_log_id()?;
    Ok(VoteResponse::new(vote, last, granted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::etcdserverpb::PutRequest;

    fn lid(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(
            LeaderId {
                term,
                node_id: node,
            },
            index,
        )
    }

    #[test]
    fn entries_round_trip() {
        let nodes: BTreeMap<u64, Member> = [
            (
                1,
                Member {
                    name: "a".into(),
                    peer_urls: vec!["http://127.0.0.1:2380".into()],
                    voter_pending: true,
                },
            ),
            (2, Member::default()),
        ]
        .into();
        let membership = Membership::new(vec![[1, 2].into()], nodes).unwrap();
        let entries = [
            Entry {
                log_id: lid(1, 1, 1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: lid(3, 2, 7),
                payload: EntryPayload::Membership(membership),
            },
            Entry {
                log_id: lid(3, 2, 8),
                payload: EntryPayload::Normal(Command::Kv(cairn_mvcc::Command::Put(PutRequest {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                }))),
            },
        ];
        for e in &entries {
            let bytes = encode_entry(e);
            assert_eq!(&decode_entry(&bytes).unwrap(), e);
            // Every strict prefix is rejected, never misread.
            for cut in 0..bytes.len() {
                if let Ok(d) = decode_entry(&bytes[..cut]) {
                    assert_ne!(&d, e, "prefix of {cut} bytes decoded as the whole entry");
                }
            }
        }
    }

    #[test]
    fn append_request_round_trip() {
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: Vote {
                leader_id: LeaderId {
                    term: 4,
                    node_id: 9,
                },
                committed: true,
            },
            prev_log_id: Some(lid(4, 9, 10)),
            entries: vec![Entry {
                log_id: lid(4, 9, 11),
                payload: EntryPayload::Blank,
            }],
            leader_commit: None,
        };
        let got = decode_append_request(&encode_append_request(&req)).unwrap();
        assert_eq!(got.vote, req.vote);
        assert_eq!(got.prev_log_id, req.prev_log_id);
        assert_eq!(got.entries, req.entries);
        assert_eq!(got.leader_commit, req.leader_commit);
    }
}
