//! The lease workload: clients that grant a lease, attach a key to it and keep it alive through
//! the faults, moving to another member whenever theirs stops answering.
//!
//! The invariant (etcd's): a key attached to a lease that is being kept alive is never
//! deleted. The client knows a lower bound of its lease's life: a grant or keep-alive sent at
//! time `t` with TTL `ttl` keeps the lease alive at least until `t + ttl` (the leader renews no
//! earlier than it receives the request; a new leader renews every lease in full). So:
//! - a linearizable read that completes before that bound must find the key;
//! - a keep-alive answered before that bound must not say the lease is gone.
//!
//! When the client could not renew for longer than the TTL the lease may expire legitimately:
//! the client abandons that generation and starts a new lease and key. After the run, every
//! abandoned generation's key must be gone within the TTL plus an election (liveness of
//! expiry).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::lease_client::LeaseClient;
use cairn_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest,
};
use tokio_stream::StreamExt;

use crate::cluster::lazy_channel;

/// TTL of the workload's leases, in seconds.
pub const TTL: i64 = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const PERIOD: Duration = Duration::from_millis(400);

#[derive(Debug, Clone)]
pub struct Generation {
    pub lease: i64,
    pub key: Vec<u8>,
    /// The put attaching the key was acknowledged.
    pub bound: bool,
    /// The client stopped keeping this lease alive (renewals failed past its TTL, or the lease
    /// was reported gone); the last one of a client is never abandoned.
    pub abandoned: bool,
}

#[derive(Debug, Default)]
pub struct LeaseLog {
    pub client: usize,
    pub generations: Vec<Generation>,
    pub keepalives: usize,
    pub reads: usize,
    pub problems: Vec<String>,
}

struct Conn {
    endpoints: Arc<Vec<String>>,
    member: usize,
    kv: KvClient<tonic::transport::Channel>,
    lease: LeaseClient<tonic::transport::Channel>,
}

impl Conn {
    fn new(endpoints: Arc<Vec<String>>, member: usize) -> Self {
        let ch = lazy_channel(&endpoints[member]);
        Self {
            kv: KvClient::new(ch.clone()),
            lease: LeaseClient::new(ch),
            endpoints,
            member,
        }
    }

    fn rotate(&mut self) {
        *self = Conn::new(
            self.endpoints.clone(),
            (self.member + 1) % self.endpoints.len(),
        );
    }

    async fn keep_alive(&mut self, id: i64) -> Option<i64> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(LeaseKeepAliveRequest { id }).await.ok()?;
        let call = async {
            let mut stream = self
                .lease
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .ok()?
                .into_inner();
            stream.next().await?.ok().map(|r| r.ttl)
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .ok()
            .flatten()
    }
}

pub async fn lease_client(
    id: usize,
    endpoints: Arc<Vec<String>>,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> LeaseLog {
    let mut log = LeaseLog {
        client: id,
        ..Default::default()
    };
    let mut conn = Conn::new(endpoints.clone(), id % endpoints.len());
    let ttl = Duration::from_secs(TTL as u64);
    let at = |t: Instant| format!("{:.3}s", t.duration_since(start).as_secs_f64());
    'generations: while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let grant = tokio::time::timeout(
            CALL_TIMEOUT,
            conn.lease
                .lease_grant(LeaseGrantRequest { ttl: TTL, id: 0 }),
        )
        .await;
        let lease = match grant {
            Ok(Ok(r)) => r.into_inner().id,
            _ => {
                conn.rotate();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut alive_until = sent + ttl;
        let key = format!("lease/{id}/{}", log.generations.len()).into_bytes();
        let put = PutRequest {
            key: key.clone(),
            value: lease.to_string().into_bytes(),
            lease,
            ..Default::default()
        };
        let bound = matches!(
            tokio::time::timeout(CALL_TIMEOUT, conn.kv.put(put)).await,
            Ok(Ok(_))
        );
        log.generations.push(Generation {
            lease,
            key: key.clone(),
            bound,
            abandoned: !bound,
        });
        if !bound {
            conn.rotate();
            continue;
        }
        let gen = log.generations.len() - 1;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(PERIOD).await;
            let sent = Instant::now();
            match conn.keep_alive(lease).await {
                Some(t) if t > 0 => {
                    log.keepalives += 1;
                    alive_until = alive_until.max(sent + Duration::from_secs(t as u64));
                }
                Some(_) => {
                    let now = Instant::now();
                    if now < alive_until {
                        log.problems.push(format!(
                            "lease client {id}: lease {lease:x} reported gone at {} although \
                             kept alive until at least {}",
                            at(now),
                            at(alive_until)
                        ));
                    }
                    log.generations[gen].abandoned = true;
                    continue 'generations;
                }
                None => {
                    conn.rotate();
                    if Instant::now() >= alive_until {
                        log.generations[gen].abandoned = true;
                        continue 'generations;
                    }
                    continue;
                }
            }
            let read = tokio::time::timeout(
                CALL_TIMEOUT,
                conn.kv.range(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                }),
            )
            .await;
            let done = Instant::now();
            if let Ok(Ok(r)) = read {
                log.reads += 1;
                if r.into_inner().kvs.is_empty() && done < alive_until {
                    log.problems.push(format!(
                        "lease client {id}: key {} of lease {lease:x} was gone at {} although \
                         the lease was kept alive until at least {}",
                        String::from_utf8_lossy(&key),
                        at(done),
                        at(alive_until)
                    ));
                    log.generations[gen].abandoned = true;
                    continue 'generations;
                }
            }
        }
    }
    log
}

/// With the cluster healed: every abandoned generation's key disappears within `within`.
pub async fn expired_keys_vanish(
    endpoint: &str,
    logs: &[LeaseLog],
    within: Duration,
) -> Vec<String> {
    let mut kv = KvClient::new(lazy_channel(endpoint));
    let deadline = Instant::now() + within;
    let mut left: Vec<&Generation> = logs
        .iter()
        .flat_map(|l| &l.generations)
        .filter(|g| g.abandoned)
        .collect();
    while !left.is_empty() {
        let mut still = Vec::new();
        for g in left {
            let req = RangeRequest {
                key: g.key.clone(),
                count_only: true,
                ..Default::default()
            };
            match tokio::time::timeout(CALL_TIMEOUT, kv.range(req)).await {
                Ok(Ok(r)) if r.get_ref().count == 0 => {}
                _ => still.push(g),
            }
        }
        left = still;
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return left
                .iter()
                .map(|g| {
                    format!(
                        "key {} of abandoned lease {:x} still exists {within:?} after the \
                         cluster healed",
                        String::from_utf8_lossy(&g.key),
                        g.lease
                    )
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Vec::new()
}
