//! What a normal Raft entry carries ([`Command`]) and what applying it returns
//! ([`CommandResult`]), with their byte encodings.
//!
//! A command is `[tag: u8][body]`, where the body of an etcd request is its protobuf
//! encoding, so the log holds exactly what the client sent (after validation). The same
//! encodings carry forwarded writes and their results between members.
//!
//! A follower forwards a request to the leader as `[kind: u8][body]`, the kind one of the
//! `FORWARD_*` values below; for [`FORWARD_PROPOSE`] the body is an encoded [`Command`] and
//! the answer an encoded [`CommandResult`].

use std::fmt;
use std::io;

use cairn_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutResponse, TxnResponse,
};
use prost::Message;

use super::codec::{Reader, Writer};
use crate::auth_command::{AuthCommand, Caller};
use crate::errors::EtcdError;

/// Forwarded request kinds (first byte of `ForwardRequest.data`).
pub const FORWARD_PROPOSE: u8 = 1;
pub const FORWARD_READ_INDEX: u8 = 2;
/// A lease keep-alive, answered by the leader's lessor (cairn-store's `lessor::leader`).
pub const FORWARD_LEASE_KEEPALIVE: u8 = 3;
/// A lease time-to-live question, answered by the leader's lessor.
pub const FORWARD_LEASE_TIME_TO_LIVE: u8 = 4;

const PUT: u8 = 1;
const DELETE_RANGE: u8 = 2;
const TXN: u8 = 3;
const COMPACT: u8 = 4;
const LEASE_GRANT: u8 = 5;
const LEASE_REVOKE: u8 = 6;
const PUBLISH: u8 = 7;
const ALARM: u8 = 8;
const AUTH: u8 = 9;
const AS: u8 = 10;

/// A state-machine command, replicated through the Raft log.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A key-value or lease command applied by the MVCC store.
    Kv(cairn_mvcc::Command),
    /// Raise or clear a cluster alarm (etcd's Alarm activate/deactivate).
    Alarm(AlarmRequest),
    /// A member announces its name and client URLs (etcd's "publish").
    Publish {
        member_id: u64,
        name: String,
        client_urls: Vec<String>,
    },
    /// A change of the auth store, or an Authenticate (see [`crate::auth_command`]).
    Auth(AuthCommand),
    /// A client request sent while auth was enabled, with the identity the receiving member
    /// found in its token; checked again when applied. Never nested.
    As { caller: Caller, cmd: Box<Command> },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Kv(c) => write!(f, "{}", kv_name(c)),
            Command::Publish { member_id, .. } => write!(f, "publish({member_id:x})"),
            Command::Alarm(r) => write!(f, "alarm({}, {:x}, {})", r.action, r.member_id, r.alarm),
            Command::Auth(a) => write!(f, "{}", a.name()),
            Command::As { caller, cmd } => write!(f, "{cmd} as {:?}", caller.user),
        }
    }
}

fn kv_name(c: &cairn_mvcc::Command) -> &'static str {
    use cairn_mvcc::Command as C;
    match c {
        C::Put(_) => "put",
        C::DeleteRange(_) => "delete_range",
        C::Txn(_) => "txn",
        C::Compact(_) => "compact",
        C::LeaseGrant { .. } => "lease_grant",
        C::LeaseRevoke { .. } => "lease_revoke",
    }
}

impl Command {
    /// This command sent by `caller` (`None`: auth was disabled when it arrived).
    pub fn by(self, caller: Option<Caller>) -> Command {
        match caller {
            None => self,
            Some(caller) => Command::As {
                caller,
                cmd: Box::new(self),
            },
        }
    }

