//! openraft's state machine over the redb MVCC store.
//!
//! Invariants:
//! - a batch of committed entries is applied in ONE redb write transaction, together with
//!   the applied log id and the membership it leads to, so the data and the position in the
//!   log that produced it can never disagree;
//! - most commits are non-durable (no fsync): after a crash redb returns to its last durable
//!   commit and the Raft log replays the rest. A durable commit is made at least every
//!   [`DURABLE_EVERY`] entries or [`DURABLE_INTERVAL`], and always before a snapshot is
//!   reported, because openraft purges the log behind snapshots;
//! - clients get their responses only after the commit, so a read that follows an
//!   acknowledged write sees it;
//! - the lessor hears of every committed lease grant and revoke (and reloads after a snapshot
//!   install) before those responses go out, so a keep-alive that follows a grant finds it;
//! - the watch hub gets each commit's events (and is reset by a snapshot install) before
//!   those responses go out too, so a watch created after an acknowledged write starts
//!   after it;
//! - every write to the store (batches, snapshot builds and installs) happens under the shared
//!   side of the [`ApplyGate`], so a defragmentation waits for it and it awaits a
//!   defragmentation (`crate::defrag`).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_mvcc::{Mvcc, WriteBatch};
use futures::{FutureExt, Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, Snapshot};

use cairn_proto::etcdserverpb::alarm_request::AlarmAction;
use cairn_proto::etcdserverpb::{AlarmMember, AlarmResponse, AlarmType};
use tokio::sync::watch;

use super::codec::{self, Reader, Writer};
use super::snapshot::{ImageFile, SnapshotData};
use super::{
    Command, CommandResult, LogId, SnapshotImage, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::alarms::{Alarms, META_ALARMS};
use crate::auth::{Auth, META_AUTH};
use crate::defrag::ApplyGate;
use crate::lessor::{LeaseChange, Lessor};
use crate::metrics::Metrics;
use crate::server::errors::EtcdError;
use crate::watch::WatchHub;

/// Entries applied between two durable redb commits, at most.
const DURABLE_EVERY: u64 = 10_000;
/// Time between two durable redb commits, at most (while writes flow).
const DURABLE_INTERVAL: Duration = Duration::from_secs(1);
/// Entries applied in one redb transaction, at most.
const MAX_BATCH: usize = 4096;

const META_APPLIED: &str = "raft/applied";
const META_MEMBERSHIP: &str = "raft/membership";
const META_MEMBER_PREFIX: &str = "member/";

fn io_err<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

pub struct StateMachine {
    mvcc: Arc<Mvcc>,
    applied_tx: watch::Sender<u64>,
    lessor: Option<Arc<Lessor>>,
    watch_hub: Option<Arc<WatchHub>>,
    alarms: Option<Arc<Alarms>>,
    auth: Option<Arc<Auth>>,
    metrics: Option<Arc<Metrics>>,
    gate: ApplyGate,
    since_durable: u64,
    last_durable: Instant,
}

impl StateMachine {
    /// Wraps the store; `applied_tx` is told the applied index after every commit.
    pub fn new(mvcc: Arc<Mvcc>, applied_tx: watch::Sender<u64>) -> io::Result<Self> {
        let sm = Self {
            mvcc,
            applied_tx,
            lessor: None,
            watch_hub: None,
            alarms: None,
            auth: None,
            metrics: None,
            gate: ApplyGate::default(),
            since_durable: 0,
            last_durable: Instant::now(),
        };
        let applied = sm.read_applied()?;
        sm.applied_tx.send_replace(applied.map_or(0, |l| l.index));
        Ok(sm)
    }

    /// Publishes the events of every commit to `hub`, and tells it of snapshot installs.
    pub fn with_watch_hub(mut self, hub: Arc<WatchHub>) -> Self {
        self.watch_hub = Some(hub);
        self
    }

    /// Writes to the store only while `gate` lets it (shared with the member's defragmentation).
    pub fn with_apply_gate(mut self, gate: ApplyGate) -> Self {
        self.gate = gate;
        self
    }

    /// Keeps `alarms` equal to the replicated alarm set (loaded now, updated on apply).
    /// Times each batch's redb commit into `etcd_disk_backend_commit_duration_seconds`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn with_alarms(mut self, alarms: Arc<Alarms>) -> io::Result<Self> {
        self.load_alarms(&alarms)?;
        self.alarms = Some(alarms);
        Ok(self)
    }

    /// Keeps `auth` equal to the replicated auth store (loaded now, updated on apply and on
    /// snapshot install).
    pub fn with_auth(mut self, auth: Arc<Auth>) -> io::Result<Self> {
        self.load_auth(&auth)?;
        self.auth = Some(auth);
        Ok(self)
    }

    fn load_auth(&self, auth: &Auth) -> io::Result<()> {
        let persisted = self.mvcc.read_meta(META_AUTH).map_err(io_err)?;
        auth.load(persisted.as_deref())
    }

    fn load_alarms(&self, alarms: &Alarms) -> io::Result<()> {
        let list = match self.mvcc.read_meta(META_ALARMS).map_err(io_err)? {
            Some(b) => Alarms::decode(&b)?,
            None => vec![],
        };
        alarms.replace(list);
        Ok(())
    }

    /// Whether NOSPACE refuses this command (it would add data).
    fn capped(&self, cmd: &cairn_mvcc::Command) -> bool {
        use cairn_mvcc::Command as C;
        let grows = match cmd {
            C::Put(_) | C::LeaseGrant { .. } => true,
            C::Txn(t) => crate::alarms::txn_puts(t),
            _ => false,
        };
        grows
            && self
                .alarms
                .as_ref()
                .is_some_and(|a| a.is_raised(AlarmType::Nospace))
    }

    /// Reports committed lease grants and revokes to `lessor`.
    pub fn with_lessor(mut self, lessor: Arc<Lessor>) -> Self {
        self.lessor = Some(lessor);
        self
    }

    fn read_applied(&self) -> io::Result<Option<LogId>> {
        match self.mvcc.read_meta(META_APPLIED).map_err(io_err)? {
            Some(b) => codec::decode_opt_log_id(&b),
            None => Ok(None),
        }
    }

    fn read_membership(&self) -> io::Result<StoredMembership> {
        match self.mvcc.read_meta(META_MEMBERSHIP).map_err(io_err)? {
            Some(b) => Reader::new(&b).stored_membership(),
            None => Ok(StoredMembership::default()),
        }
    }
}

