//! Crash tests of the state machine's checkpoint logic: the applied log id lives in the same
//! redb transaction as the data, most commits are non-durable, and the Raft log replays what a
//! crash took back. A generated workload crashes the member at every point between the log's
//! fsync, `apply` and the redb commit — before applying, after a non-durable commit, in the
//! middle of a durable checkpoint's writes — and checks recovery against a model:
//!
//! - the recovered state is exactly the model after the recovered applied index (the data and
//!   the index never disagree), and that index is at least the last durable checkpoint's;
//! - after replaying the log from there, every entry of the log — everything acknowledged — is
//!   applied exactly once, and nothing that never reached the log appears.
//!
//! The crash is redb's: a [`CrashFile`] layer (see `cairn_mvcc::backend`) keeps what redb
//! wrote in memory and passes it to the file only on `sync_data`; a crash forgets everything
//! since the last sync, or stops a write sequence in its middle.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_mvcc::backend::{BackendError, FileBackend, StorageBackend};
use cairn_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

use super::{StateMachine, DURABLE_INTERVAL};
use crate::raft::{Command, Entry, EntryPayload, LeaderId, LogId};

/// Shared crash switch of one "power supply".
#[derive(Default)]
struct Power {
    /// Once set, nothing more reaches the file: every write and sync is lost.
    off: AtomicBool,
    /// Writes and syncs left before the power goes off (negative: never).
    left: AtomicI64,
}

impl Power {
    fn new() -> Arc<Self> {
        let p = Power::default();
        p.left.store(-1, Ordering::SeqCst);
        Arc::new(p)
    }

    /// Whether this call still has power; counts it down.
    fn on(&self) -> bool {
        if self.off.load(Ordering::SeqCst) {
            return false;
        }
        if self.left.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.off.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// redb's file with a volatile cache in front: reads and writes hit `image`, `sync_data`
/// copies the image to the file. After the power goes off every call fails, as the process
/// would have died there.
struct CrashFile {
    file: FileBackend,
    image: Mutex<Vec<u8>>,
    power: Arc<Power>,
}

impl fmt::Debug for CrashFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashFile").finish_non_exhaustive()
    }
}

fn dead() -> io::Error {
    io::Error::other("power lost")
}

impl CrashFile {
    fn new(file: FileBackend, power: Arc<Power>) -> Self {
        let len = file.len().expect("file length") as usize;
        let mut image = vec![0; len];
        file.read(0, &mut image).expect("read file");
        Self {
            file,
            image: Mutex::new(image),
            power,
        }
    }
}