    pub fn encode_to(&self, buf: &mut Vec<u8>) {
        use cairn_mvcc::Command as C;
        match self {
            Command::Kv(C::Put(r)) => encode_msg(buf, PUT, r),
            Command::Kv(C::DeleteRange(r)) => encode_msg(buf, DELETE_RANGE, r),
            Command::Kv(C::Txn(r)) => encode_msg(buf, TXN, r),
            Command::Kv(C::Compact(r)) => encode_msg(buf, COMPACT, r),
            Command::Kv(C::LeaseGrant { id, ttl }) => {
                encode_msg(buf, LEASE_GRANT, &LeaseGrantRequest { ttl: *ttl, id: *id })
            }
            Command::Kv(C::LeaseRevoke { id }) => {
                encode_msg(buf, LEASE_REVOKE, &LeaseRevokeRequest { id: *id })
            }
            Command::Alarm(r) => encode_msg(buf, ALARM, r),
            Command::Publish {
                member_id,
                name,
                client_urls,
            } => {
                let mut w = Writer::default();
                w.u8(PUBLISH);
                w.u64(*member_id);
                w.str(name);
                w.strs(client_urls);
                buf.extend_from_slice(&w.buf);
            }
            Command::Auth(a) => {
                let mut w = Writer::default();
                w.u8(AUTH);
                a.encode_to(&mut w);
                buf.extend_from_slice(&w.buf);
            }
            Command::As { caller, cmd } => {
                let mut w = Writer::default();
                w.u8(AS);
                caller.encode_to(&mut w);
                buf.extend_from_slice(&w.buf);
                cmd.encode_to(buf);
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_to(&mut buf);
        buf
    }

    pub fn decode(buf: &[u8]) -> io::Result<Self> {
        use cairn_mvcc::Command as C;
        let (&tag, body) = buf.split_first().ok_or_else(|| bad("empty command"))?;
        Ok(match tag {
            PUT => Command::Kv(C::Put(decode_msg(body)?)),
            DELETE_RANGE => Command::Kv(C::DeleteRange(decode_msg(body)?)),
            TXN => Command::Kv(C::Txn(decode_msg(body)?)),
            COMPACT => Command::Kv(C::Compact(decode_msg(body)?)),
            LEASE_GRANT => {
                let r: LeaseGrantRequest = decode_msg(body)?;
                Command::Kv(C::LeaseGrant {
                    id: r.id,
                    ttl: r.ttl,
                })
            }
            LEASE_REVOKE => {
                let r: LeaseRevokeRequest = decode_msg(body)?;
                Command::Kv(C::LeaseRevoke { id: r.id })
            }
            ALARM => Command::Alarm(decode_msg(body)?),
            PUBLISH => {
                let mut r = Reader::new(body);
                Command::Publish {
                    member_id: r.u64()?,
                    name: r.string()?,
                    client_urls: r.strings()?,
                }
            }
            AUTH => {
                let mut r = Reader::new(body);
                let a = AuthCommand::decode(&mut r)?;
                if !r.is_empty() {
                    return Err(bad("trailing bytes after an auth command"));
                }
                Command::Auth(a)
            }
            AS => {
                let mut r = Reader::new(body);
                let caller = Caller::decode(&mut r)?;
                let cmd = Command::decode(r.rest())?;
                if matches!(cmd, Command::As { .. }) {
                    return Err(bad("nested caller"));
                }
                Command::As {
                    caller,
                    cmd: Box::new(cmd),
                }
            }
            _ => return Err(bad("unknown command tag")),
        })
    }
}

/// The outcome of applying one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandResult {
    /// A blank or membership entry, or a publish: nothing to report.
    None,
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
    /// An auth command applied; `token` is the issued token of an Authenticate, else empty.
    Auth {
        token: String,
    },
    /// The command was refused by the state machine; it changed nothing.
    Err(EtcdError),
}

const R_NONE: u8 = 0;
const R_ERR: u8 = 255;

impl CommandResult {
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        match self {
            CommandResult::None => buf.push(R_NONE),
            CommandResult::Put(r) => encode_msg(&mut buf, PUT, r),
            CommandResult::DeleteRange(r) => encode_msg(&mut buf, DELETE_RANGE, r),
            CommandResult::Txn(r) => encode_msg(&mut buf, TXN, r),
            CommandResult::Compact(r) => encode_msg(&mut buf, COMPACT, r),
            CommandResult::LeaseGrant(r) => encode_msg(&mut buf, LEASE_GRANT, r),
            CommandResult::LeaseRevoke(r) => encode_msg(&mut buf, LEASE_REVOKE, r),
            CommandResult::Alarm(r) => encode_msg(&mut buf, ALARM, r),
            CommandResult::Auth { token } => {
                buf.push(AUTH);
                buf.extend_from_slice(token.as_bytes());
            }
            CommandResult::Err(e) => encode_error(&mut buf, e),
        }
        buf
    }