impl StateMachine {
    /// Applies `first` and every entry already available after it (up to [`MAX_BATCH`]) in
    /// one transaction.
    fn apply_batch<Strm>(
        &mut self,
        first: Result<EntryResponder<TypeConfig>, io::Error>,
        entries: &mut Strm,
    ) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut next = Some(first);
        let mut responders = Vec::new();
        let mut lease_changes = Vec::new();
        // A local handle, so the batch does not borrow `self` while entries are applied.
        let mvcc = self.mvcc.clone();
        let mut batch = mvcc.begin().map_err(io_err)?;
        let mut last: Option<LogId> = None;
        let mut applied = 0usize;
        while let Some(item) = next {
            let (entry, responder) = item?;
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::None,
                EntryPayload::Normal(cmd) => {
                    self.apply_command(&mut batch, cmd, entry.log_id.index, &mut lease_changes)?
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    let mut w = Writer::default();
                    w.stored_membership(&stored);
                    batch.set_meta(META_MEMBERSHIP, &w.buf).map_err(io_err)?;
                    CommandResult::None
                }
            };
            last = Some(entry.log_id);
            applied += 1;
            if let Some(r) = responder {
                responders.push((r, result));
            }
            if applied >= MAX_BATCH {
                break;
            }
            next = entries.next().now_or_never().flatten();
        }
        let Some(last) = last else {
            return Ok(());
        };
        batch
            .set_meta(META_APPLIED, &codec::encode_opt_log_id(Some(&last)))
            .map_err(io_err)?;
        self.since_durable += applied as u64;
        let durable =
            self.since_durable >= DURABLE_EVERY || self.last_durable.elapsed() >= DURABLE_INTERVAL;
        let revision = batch.current_revision();
        let commit_started = Instant::now();
        let events = batch.commit(durable).map_err(io_err)?;
        if let Some(m) = &self.metrics {
            m.backend_commit.observe(commit_started.elapsed());
        }
        // Watchers learn of the writes before their clients do; publishing never waits.
        if let Some(hub) = &self.watch_hub {
            hub.publish(revision, events);
        }
        if durable {
            self.since_durable = 0;
            self.last_durable = Instant::now();
        }
        if let Some(lessor) = &self.lessor {
            lessor.applied(&lease_changes);
        }
        if let Some(m) = &self.metrics {
            m.lease_changes(&lease_changes);
        }
        self.applied_tx.send_replace(last.index);
        for (r, result) in responders {
            r.send(result);
        }
        Ok(())
    }
}

