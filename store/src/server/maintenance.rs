//! The Maintenance service. Every RPC but Downgrade is served; Downgrade answers
//! `Unimplemented` (listed in docs/compatibility.md), never a fake success.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::etcdserverpb::maintenance_server::Maintenance;
use cairn_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use super::errors::EtcdError;
use crate::node::Node;
use crate::raft::snapshot::{read_full, ImageFile};
use crate::raft::{Command, CommandResult};
use cairn_proto::etcdserverpb::alarm_request::AlarmAction;
use cairn_proto::etcdserverpb::AlarmType;
use sha2::{Digest, Sha256};

/// The etcd API version cairn-store speaks; clients gate features on it.
pub const ETCD_VERSION: &str = "3.5.0";

/// Snapshot stream chunk size (etcd's).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// A sink that only checksums what is written to it.
struct CrcWriter(crc32fast::Hasher);

impl std::io::Write for CrcWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct MaintenanceService {
    pub node: Arc<Node>,
    pub quota_bytes: i64,
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "Maintenance.{rpc} is not implemented by cairn-store yet"
    ))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// Lists alarms (GET: from this member's replicated view, filtered by member and type
    /// as etcd does), or raises/clears one through the log.
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let req = request.into_inner();
        let node = &self.node;
        if req.action == AlarmAction::Get as i32 {
            let alarms = node
                .alarms
                .list()
                .into_iter()
                .filter(|a| req.member_id == 0 || a.member_id == req.member_id)
                .filter(|a| req.alarm == AlarmType::None as i32 || a.alarm == req.alarm)
                .collect();
            return Ok(Response::new(AlarmResponse {
                header: Some(node.header(node.mvcc.current_revision())),
                alarms,
            }));
        }
        match node.propose(Command::Alarm(req)).await? {
            CommandResult::Alarm(mut resp) => {
                resp.header = Some(node.header(node.mvcc.current_revision()));
                Ok(Response::new(resp))
            }
            CommandResult::Err(e) => Err(e.into()),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let node = &self.node;
        // The in-use measurement reads every page of the last commit: off the runtime threads.
        let mvcc = node.mvcc.clone();
        let (size, in_use) = tokio::task::spawn_blocking(move || {
            let size = mvcc.size_bytes()?;
            Ok::<_, cairn_mvcc::MvccError>((size, mvcc.size_in_use(Duration::ZERO)?))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(EtcdError::from)?;
        let (leader, raft_index, raft_term, applied, is_learner) = node.with_metrics(|m| {
            let is_learner = m
                .membership_config
                .membership()
                .learner_ids()
                .any(|id| id == node.id);
            (
                m.current_leader.unwrap_or(0),
                m.last_log_index.unwrap_or(0),
                m.current_term,
                m.last_applied.as_ref().map_or(0, |l| l.index),
                is_learner,
            )
        });
        Ok(Response::new(StatusResponse {
            header: Some(node.header(node.mvcc.current_revision())),
            version: ETCD_VERSION.to_string(),
            db_size: size as i64,
            leader,
            raft_index,
            raft_term,
            raft_applied_index: applied,
            errors: node
                .alarms
                .list()
                .iter()
                .map(|a| {
                    let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
                    format!("memberID:{} alarm:{name} ", a.member_id)
                })
                .collect(),
            db_size_in_use: in_use as i64,
            is_learner,
            storage_version: String::new(),
            db_size_quota: self.quota_bytes,
            downgrade_info: None,
        }))
    }

    /// Defragments this member's backend (not the cluster's: etcdctl's `--cluster` asks every
    /// member). Its writes pause meanwhile; reads go on. See `crate::defrag`.
    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let node = &self.node;
        crate::defrag::defragment(&node.apply_gate, node.mvcc.clone(), node.metrics.clone())
            .await?;
        Ok(Response::new(DefragmentResponse {
            header: Some(node.header(node.mvcc.current_revision())),
        }))
    }

    /// A checksum of this member's whole state machine image (data, leases and meta), equal
    /// on members that applied the same log prefix.
    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        // The image is hashed as it is written, never held in memory.
        let mvcc = self.node.mvcc.clone();
        let (info, hash) = tokio::task::spawn_blocking(move || {
            let mut crc = CrcWriter(crc32fast::Hasher::new());
            mvcc.write_snapshot(&mut crc)
                .map(|info| (info, crc.0.finalize()))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(EtcdError::from)?;
        Ok(Response::new(HashResponse {
            header: Some(self.node.header(info.current_revision)),
            hash,
        }))
    }

    /// etcd's consistency check: a hash of the key-value history up to a revision, served from
    /// this member's own state so members can be compared with each other.
    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        let h = self.node.mvcc.hash_kv(rev).map_err(EtcdError::from)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.node.header(h.current_revision)),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.hash_revision,
        }))
    }

    type SnapshotStream =
        Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    /// Streams a backup: a consistent image of the state machine and its SHA-256 trailer,
    /// in etcd's 32 KiB chunks with the bytes still to come.
    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        // The image goes to a temporary file beside the store and is sent from there, sealed
        // as it streams: a backup never holds the store in memory.
        let mvcc = self.node.mvcc.clone();
        let (image, info) = tokio::task::spawn_blocking(move || {
            let dir = mvcc.path().parent().map(ToOwned::to_owned);
            ImageFile::write(&mvcc, &dir.unwrap_or_else(|| ".".into()))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("writing the backup failed: {e}")))?;
        let header = self.node.header(info.current_revision);
        let len = image.len();
        let total = crate::backup::sealed_len(len);
        let reader = image
            .into_async_reader()
            .map_err(|e| Status::internal(format!("reading the backup failed: {e}")))?;
        let response = move |blob: Vec<u8>, sent: u64| SnapshotResponse {
            header: Some(header),
            remaining_bytes: total - sent,
            blob,
            version: ETCD_VERSION.to_string(),
        };
        // State: the file, the checksum so far and the bytes sent; `None` once all is sent.
        let chunks = futures::stream::unfold(
            Some((reader, Sha256::new(), 0u64)),
            move |state| async move {
                let (mut reader, mut hasher, sent) = state?;
                if sent == len {
                    let tail = crate::backup::seal_tail(len, hasher);
                    let sent = sent + tail.len() as u64;
                    return Some((Ok(response(tail, sent)), None));
                }
                let mut blob = vec![0; (len - sent).min(SNAPSHOT_CHUNK as u64) as usize];
                match read_full(&mut reader, &mut blob).await {
                    Ok(n) if n == blob.len() => {}
                    Ok(_) => {
                        let e = Status::internal("the backup image ended early");
                        return Some((Err(e), None));
                    }
                    Err(e) => {
                        let e = Status::internal(format!("reading the backup failed: {e}"));
                        return Some((Err(e), None));
                    }
                }
                hasher.update(&blob);
                let sent = sent + blob.len() as u64;
                Some((Ok(response(blob, sent)), Some((reader, hasher, sent))))
            },
        );
        Ok(Response::new(Box::pin(chunks)))
    }

    /// Hands leadership to `target_id`; answered by the leader once the target leads.
    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let node = &self.node;
        let (leader, is_voter) = node.with_metrics(|m| {
            (
                m.current_leader,
                m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|id| id == target),
            )
        });
        if leader != Some(node.id) {
            return Err(EtcdError::NotLeader.into());
        }
        if !is_voter {
            return Err(EtcdError::BadLeaderTransferee.into());
        }
        if target != node.id {
            node.raft
                .trigger()
                .transfer_leader(target)
                .await
                .map_err(|_| EtcdError::Stopped)?;
            let moved = node
                .raft
                .wait(Some(node.limits.request_timeout))
                .metrics(|m| m.current_leader == Some(target), "leader moved")
                .await;
            if moved.is_err() {
                return Err(EtcdError::LeaderTransferTimeout.into());
            }
        }
        Ok(Response::new(MoveLeaderResponse {
            header: Some(node.header(node.mvcc.current_revision())),
        }))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_yet("Downgrade"))
    }
}