    pub fn decode(buf: &[u8]) -> io::Result<Self> {
        let (&tag, body) = buf.split_first().ok_or_else(|| bad("empty result"))?;
        Ok(match tag {
            R_NONE => CommandResult::None,
            PUT => CommandResult::Put(decode_msg(body)?),
            DELETE_RANGE => CommandResult::DeleteRange(decode_msg(body)?),
            TXN => CommandResult::Txn(decode_msg(body)?),
            COMPACT => CommandResult::Compact(decode_msg(body)?),
            LEASE_GRANT => CommandResult::LeaseGrant(decode_msg(body)?),
            LEASE_REVOKE => CommandResult::LeaseRevoke(decode_msg(body)?),
            ALARM => CommandResult::Alarm(decode_msg(body)?),
            AUTH => CommandResult::Auth {
                token: String::from_utf8(body.to_vec()).map_err(|_| bad("token"))?,
            },
            R_ERR => CommandResult::Err(decode_error(body)?),
            _ => return Err(bad("unknown result tag")),
        })
    }
}

/// `[255][error tag][detail]`: an error carried between members.
pub fn encode_error(buf: &mut Vec<u8>, e: &EtcdError) {
    buf.push(R_ERR);
    buf.push(e.tag());
    if let EtcdError::Internal(detail) = e {
        buf.extend_from_slice(detail.as_bytes());
    }
}

fn decode_error(body: &[u8]) -> io::Result<EtcdError> {
    let (&tag, detail) = body.split_first().ok_or_else(|| bad("empty error"))?;
    Ok(EtcdError::from_tag(
        tag,
        String::from_utf8_lossy(detail).into_owned(),
    ))
}

fn encode_msg<M: Message>(buf: &mut Vec<u8>, tag: u8, m: &M) {
    buf.reserve(1 + m.encoded_len());
    buf.push(tag);
    m.encode(buf).expect("a Vec grows as needed");
}

fn decode_msg<M: Message + Default>(body: &[u8]) -> io::Result<M> {
    M::decode(body).map_err(|e| bad(&format!("protobuf: {e}")))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed command: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::etcdserverpb::{PutRequest, ResponseHeader};

    #[test]
    fn commands_round_trip() {
        let cmds = [
            Command::Kv(cairn_mvcc::Command::Put(PutRequest {
                key: b"a".to_vec(),
                value: b"b".to_vec(),
                lease: 7,
                prev_kv: true,
                ..Default::default()
            })),
            Command::Kv(cairn_mvcc::Command::LeaseGrant { id: 5, ttl: 60 }),
            Command::Publish {
                member_id: 42,
                name: "m1".into(),
                client_urls: vec!["http://127.0.0.1:2379".into()],
            },
            Command::Auth(AuthCommand::RoleAdd { name: "r".into() }),
            Command::Kv(cairn_mvcc::Command::LeaseRevoke { id: 3 }).by(Some(Caller {
                user: "alice".into(),
                revision: 9,
            })),
        ];
        for c in cmds {
            assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        }
        assert!(Command::decode(&[]).is_err());
        assert!(Command::decode(&[99]).is_err());
        let twice = Command::Auth(AuthCommand::Enable)
            .by(Some(Caller::anonymous()))
            .by(Some(Caller::anonymous()));
        assert!(
            Command::decode(&twice.encode()).is_err(),
            "a caller is never nested"
        );
    }

    #[test]
    fn results_round_trip() {
        let results = [
            CommandResult::None,
            CommandResult::Put(PutResponse {
                header: Some(ResponseHeader {
                    revision: 9,
                    ..Default::default()
                }),
                prev_kv: None,
            }),
            CommandResult::Err(EtcdError::LeaseNotFound),
            CommandResult::Auth {
                token: "abc.12".into(),
            },
            CommandResult::Err(EtcdError::AuthOldRevision),
            CommandResult::Err(EtcdError::Internal("disk full".into())),
        ];
        for r in results {
            assert_eq!(CommandResult::decode(&r.encode()).unwrap(), r);
        }
    }
}