impl StorageBackend for CrashFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.image.lock().expect("image").len() as u64)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let image = self.image.lock().expect("image");
        let at = offset as usize;
        let src = image
            .get(at..at + out.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(src);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.power.on() {
            return Err(dead());
        }
        self.image.lock().expect("image").resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        if !self.power.on() {
            return Err(dead());
        }
        let image = self.image.lock().expect("image");
        self.file.set_len(image.len() as u64)?;
        self.file.write(0, &image)?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if !self.power.on() {
            return Err(dead());
        }
        let mut image = self.image.lock().expect("image");
        let end = offset as usize + data.len();
        if image.len() < end {
            image.resize(end, 0);
        }
        image[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn close(&self) -> io::Result<()> {
        self.file.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

/// A state machine on `dir`'s redb file behind a fresh power supply.
fn open(dir: &Path) -> (StateMachine, Arc<Power>) {
    let power = Power::new();
    let p = power.clone();
    let layer: cairn_mvcc::BackendLayer =
        Arc::new(move |file| Box::new(CrashFile::new(file, p.clone())));
    let mvcc = cairn_mvcc::Mvcc::open_with(&dir.join("db"), Some(layer)).expect("open mvcc");
    let (tx, _rx) = tokio::sync::watch::channel(0);
    let sm = StateMachine::new(Arc::new(mvcc), tx).expect("state machine");
    (sm, power)
}

/// SplitMix64, so a seed regenerates its workload.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// The model: the key-value state and revision after applying a prefix of the log.
#[derive(Debug, Default, PartialEq, Eq)]
struct Model {
    kvs: BTreeMap<Vec<u8>, Vec<u8>>,
    revision: i64,
}

/// What each log entry does, for the model: put `key = value`, or delete `key`.
#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

fn model_after(ops: &[Op]) -> Model {
    let mut m = Model {
        revision: cairn_mvcc::INITIAL_REVISION,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Put(k, v) => {
                m.kvs.insert(k.clone(), v.clone());
                m.revision += 1;
            }
            // etcd makes no revision for a delete that deletes nothing.
            Op::Delete(k) => {
                if m.kvs.remove(k).is_some() {
                    m.revision += 1;
                }
            }
        }
    }
    m
}

fn entry(index: u64, op: &Op) -> Entry {
    let cmd = match op {
        Op::Put(key, value) => cairn_mvcc::Command::Put(PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        }),
        Op::Delete(key) => cairn_mvcc::Command::DeleteRange(DeleteRangeRequest {
            key: key.clone(),
            ..Default::default()
        }),
    };
    Entry {
        log_id: LogId::new(
            LeaderId {
                term: 1,
                node_id: 1,
            },
            index,
        ),
        payload: EntryPayload::Normal(Command::Kv(cmd)),
    }
}

/// Applies log entries `from..=to` (1-based) in one `apply` call.
async fn apply(sm: &mut StateMachine, ops: &[Op], from: u64, to: u64) -> io::Result<()> {
    let entries: Vec<_> = (from..=to)
        .map(|i| Ok((entry(i, &ops[i as usize - 1]), None)))
        .collect();
    sm.apply(futures::stream::iter(entries)).await
}

/// The state machine's applied index and key-value state.
async fn observe(sm: &mut StateMachine) -> (u64, Model) {
    let (applied, _) = sm.applied_state().await.expect("applied state");
    let all = sm
        .mvcc
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .expect("range");
    let kvs = all.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    let revision = sm.mvcc.current_revision();
    (applied.map_or(0, |l| l.index), Model { kvs, revision })
}

/// Where the power goes off in one round.
#[derive(Clone, Copy, Debug)]
enum CrashPoint {
    /// The new entries are in the log (fsynced), none applied.
    AfterLogSync,
    /// After `apply` returned: its redb commit was non-durable.
    AfterApply,
    /// In the middle of a durable checkpoint (a snapshot build), after `n` writes or syncs.
    InCheckpoint(i64),
    /// In the middle of an `apply` whose commit is due to be durable, after `n` writes or
    /// syncs (a non-durable commit stays in redb's cache and never reaches the file).
    InApply(i64),
}

/// What the crashes of a run did, to show the test reached every case.
#[derive(Debug, Default)]
struct Seen {
    /// Recoveries that came back behind the log and replayed.
    replayed: u32,
    /// Checkpoints cut short by the crash.
    torn_checkpoints: u32,
    /// Durable applies cut short by the crash.
    torn_applies: u32,
}

async fn run_seed(seed: u64, seen: &mut Seen) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(seed);
    // The Raft log: entry `i` (1-based) is `ops[i - 1]`. Everything in it is durable and, in
    // this single-member setting, committed — acknowledged once applied.
    let mut ops: Vec<Op> = Vec::new();
    let (mut sm, mut power) = open(dir.path());
    let mut applied = 0u64;
    let mut durable = 0u64;
    for round in 0..24 {
        // Normal operation: a few appends, applies and checkpoints.
        for _ in 0..rng.below(6) {
            for _ in 0..=rng.below(8) {
                let key = format!("k{}", rng.below(6)).into_bytes();
                ops.push(if rng.below(4) == 0 {
                    Op::Delete(key)
                } else {
                    Op::Put(key, format!("{seed}.{}", ops.len() + 1).into_bytes())
                });
            }
            let to = ops.len() as u64;
            apply(&mut sm, &ops, applied + 1, to).await.expect("apply");
            applied = to;
            if rng.below(5) == 0 {
                sm.get_snapshot_builder()
                    .await
                    .build_snapshot()
                    .await
                    .expect("checkpoint");
                durable = applied;
            }
        }
        // New entries reach the log, then the power goes off somewhere.
        for _ in 0..=rng.below(5) {
            let key = format!("k{}", rng.below(6)).into_bytes();
            ops.push(Op::Put(
                key,
                format!("{seed}.{}", ops.len() + 1).into_bytes(),
            ));
        }
        let to = ops.len() as u64;
        let point = match rng.below(4) {
            0 => CrashPoint::AfterLogSync,
            1 => CrashPoint::AfterApply,
            2 => CrashPoint::InCheckpoint(rng.below(12) as i64),
            _ => CrashPoint::InApply(rng.below(12) as i64),
        };
        match point {
            CrashPoint::AfterLogSync => {}
            CrashPoint::AfterApply => {
                apply(&mut sm, &ops, applied + 1, to).await.expect("apply");
            }
            CrashPoint::InCheckpoint(n) => {
                apply(&mut sm, &ops, applied + 1, to).await.expect("apply");
                power.left.store(n, Ordering::SeqCst);
                let done = sm.get_snapshot_builder().await.build_snapshot().await;
                if done.is_ok() {
                    durable = to; // it finished within its budget of writes
                } else {
                    seen.torn_checkpoints += 1;
                }
            }
            CrashPoint::InApply(n) => {
                power.left.store(n, Ordering::SeqCst);
                // The periodic durable commit is due.
                sm.last_durable = Instant::now() - DURABLE_INTERVAL;
                if apply(&mut sm, &ops, applied + 1, to).await.is_ok() {
                    durable = to;
                } else {
                    seen.torn_applies += 1;
                }
            }
        }
        power.off.store(true, Ordering::SeqCst);
        drop(sm);

        // Recovery: the state is a prefix of the log, at least the durable one.
        let (recovered, p) = open(dir.path());
        sm = recovered;
        power = p;
        let (at, state) = observe(&mut sm).await;
        assert!(
            at <= to,
            "seed {seed} round {round} ({point:?}): applied {at} beyond the log ({to})"
        );
        assert!(
            at >= durable,
            "seed {seed} round {round} ({point:?}): applied {at} behind the durable checkpoint {durable}"
        );
        assert_eq!(
            state,
            model_after(&ops[..at as usize]),
            "seed {seed} round {round} ({point:?}): the state disagrees with its applied index {at}"
        );
        // Replay, as openraft does on restart once the entries are known committed.
        if at < to {
            seen.replayed += 1;
            apply(&mut sm, &ops, at + 1, to).await.expect("replay");
        }
        let (at, state) = observe(&mut sm).await;
        assert_eq!(at, to);
        assert_eq!(
            state,
            model_after(&ops),
            "seed {seed} round {round} ({point:?}): the replayed state differs from the log's"
        );
        applied = to;
    }
}

/// Every crash point, over generated workloads: recovery lands on a prefix of the log no older
/// than the last durable checkpoint, and replay restores exactly the log's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_anywhere_between_log_apply_and_commit_recovers_exactly_the_log() {
    let mut seen = Seen::default();
    for seed in 1..=6 {
        run_seed(seed, &mut seen).await;
    }
    eprintln!("{seen:?}");
    assert!(
        seen.replayed > 0 && seen.torn_checkpoints > 0 && seen.torn_applies > 0,
        "the crashes never lost anything: {seen:?}"
    );
}
