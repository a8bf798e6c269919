//! Membership changes (etcd's Cluster service) on top of openraft's joint consensus.
//!
//! Every change runs on the leader; any other member forwards the encoded request over the
//! peer `Forward` RPC and relays the leader's encoded response, so `etcdctl member ...` works
//! against any endpoint.
//!
//! etcd commits a configuration change with the OLD quorum, so `member add` of a voter returns
//! at once even though the new member is not running yet. Joint consensus would need the new
//! member to acknowledge first, so a voter is added as a learner marked `voter_pending`, and
//! the leader's [`promote_caught_up`] loop makes it a voter once it has caught up. Until then
//! it is listed as a voter, as etcd lists it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_proto::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use prost::Message;

use super::errors::EtcdError;
use super::identity;
use crate::config::parse_url;
use crate::node::Node;
use crate::raft::command::encode_error;
use crate::raft::state_machine::published_member;
use crate::raft::{Member, MemberId};

/// Forwarded request kind: a membership change (`[kind][op][protobuf request]`).
pub const FORWARD_MEMBERSHIP: u8 = 10;
/// Forwarded request kind: the member list and cluster id, asked by a joining member.
pub const FORWARD_MEMBERS: u8 = 11;

const OP_ADD: u8 = 1;
const OP_REMOVE: u8 = 2;
const OP_UPDATE: u8 = 3;
const OP_PROMOTE: u8 = 4;

/// A learner is "in sync" when it trails the leader's log by at most this much (etcd uses
/// 90% of the leader's progress; a fixed window behaves the same for a fresh learner).
const IN_SYNC_WINDOW: u64 = 1000;

/// Every member of the current configuration, in id order, as etcd lists them.
pub fn members(node: &Node) -> Vec<PbMember> {
    let membership = node.with_metrics(|m| m.membership_config.clone());
    let learners: BTreeSet<u64> = membership.membership().learner_ids().collect();
    membership
        .nodes()
        .map(|(id, m)| {
            // A member that has not published yet shows the name it was configured with and
            // no client URLs, as etcd lists unstarted members.
            let (name, client_urls) =
                published_member(&node.mvcc, *id).unwrap_or_else(|| (m.name.clone(), vec![]));
            PbMember {
                id: *id,
                name,
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: client_urls,
                is_learner: learners.contains(id) && !m.voter_pending,
            }
        })
        .collect()
}

fn check_urls(urls: &[String]) -> Result<(), EtcdError> {
    if urls.is_empty() || urls.iter().any(|u| parse_url(u).is_err()) {
        return Err(EtcdError::MemberBadUrls);
    }
    Ok(())
}

fn write_error(
    e: RaftError<crate::raft::TypeConfig, ClientWriteError<crate::raft::TypeConfig>>,
) -> EtcdError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => EtcdError::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            EtcdError::Internal(format!("membership change refused: {e}"))
        }
        RaftError::APIError(e) => EtcdError::Internal(e.to_string()),
        RaftError::Fatal(_) => EtcdError::Stopped,
    }
}

type WriteResult<T> =
    Result<T, RaftError<crate::raft::TypeConfig, ClientWriteError<crate::raft::TypeConfig>>>;

/// Runs one membership change, waiting while an earlier one is still being committed (such
/// as the leader's promotion of a caught-up member, two joint-consensus entries): etcd applies
/// configuration changes one after another, so a client never sees "already undergoing a
/// configuration change". Gives up after the request timeout.
async fn one_at_a_time<T, F, Fut>(node: &Node, change: F) -> Result<T, EtcdError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = WriteResult<T>>,
{
    let deadline = tokio::time::Instant::now() + node.limits.request_timeout;
    loop {
        match change().await {
            Ok(done) => return Ok(done),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(write_error(e)),
        }
    }
}