impl StateMachine {
    /// Applies one normal entry's command at log index `index` inside `batch`. `Err` is a
    /// local failure that must stop the node; refusals are `CommandResult::Err`.
    fn apply_command(
        &mut self,
        batch: &mut WriteBatch<'_>,
        cmd: Command,
        index: u64,
        lease_changes: &mut Vec<LeaseChange>,
    ) -> io::Result<CommandResult> {
        Ok(match cmd {
            Command::As { caller, cmd } => {
                let auth = self.auth.clone();
                let verdict = match &auth {
                    Some(auth) => auth.permit(&caller, &cmd, &mut |id| {
                        batch.lease_keys(id).map_err(io_err)
                    })?,
                    None => Ok(()),
                };
                match verdict {
                    Err(e) => CommandResult::Err(e),
                    // `As` is never nested (decoding refuses it), so this recursion is one
                    // level deep.
                    Ok(()) => self.apply_command(batch, *cmd, index, lease_changes)?,
                }
            }
            Command::Kv(cmd) if self.capped(&cmd) => CommandResult::Err(EtcdError::NoSpace),
            Command::Alarm(req) => {
                let raise = req.action == AlarmAction::Activate as i32;
                let clear = req.action == AlarmAction::Deactivate as i32;
                let alarms = self.alarms.get_or_insert_with(Default::default).clone();
                let changed = (raise || clear) && alarms.set(req.member_id, req.alarm, raise);
                if changed {
                    batch
                        .set_meta(META_ALARMS, &alarms.encode())
                        .map_err(io_err)?;
                }
                // etcd answers with the alarm raised (new or not) or the one cleared.
                let named = AlarmMember {
                    member_id: req.member_id,
                    alarm: req.alarm,
                };
                CommandResult::Alarm(AlarmResponse {
                    header: None,
                    alarms: if raise || changed {
                        vec![named]
                    } else {
                        vec![]
                    },
                })
            }
            Command::Kv(cmd) => match batch.apply(&cmd) {
                // Storage failures stop the node: openraft must not believe it applied.
                Err(e) if e.is_local_failure() => return Err(io_err(e)),
                r => {
                    lease_changes.extend(LeaseChange::of(&cmd, &r));
                    kv_result(r)
                }
            },
            Command::Publish {
                member_id,
                name,
                client_urls,
            } => {
                let mut w = Writer::default();
                w.str(&name);
                w.strs(&client_urls);
                batch
                    .set_meta(&format!("{META_MEMBER_PREFIX}{member_id:016x}"), &w.buf)
                    .map_err(io_err)?;
                CommandResult::None
            }
            Command::Auth(cmd) => {
                let auth = self
                    .auth
                    .get_or_insert_with(|| Arc::new(Auth::new(Duration::from_secs(300), 10)))
                    .clone();
                match auth.apply(&cmd, index) {
                    Ok((token, persisted)) => {
                        if let Some(bytes) = persisted {
                            batch.set_meta(META_AUTH, &bytes).map_err(io_err)?;
                        }
                        CommandResult::Auth {
                            token: token.unwrap_or_default(),
                        }
                    }
                    Err(e) => CommandResult::Err(e),
                }
            }
        })
    }
}

/// A snapshot of the store after a durable commit (openraft purges the log behind it).
/// The applied id and membership come from the image's own meta, so they describe exactly
/// the state the image holds even while entries keep being applied.
/// Makes every applied entry durable in redb and returns the log id and membership that now
/// covers: a snapshot needing no copy of the store (see [`SnapshotData::InPlace`]).
fn durable_point(mvcc: &Mvcc) -> io::Result<SnapshotMeta> {
    mvcc.begin().and_then(|b| b.commit(true)).map_err(io_err)?;
    let last_log_id = match mvcc.read_meta(META_APPLIED).map_err(io_err)? {
        Some(b) => codec::decode_opt_log_id(&b)?,
        None => None,
    };
    let last_membership = match mvcc.read_meta(META_MEMBERSHIP).map_err(io_err)? {
        Some(b) => Reader::new(&b).stored_membership()?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta {
        last_log_id,
        last_membership,
    })
}

/// A full image of the store in a temporary file next to it, with the log id and membership
/// it holds (read from the image itself, so the two always agree).
fn image_snapshot(mvcc: &Mvcc) -> io::Result<SnapshotImage> {
    let dir = mvcc.path().parent().unwrap_or(std::path::Path::new("."));
    let (image, info) = ImageFile::write(mvcc, dir)?;
    let last_log_id = match info.meta.get(META_APPLIED) {
        Some(b) => codec::decode_opt_log_id(b)?,
        None => None,
    };
    let last_membership = match info.meta.get(META_MEMBERSHIP) {
        Some(b) => Reader::new(b).stored_membership()?,
        None => StoredMembership::default(),
    };
    Ok(Snapshot {
        meta: SnapshotMeta {
            last_log_id,
            last_membership,
        },
        snapshot: SnapshotData::Image(image),
    })
}

