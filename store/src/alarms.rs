//! Cluster alarms (etcd's NOSPACE and CORRUPT), replicated through the log.
//!
//! The set of raised alarms is part of the replicated state: raising or clearing one is a
//! [`Command::Alarm`](crate::raft::Command) applied by every member, stored in the state
//! machine's meta in the same transaction, and mirrored here in memory for the request path.
//!
//! While NOSPACE is raised the store only shrinks: puts, txns that put and lease grants are
//! refused with "database space exceeded", at the API edge and again when applied (so an entry
//! proposed just before the alarm cannot slip in) — deletes, compaction and reads still work,
//! which is how an operator reclaims space before disarming.

use std::sync::RwLock;

use cairn_proto::etcdserverpb::{request_op, AlarmMember, AlarmType, RequestOp, TxnRequest};

use crate::raft::codec::{Reader, Writer};

/// Meta key holding the encoded alarm list.
pub const META_ALARMS: &str = "alarms";

/// The raised alarms, in (member, type) order.
#[derive(Default)]
pub struct Alarms {
    raised: RwLock<Vec<AlarmMember>>,
}

impl Alarms {
    pub fn list(&self) -> Vec<AlarmMember> {
        self.raised
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn replace(&self, alarms: Vec<AlarmMember>) {
        *self.raised.write().unwrap_or_else(|p| p.into_inner()) = alarms;
    }

    pub fn is_raised(&self, alarm: AlarmType) -> bool {
        self.raised
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|a| a.alarm == alarm as i32)
    }

    /// Applies an activate/deactivate; returns whether the set changed.
    pub fn set(&self, member_id: u64, alarm: i32, raised: bool) -> bool {
        let mut list = self.raised.write().unwrap_or_else(|p| p.into_inner());
        let pos = list
            .iter()
            .position(|a| a.member_id == member_id && a.alarm == alarm);
        match (pos, raised) {
            (None, true) => {
                list.push(AlarmMember { member_id, alarm });
                list.sort_by_key(|a| (a.member_id, a.alarm));
                true
            }
            (Some(i), false) => {
                list.remove(i);
                true
            }
            _ => false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let list = self.list();
        let mut w = Writer::default();
        w.u32(list.len() as u32);
        for a in &list {
            w.u64(a.member_id);
            w.u32(a.alarm as u32);
        }
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> std::io::Result<Vec<AlarmMember>> {
        let mut r = Reader::new(bytes);
        let n = r.u32()?;
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(AlarmMember {
                member_id: r.u64()?,
                alarm: r.u32()? as i32,
            });
        }
        Ok(out)
    }
}

/// Whether a txn would write new data (etcd charges quota for puts only).
pub fn txn_puts(txn: &TxnRequest) -> bool {
    fn any_put(ops: &[RequestOp]) -> bool {
        ops.iter().any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => txn_puts(t),
            _ => false,
        })
    }
    any_put(&txn.success) || any_put(&txn.failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_clear_and_round_trip() {
        let a = Alarms::default();
        assert!(a.set(2, AlarmType::Nospace as i32, true));
        assert!(
            !a.set(2, AlarmType::Nospace as i32, true),
            "raising twice changes nothing"
        );
        assert!(a.set(1, AlarmType::Corrupt as i32, true));
        assert!(a.is_raised(AlarmType::Nospace));
        let decoded = Alarms::decode(&a.encode()).unwrap();
        assert_eq!(decoded, a.list());
        assert_eq!(decoded[0].member_id, 1);
        assert!(a.set(2, AlarmType::Nospace as i32, false));
        assert!(!a.is_raised(AlarmType::Nospace));
    }
}