/// Runs a membership change here if this member leads, else on the leader.
async fn run(node: &Node, op: u8, request: Vec<u8>) -> Result<Vec<u8>, EtcdError> {
    let mut data = Vec::with_capacity(request.len() + 2);
    data.push(FORWARD_MEMBERSHIP);
    data.push(op);
    data.extend_from_slice(&request);
    let deadline = tokio::time::Instant::now() + node.limits.request_timeout;
    loop {
        match node.forward_to_leader(data.clone()).await {
            Ok(None) => return execute(node, op, &request).await,
            Ok(Some(answer)) => return decode_answer(&answer),
            Err(e) => {
                if tokio::time::Instant::now() >= deadline {
                    tracing::debug!("membership change: no leader: {e}");
                    return Err(EtcdError::Timeout);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The leader's side of a forwarded membership request.
pub async fn handle_forwarded(node: &Node, body: &[u8]) -> Vec<u8> {
    let result = match body.split_first() {
        Some((&op, request)) => execute(node, op, request).await,
        None => Err(EtcdError::Internal("empty membership request".into())),
    };
    encode_answer(result)
}

fn encode_answer(result: Result<Vec<u8>, EtcdError>) -> Vec<u8> {
    match result {
        Ok(bytes) => {
            let mut out = Vec::with_capacity(bytes.len() + 1);
            out.push(0);
            out.extend_from_slice(&bytes);
            out
        }
        Err(e) => {
            let mut out = Vec::new();
            encode_error(&mut out, &e);
            out
        }
    }
}

fn decode_answer(answer: &[u8]) -> Result<Vec<u8>, EtcdError> {
    match answer.split_first() {
        Some((0, bytes)) => Ok(bytes.to_vec()),
        _ => match crate::raft::CommandResult::decode(answer) {
            Ok(crate::raft::CommandResult::Err(e)) => Err(e),
            _ => Err(EtcdError::Internal("malformed membership answer".into())),
        },
    }
}

fn bad(e: prost::DecodeError) -> EtcdError {
    EtcdError::Internal(format!("malformed membership request: {e}"))
}

async fn execute(node: &Node, op: u8, request: &[u8]) -> Result<Vec<u8>, EtcdError> {
    if node.raft.as_leader().is_err() {
        return Err(EtcdError::NotLeader);
    }
    let header = || Some(node.header(node.mvcc.current_revision()));
    match op {
        OP_ADD => {
            let req = MemberAddRequest::decode(request).map_err(bad)?;
            let added = add(node, req).await?;
            Ok(MemberAddResponse {
                header: header(),
                member: Some(added),
                members: members(node),
            }
            .encode_to_vec())
        }
        OP_REMOVE => {
            let req = MemberRemoveRequest::decode(request).map_err(bad)?;
            remove(node, req.id).await?;
            Ok(MemberRemoveResponse {
                header: header(),
                members: members(node),
            }
            .encode_to_vec())
        }
        OP_UPDATE => {
            let req = MemberUpdateRequest::decode(request).map_err(bad)?;
            update(node, req.id, req.peer_ur_ls).await?;
            Ok(MemberUpdateResponse {
                header: header(),
                members: members(node),
            }
            .encode_to_vec())
        }
        OP_PROMOTE => {
            let req = MemberPromoteRequest::decode(request).map_err(bad)?;
            promote(node, req.id).await?;
            Ok(MemberPromoteResponse {
                header: header(),
                members: members(node),
            }
            .encode_to_vec())
        }
        _ => Err(EtcdError::Internal(format!("unknown membership op {op}"))),
    }
}

async fn add(node: &Node, req: MemberAddRequest) -> Result<PbMember, EtcdError> {
    check_urls(&req.peer_ur_ls)?;
    let membership = node.with_metrics(|m| m.membership_config.clone());
    let taken = membership
        .nodes()
        .any(|(_, m)| m.peer_urls.iter().any(|u| req.peer_ur_ls.contains(u)));
    if taken {
        return Err(EtcdError::PeerUrlExist);
    }
    // Like etcd, the time goes into the id so that re-adding the same URLs gives a new member.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string();
    let id = identity::member_id(&req.peer_ur_ls, &now);
    if membership.nodes().any(|(nid, _)| *nid == id) {
        return Err(EtcdError::MemberExist);
    }
    let member = Member {
        name: String::new(),
        peer_urls: req.peer_ur_ls.clone(),
        voter_pending: !req.is_learner,
    };
    one_at_a_time(node, || node.raft.add_learner(id, member.clone(), false)).await?;
    Ok(PbMember {
        id,
        name: String::new(),
        peer_ur_ls: req.peer_ur_ls,
        client_ur_ls: vec![],
        is_learner: req.is_learner,
    })
}

async fn remove(node: &Node, id: MemberId) -> Result<(), EtcdError> {
    let membership = node.with_metrics(|m| m.membership_config.clone());
    if !membership.nodes().any(|(nid, _)| *nid == id) {
        return Err(EtcdError::MemberNotFound);
    }
    let is_voter = membership.membership().voter_ids().any(|v| v == id);
    let change: ChangeMembers<MemberId, Member> = if is_voter {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    one_at_a_time(node, || node.raft.change_membership(change.clone(), false)).await?;
    Ok(())
}

async fn update(node: &Node, id: MemberId, peer_urls: Vec<String>) -> Result<(), EtcdError> {
    check_urls(&peer_urls)?;
    let membership = node.with_metrics(|m| m.membership_config.clone());
    let Some(current) = membership.get_node(&id).cloned() else {
        return Err(EtcdError::MemberNotFound);
    };
    let taken = membership
        .nodes()
        .any(|(nid, m)| *nid != id && m.peer_urls.iter().any(|u| peer_urls.contains(u)));
    if taken {
        return Err(EtcdError::PeerUrlExist);
    }
    let updated = Member {
        peer_urls,
        ..current
    };
    let change = ChangeMembers::SetNodes(BTreeMap::from([(id, updated)]));
    one_at_a_time(node, || node.raft.change_membership(change.clone(), true)).await?;
    Ok(())
}

/// Whether learner `id` trails the leader by at most [`IN_SYNC_WINDOW`] entries.
fn in_sync(node: &Node, id: MemberId) -> bool {
    node.with_metrics(|m| {
        let last = m.last_log_index.unwrap_or(0);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned())
            .flatten()
            .map_or(0, |l| l.index);
        matched + IN_SYNC_WINDOW >= last && matched > 0
    })
}

async fn promote(node: &Node, id: MemberId) -> Result<(), EtcdError> {
    let membership = node.with_metrics(|m| m.membership_config.clone());
    if membership.get_node(&id).is_none() {
        return Err(EtcdError::MemberNotFound);
    }
    if membership.membership().voter_ids().any(|v| v == id) {
        return Err(EtcdError::MemberNotLearner);
    }
    if !in_sync(node, id) {
        return Err(EtcdError::LearnerNotReady);
    }
    let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
    one_at_a_time(node, || node.raft.change_membership(change.clone(), true)).await?;
    Ok(())
}

/// On the leader, turns learners added as voters into voters once they have caught up.
pub async fn promote_caught_up(
    node: std::sync::Arc<Node>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if node.raft.as_leader().is_err() {
            continue;
        }
        let membership = node.with_metrics(|m| m.membership_config.clone());
        let pending: Vec<MemberId> = membership
            .membership()
            .learner_ids()
            .filter(|id| membership.get_node(id).is_some_and(|m| m.voter_pending))
            .collect();
        for id in pending {
            if in_sync(node.as_ref(), id) {
                match promote(node.as_ref(), id).await {
                    Ok(()) => {
                        tracing::info!(member = %format!("{id:x}"), "promoted a caught-up member to voter")
                    }
                    Err(e) => tracing::debug!("promoting {id:x}: {e}"),
                }
            }
        }
    }
}

/// Answers a joining member: the cluster id, then every member's id and peer URLs.
pub fn encode_members(node: &Node) -> Vec<u8> {
    let mut w = crate::raft::codec::Writer::default();
    w.u64(node.cluster_id);
    let membership = node.with_metrics(|m| m.membership_config.clone());
    let nodes: Vec<_> = membership.nodes().collect();
    w.u32(nodes.len() as u32);
    for (id, m) in nodes {
        w.u64(*id);
        w.strs(&m.peer_urls);
    }
    w.buf
}

/// Learns this member's id and the cluster id from a running member, for
/// `--initial-cluster-state existing`: the member whose peer URLs are ours is us.
pub async fn discover_identity(
    dialer: &crate::raft::network::PeerDialer,
    peers: &[String],
    my_peer_urls: &[String],
) -> anyhow::Result<identity::Identity> {
    use cairn_proto::cairnraftpb::ForwardRequest;

    let mut last_err = String::from("no peers to ask");
    for _attempt in 0..50 {
        for url in peers {
            let probe = Member {
                name: String::new(),
                peer_urls: vec![url.clone()],
                voter_pending: false,
            };
            let mut client = match dialer.client(&probe) {
                Ok(client) => client,
                Err(e) => {
                    last_err = e;
                    continue;
                }
            };
            let answer = client
                .forward(ForwardRequest {
                    data: vec![FORWARD_MEMBERS],
                })
                .await;
            let data = match answer {
                Ok(r) => r.into_inner().data,
                Err(e) => {
                    last_err = format!("{url}: {}", e.message());
                    continue;
                }
            };
            let mut r = crate::raft::codec::Reader::new(&data);
            let cluster_id = r.u64()?;
            let n = r.u32()?;
            for _ in 0..n {
                let id = r.u64()?;
                let urls = r.strings()?;
                if urls.iter().any(|u| my_peer_urls.contains(u)) {
                    return Ok(identity::Identity {
                        member_id: id,
                        cluster_id,
                    });
                }
            }
            // A follower may not have applied the `member add` yet: ask again.
            last_err = format!(
                "the cluster at {url} has no member with peer URLs {my_peer_urls:?}; \
                 add it first with 'etcdctl member add'"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("could not learn this member's id from --initial-cluster: {last_err}")
}

/// The Cluster service's entry points for the four changes.
pub async fn member_add(
    node: &Node,
    req: MemberAddRequest,
) -> Result<MemberAddResponse, EtcdError> {
    let bytes = run(node, OP_ADD, req.encode_to_vec()).await?;
    MemberAddResponse::decode(bytes.as_slice()).map_err(bad)
}

pub async fn member_remove(
    node: &Node,
    req: MemberRemoveRequest,
) -> Result<MemberRemoveResponse, EtcdError> {
    let bytes = run(node, OP_REMOVE, req.encode_to_vec()).await?;
    MemberRemoveResponse::decode(bytes.as_slice()).map_err(bad)
}

pub async fn member_update(
    node: &Node,
    req: MemberUpdateRequest,
) -> Result<MemberUpdateResponse, EtcdError> {
    let bytes = run(node, OP_UPDATE, req.encode_to_vec()).await?;
    MemberUpdateResponse::decode(bytes.as_slice()).map_err(bad)
}

pub async fn member_promote(
    node: &Node,
    req: MemberPromoteRequest,
) -> Result<MemberPromoteResponse, EtcdError> {
    let bytes = run(node, OP_PROMOTE, req.encode_to_vec()).await?;
    MemberPromoteResponse::decode(bytes.as_slice()).map_err(bad)
}
