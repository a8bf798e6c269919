//! Leader election (etcd's `concurrency.Election`): contenders put `name/<lease hex>` with
//! their lease; the key with the lowest create revision leads, and its value is the
//! proclamation. A campaign returns once every key created before its own is gone.

use cairn_proto::etcdserverpb::response_op::Response as OpResp;
use cairn_proto::etcdserverpb::{ResponseHeader, TxnRequest, TxnResponse};
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::KeyValue;
use cairn_proto::v3electionpb::{LeaderKey, LeaderResponse};
use tokio::sync::mpsc;
use tonic::Status;

use super::client::{self, created_at, op_delete, op_get, op_put, Client};
use super::{contender_key, prefix_end};
use crate::server::errors::EtcdError;

fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

fn revision(h: &Option<ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

/// Resigns when dropped while armed: a campaign abandoned by its client (the RPC was canceled)
/// must not leave its key to win later for nobody (etcd resigns on context cancellation).
struct ResignOnDrop {
    client: Client,
    leader: Option<LeaderKey>,
}

impl Drop for ResignOnDrop {
    fn drop(&mut self) {
        if let Some(leader) = self.leader.take() {
            let client = self.client.clone();
            tokio::spawn(async move {
                if let Err(e) = resign(&client, &leader).await {
                    tracing::debug!("resigning an abandoned campaign: {e}");
                }
            });
        }
    }
}

/// Campaigns for `name` with `lease`, proclaiming `value`, and returns once elected: the
/// header of the campaign's own write and the leadership obtained.
pub async fn campaign(
    c: &Client,
    name: &[u8],
    lease: i64,
    value: &[u8],
) -> Result<(Option<ResponseHeader>, LeaderKey), Status> {
    let prefix = prefix_of(name);
    let key = contender_key(&prefix, lease);
    let resp = c
        .txn(TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![op_put(&key, value, lease)],
            failure: vec![op_get(client::get(&key))],
        })
        .await?;
    let mut leader = LeaderKey {
        name: name.to_vec(),
        key: key.clone(),
        rev: revision(&resp.header),
        lease,
    };
    let mut guard = ResignOnDrop {
        client: c.clone(),
        leader: Some(leader.clone()),
    };
    if !resp.succeeded {
        // Campaigning again with the same lease resumes the existing candidacy.
        let kv = first_kv(&resp).ok_or_else(|| {
            Status::from(EtcdError::Internal(
                "campaign: contender key vanished".into(),
            ))
        })?;
        leader.rev = kv.create_revision;
        guard.leader = Some(leader.clone());
        if kv.value != value {
            proclaim(c, &leader, value).await?;
        }
    }
    match c.wait_deletes(&prefix, leader.rev - 1).await {
        Ok(_) => {
            guard.leader = None;
            Ok((resp.header, leader))
        }
        Err(e) => {
            // Not abandoned by the client (compaction, shutdown): the key stays, as in etcd.
            guard.leader = None;
            Err(e)
        }
    }
}

fn first_kv(resp: &TxnResponse) -> Option<KeyValue> {
    match resp.responses.first()?.response.as_ref()? {
        OpResp::ResponseRange(r) => r.kvs.first().cloned(),
        _ => None,
    }
}

/// Replaces the leader's value, if `leader` still leads (its key has its create revision).
pub async fn proclaim(
    c: &Client,
    leader: &LeaderKey,
    value: &[u8],
) -> Result<Option<ResponseHeader>, Status> {
    let resp = c
        .txn(TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![op_put(&leader.key, value, leader.lease)],
            failure: vec![],
        })
        .await?;
    if !resp.succeeded {
        return Err(EtcdError::ElectionNotLeader.into());
    }
    Ok(resp.header)
}

/// Gives up leadership (or candidacy): deletes the key if it is still the same key.
pub async fn resign(c: &Client, leader: &LeaderKey) -> Result<Option<ResponseHeader>, Status> {
    let resp = c
        .txn(TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![op_delete(&leader.key)],
            failure: vec![],
        })
        .await?;
    Ok(resp.header)
}

/// The current leader's key-value: the key with the lowest create revision.
pub async fn leader(c: &Client, name: &[u8]) -> Result<(Option<ResponseHeader>, KeyValue), Status> {
    let mut resp = c.range(Client::first_created(&prefix_of(name))).await?;
    if resp.kvs.is_empty() {
        return Err(EtcdError::ElectionNoLeader.into());
    }
    Ok((resp.header, resp.kvs.remove(0)))
}

/// Streams every proclamation of every successive leader (etcd's `Election.Observe`): the
/// current leader (or the first one elected), then each change of its value, then the next
/// leader once its key is deleted, and so on. Returns when `out` is closed or on an error.
pub async fn observe(
    c: &Client,
    name: &[u8],
    out: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), Status> {
    let prefix = prefix_of(name);
    let node = c.node().clone();
    loop {
        let resp = c.range(Client::first_created(&prefix)).await?;
        let (rev, kv) = match resp.kvs.into_iter().next() {
            Some(kv) => (revision(&resp.header), kv),
            None => {
                // No leader: wait for the first key put under the prefix.
                let mut events = c.events(&prefix, &prefix_end(&prefix), revision(&resp.header));
                let first_put = c.unless_stopped(async {
                    loop {
                        let ev = events.next().await?;
                        if ev.r#type == EventType::Put as i32 {
                            if let Some(kv) = ev.kv {
                                return Ok(kv);
                            }
                        }
                    }
                });
                let kv = tokio::select! {
                    kv = first_put => kv?,
                    // The observer went away: stop rather than wait for the next event.
                    _ = out.closed() => return Ok(()),
                };
                (kv.mod_revision, kv)
            }
        };
        let key = kv.key.clone();
        let first = LeaderResponse {
            header: Some(node.header(rev)),
            kv: Some(kv),
        };
        if out.send(Ok(first)).await.is_err() {
            return Ok(());
        }
        // Follow this leader's key until it is deleted.
        let mut events = c.events(&key, &[], rev + 1);
        loop {
            let ev = tokio::select! {
                ev = c.unless_stopped(async { Ok(events.next().await?) }) => ev?,
                _ = out.closed() => return Ok(()),
            };
            if ev.r#type == EventType::Delete as i32 {
                break;
            }
            let Some(kv) = ev.kv else { continue };
            let update = LeaderResponse {
                header: Some(node.header(kv.mod_revision)),
                kv: Some(kv),
            };
            if out.send(Ok(update)).await.is_err() {
                return Ok(());
            }
        }
    }
}
