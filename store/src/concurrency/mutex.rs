//! Distributed lock (etcd's `concurrency.Mutex`): waiters put `name/<lease hex>` with their
//! lease; the key with the lowest create revision holds the lock. Locking twice with the same
//! lease reuses the key, so it counts as one acquisition.

use cairn_proto::etcdserverpb::response_op::Response as OpResp;
use cairn_proto::etcdserverpb::{ResponseHeader, TxnRequest, TxnResponse};
use cairn_proto::mvccpb::KeyValue;
use tonic::Status;

use super::client::{self, created_at, op_get, op_put, Client};
use super::contender_key;
use crate::server::errors::EtcdError;

/// Deletes the waiter's key when dropped while armed: a lock request abandoned by its client,
/// or failed while waiting, must not leave a key that would later hold the lock for nobody.
struct UnlockOnDrop {
    client: Client,
    key: Option<Vec<u8>>,
}

impl Drop for UnlockOnDrop {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let client = self.client.clone();
            tokio::spawn(async move {
                if let Err(e) = client.delete(&key).await {
                    tracing::debug!("releasing an abandoned lock request: {e}");
                }
            });
        }
    }
}

fn range_kvs(resp: &TxnResponse, i: usize) -> Vec<KeyValue> {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(OpResp::ResponseRange(r)) => r.kvs.clone(),
        _ => Vec::new(),
    }
}

/// Acquires lock `name` for `lease`; returns the header and the key that embodies ownership.
pub async fn lock(
    c: &Client,
    name: &[u8],
    lease: i64,
) -> Result<(Option<ResponseHeader>, Vec<u8>), Status> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    let key = contender_key(&prefix, lease);
    let owner = Client::first_created(&prefix);
    let resp = c
        .txn(TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![op_put(&key, b"", lease), op_get(owner.clone())],
            failure: vec![op_get(client::get(&key)), op_get(owner)],
        })
        .await?;
    let mut my_rev = resp.header.as_ref().map_or(0, |h| h.revision);
    if !resp.succeeded {
        let mine = range_kvs(&resp, 0);
        let mine = mine
            .first()
            .ok_or_else(|| Status::from(EtcdError::Internal("lock: waiter key vanished".into())))?;
        my_rev = mine.create_revision;
    }
    let owner = range_kvs(&resp, 1);
    if owner.first().is_none_or(|o| o.create_revision == my_rev) {
        return Ok((resp.header, key));
    }
    let mut guard = UnlockOnDrop {
        client: c.clone(),
        key: Some(key.clone()),
    };
    c.wait_deletes(&prefix, my_rev - 1).await?;
    // The wait may have outlived the lease: the lock is held only if the key is still there.
    let mine = c.range(client::get(&key)).await?;
    guard.key = None;
    if mine.kvs.is_empty() {
        return Err(EtcdError::SessionExpired.into());
    }
    Ok((mine.header, key))
}

/// Releases a lock: deletes its key.
pub async fn unlock(c: &Client, key: &[u8]) -> Result<Option<ResponseHeader>, Status> {
    Ok(c.delete(key).await?.header)
}