/// The name and client URLs a member published, if it has.
pub fn published_member(mvcc: &Mvcc, id: u64) -> Option<(String, Vec<String>)> {
    let raw = mvcc
        .read_meta(&format!("{META_MEMBER_PREFIX}{id:016x}"))
        .ok()??;
    let mut r = Reader::new(&raw);
    Some((r.string().ok()?, r.strings().ok()?))
}

fn kv_result(r: cairn_mvcc::CommandResult) -> CommandResult {
    use cairn_mvcc::Response as M;
    match r {
        Ok(M::Put(r)) => CommandResult::Put(r),
        Ok(M::DeleteRange(r)) => CommandResult::DeleteRange(r),
        Ok(M::Txn(r)) => CommandResult::Txn(r),
        Ok(M::Compact(r)) => CommandResult::Compact(r),
        Ok(M::LeaseGrant(r)) => CommandResult::LeaseGrant(r),
        Ok(M::LeaseRevoke(r)) => CommandResult::LeaseRevoke(r),
        Err(e) => CommandResult::Err(EtcdError::from(e)),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.read_applied()?, self.read_membership()?))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        // Each batch takes one entry, then every entry already available, into one
        // transaction; the stream ends after the last committed entry handed to us.
        while let Some(first) = entries.next().await {
            let _writing = self.gate.writing().await;
            self.apply_batch(first, &mut entries)?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            mvcc: self.mvcc.clone(),
            gate: self.gate.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let SnapshotData::Image(image) = snapshot else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a snapshot without an image cannot be installed",
            ));
        };
        let _writing = self.gate.writing().await;
        self.mvcc
            .install_snapshot_from(image.into_reader()?)
            .map_err(io_err)?;
        let mut batch = self.mvcc.begin().map_err(io_err)?;
        batch
            .set_meta(
                META_APPLIED,
                &codec::encode_opt_log_id(meta.last_log_id.as_ref()),
            )
            .map_err(io_err)?;
        let mut w = Writer::default();
        w.stored_membership(&meta.last_membership);
        batch.set_meta(META_MEMBERSHIP, &w.buf).map_err(io_err)?;
        batch.commit(true).map_err(io_err)?;
        self.since_durable = 0;
        self.last_durable = Instant::now();
        if let Some(lessor) = &self.lessor {
            lessor.reload().map_err(io_err)?;
        }
        if let Some(alarms) = &self.alarms {
            self.load_alarms(alarms)?;
        }
        if let Some(auth) = &self.auth {
            self.load_auth(auth)?;
        }
        // The buffered events may not lead to the new state: watchers resync from redb.
        if let Some(hub) = &self.watch_hub {
            hub.reset(self.mvcc.current_revision());
        }
        self.applied_tx
            .send_replace(meta.last_log_id.as_ref().map_or(0, |l| l.index));
        Ok(())
    }

    /// A snapshot to send to a follower: a full image, written at the moment it is asked for
    /// (the snapshots a member builds for itself hold none, see [`SnapshotData`]).
    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotImage>, io::Error> {
        if self.read_applied()?.is_none() {
            return Ok(None);
        }
        {
            let _writing = self.gate.writing().await;
            self.mvcc
                .begin()
                .and_then(|b| b.commit(true))
                .map_err(io_err)?;
        }
        self.since_durable = 0;
        self.last_durable = Instant::now();
        // The image is one read transaction: applies go on while it is written.
        let mvcc = self.mvcc.clone();
        let snapshot = tokio::task::spawn_blocking(move || image_snapshot(&mvcc))
            .await
            .map_err(io_err)??;
        Ok(Some(snapshot))
    }
}

/// Builds the snapshot a member keeps for itself: a durable commit of everything applied, which
/// lets openraft purge the log up to it. Nothing is copied (see [`SnapshotData::InPlace`]).
pub struct SnapshotBuilder {
    mvcc: Arc<Mvcc>,
    gate: ApplyGate,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotImage, io::Error> {
        let _writing = self.gate.writing().await;
        Ok(Snapshot {
            meta: durable_point(&self.mvcc)?,
            snapshot: SnapshotData::InPlace,
        })
    }
}

#[cfg(test)]
mod crash_tests;
