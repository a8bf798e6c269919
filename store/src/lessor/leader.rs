//! Keep-alives and time-to-live questions, which only the leader's lessor can answer (only it
//! knows when leases expire): answered here when this member leads, otherwise forwarded to the
//! leader over the peer `Forward` RPC, retried across elections until the request timeout —
//! etcd's `LeaseRenew` / `LeaseTimeToLive`, which forward over HTTP.
//!
//! The leader re-confirms its leadership with a quorum (cheaply, within Raft's leader lease)
//! before it renews, so a deposed leader that has not yet noticed cannot extend a lease behind
//! the real leader's back (etcd issue #15247), and waits until it has applied everything
//! committed, so a lease granted in the previous term is known (etcd's `waitAppliedIndex`).

use std::time::Duration;

use cairn_proto::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use openraft::error::{LinearizableReadError, RaftError};
use openraft::LinearizerOption;
use prost::Message;
use tokio::time::Instant;

use super::schedule::RenewRefusal;
use super::Lessor;
use crate::node::{Node, FORWARD_LEASE_KEEPALIVE, FORWARD_LEASE_TIME_TO_LIVE};
use crate::raft::command::encode_error;
use crate::raft::CommandResult;
use crate::server::errors::EtcdError;

/// Pause between attempts while no leader is known or reachable (an election is under way).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Renews lease `id` on the leader and returns its TTL; `LeaseNotFound` for an unknown or
/// expired (and now revoked) lease.
pub async fn keep_alive(lessor: &Lessor, node: &Node, id: i64) -> Result<i64, EtcdError> {
    let mut req = vec![FORWARD_LEASE_KEEPALIVE];
    req.extend_from_slice(&id.to_le_bytes());
    let answer = ask_leader(node, req, || renew_here(lessor, node, id)).await?;
    let ttl: [u8; 8] = answer
        .as_slice()
        .try_into()
        .map_err(|_| EtcdError::Internal("malformed keep-alive answer".into()))?;
    Ok(i64::from_le_bytes(ttl))
}

/// Describes lease `req.id` as the leader's lessor sees it; `LeaseNotFound` if it does not exist.
pub async fn time_to_live(
    lessor: &Lessor,
    node: &Node,
    req: &LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, EtcdError> {
    let mut fwd = vec![FORWARD_LEASE_TIME_TO_LIVE];
    req.encode(&mut fwd).expect("a Vec grows as needed");
    let answer = ask_leader(node, fwd, || async {
        time_to_live_here(lessor, node, req)
            .await
            .map(|r| r.encode_to_vec())
    })
    .await?;
    LeaseTimeToLiveResponse::decode(answer.as_slice())
        .map_err(|e| EtcdError::Internal(format!("malformed time-to-live answer: {e}")))
}

/// The leader's half of a keep-alive: renew in its own lessor.
pub async fn renew_here(lessor: &Lessor, node: &Node, id: i64) -> Result<Vec<u8>, EtcdError> {
    confirm_leadership(node).await?;
    let wait = async {
        loop {
            // Subscribed before looking, so a revoke or demotion in between is not missed.
            let mut changed = lessor.subscribe();
            match lessor.with_schedule(|s| s.renew(id, Instant::now())) {
                Ok(ttl) => {
                    node.metrics
                        .leases_renewed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(ttl.to_le_bytes().to_vec());
                }
                Err(RenewRefusal::NotFound) => return Err(EtcdError::LeaseNotFound),
                // Leadership is confirmed but the lessor is not (or no longer) promoted: the
                // caller retries, here or at the new leader.
                Err(RenewRefusal::NotPrimary) => return Err(EtcdError::NotLeader),
                // Expired, revocation under way: the answer is "not found" once the revoke is
                // applied, or "ask the new leader" if leadership moves first.
                Err(RenewRefusal::Expired) => {
                    if changed.changed().await.is_err() {
                        return Err(EtcdError::Stopped);
                    }
                }
            }
        }
    };
    tokio::time::timeout(node.limits.request_timeout, wait)
        .await
        .unwrap_or(Err(EtcdError::Timeout))
}

/// The leader's half of a time-to-live question.
pub async fn time_to_live_here(
    lessor: &Lessor,
    node: &Node,
    req: &LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, EtcdError> {
    confirm_leadership(node).await?;
    let times = lessor.with_schedule(|s| {
        if s.is_primary() {
            Ok(s.lookup(req.id, Instant::now()))
        } else {
            Err(EtcdError::NotLeader)
        }
    })?;
    let times = times.ok_or(EtcdError::LeaseNotFound)?;
    let keys = if req.keys {
        lessor.mvcc().lease_keys(req.id).map_err(EtcdError::from)?
    } else {
        Vec::new()
    };
    Ok(LeaseTimeToLiveResponse {
        header: None,
        id: req.id,
        ttl: times.remaining_secs,
        granted_ttl: times.granted,
        keys,
    })
}

/// Confirms with a quorum that this member still leads, and waits until it has applied every
/// entry committed so far.
async fn confirm_leadership(node: &Node) -> Result<(), EtcdError> {
    // The common case, without a round trip to Raft's core: this term was confirmed (and
    // everything before it applied) already, and the leader lease still holds.
    if node.leads_within_lease() {
        return Ok(());
    }
    let term = node.term();
    // A quorum acknowledgement within the leader lease is enough; if the last one is older,
    // heartbeats go out at once.
    let option = LinearizerOption::new(None, true);
    match node.raft.ensure_linearizable(option).await {
        Ok(_) => {
            node.leadership_confirmed(term);
            Ok(())
        }
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => {
            Err(EtcdError::NotLeader)
        }
        Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
            Err(EtcdError::NoLeader)
        }
        Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
    }
}

/// Answers `local` when this member leads, otherwise forwards `req` to the leader; retries
/// while leadership is moving, until the request timeout.
async fn ask_leader<F, Fut>(node: &Node, req: Vec<u8>, local: F) -> Result<Vec<u8>, EtcdError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, EtcdError>>,
{
    let attempts = async {
        loop {
            let answer = match node.forward_to_leader(req.clone()).await {
                Ok(None) => local().await,
                Ok(Some(bytes)) => decode_answer(&bytes),
                Err(e) => {
                    tracing::debug!("asking the leader: {e}");
                    Err(EtcdError::NoLeader)
                }
            };
            match answer {
                Err(EtcdError::NotLeader | EtcdError::NoLeader | EtcdError::LeaderChanged) => {}
                other => return other,
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    };
    tokio::time::timeout(node.limits.request_timeout, attempts)
        .await
        .unwrap_or(Err(EtcdError::Timeout))
}

/// `[0][body]` or an encoded error: the leader's answer to a forwarded lease request.
pub fn encode_answer(r: Result<Vec<u8>, EtcdError>) -> Vec<u8> {
    match r {
        Ok(body) => {
            let mut buf = Vec::with_capacity(body.len() + 1);
            buf.push(0);
            buf.extend_from_slice(&body);
            buf
        }
        Err(e) => {
            let mut buf = Vec::new();
            encode_error(&mut buf, &e);
            buf
        }
    }
}

fn decode_answer(buf: &[u8]) -> Result<Vec<u8>, EtcdError> {
    match buf.split_first() {
        Some((0, body)) => Ok(body.to_vec()),
        _ => match CommandResult::decode(buf) {
            Ok(CommandResult::Err(e)) => Err(e),
            _ => Err(EtcdError::Internal(
                "malformed answer from the leader".into(),
            )),
        },
    }
}

/// Serves a forwarded lease request on the leader (`data` without its kind byte).
pub async fn serve_forwarded(lessor: &Lessor, node: &Node, kind: u8, data: &[u8]) -> Vec<u8> {
    let answer = match kind {
        FORWARD_LEASE_KEEPALIVE => match <[u8; 8]>::try_from(data) {
            Ok(id) => renew_here(lessor, node, i64::from_le_bytes(id)).await,
            Err(_) => Err(EtcdError::Internal("malformed keep-alive request".into())),
        },
        FORWARD_LEASE_TIME_TO_LIVE => match LeaseTimeToLiveRequest::decode(data) {
            Ok(req) => time_to_live_here(lessor, node, &req)
                .await
                .map(|r| r.encode_to_vec()),
            Err(e) => Err(EtcdError::Internal(format!(
                "malformed time-to-live request: {e}"
            ))),
        },
        _ => Err(EtcdError::Internal(
            "unknown forwarded lease request".into(),
        )),
    };
    encode_answer(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        assert_eq!(
            decode_answer(&encode_answer(Ok(vec![1, 2, 3]))),
            Ok(vec![1, 2, 3])
        );
        assert_eq!(decode_answer(&encode_answer(Ok(vec![]))), Ok(vec![]));
        assert_eq!(
            decode_answer(&encode_answer(Err(EtcdError::LeaseNotFound))),
            Err(EtcdError::LeaseNotFound)
        );
        assert!(decode_answer(&[]).is_err());
    }
}
