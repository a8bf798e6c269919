//! An in-memory [`FileSystem`] that knows what is durable, for crash, torn-write and I/O-error
//! tests.
//!
//! Model: every file (inode) has a durable image and a current image. Each mutation (write,
//! length change, create, remove, rename) is applied to the current state at once and also
//! queued, in issue order, as a *pending* operation. `sync_data` makes one file's pending writes
//! and length changes durable; `sync_dir` makes the pending name changes of one directory
//! durable. A crash ([`MemFs::crash`], [`MemFs::crash_keeping`]) yields a new `MemFs` holding the
//! durable state, optionally with a prefix of the pending operations replayed and the next write
//! torn: every state a disk that persists writes in order could be left in.
//!
//! Fault injection: the n-th `write_all_at` or `sync_data` from now can be made to fail with
//! `EIO` (a failed sync drops that file's pending writes for good, as Linux does), `sync_data` can
//! be delayed or held at a gate, and bytes can be corrupted in place.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::fs::{FileSystem, LogFile};

/// In-memory filesystem with crash simulation. Cloning shares the same state.
#[derive(Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<MemState>>,
    gate: Arc<SyncGate>,
}

impl std::fmt::Debug for MemFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemFs").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct MemState {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    pending: Vec<Pending>,
    locks: BTreeSet<PathBuf>,
    writes: u64,
    syncs: u64,
    dir_syncs: u64,
    fail_write_at: Option<u64>,
    fail_sync_at: Option<u64>,
    fail_sync_dir_at: Option<u64>,
    sync_delay: Duration,
}

#[derive(Clone, Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Clone)]
enum Pending {
    Write {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        ino: u64,
        len: u64,
    },
    Link {
        path: PathBuf,
        ino: u64,
    },
    Unlink {
        path: PathBuf,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
}

impl Pending {
    fn ino(&self) -> Option<u64> {
        match self {
            Pending::Write { ino, .. } | Pending::SetLen { ino, .. } => Some(*ino),
            _ => None,
        }
    }

    fn dir(&self) -> Option<&Path> {
        match self {
            Pending::Link { path, .. } | Pending::Unlink { path } => path.parent(),
            Pending::Rename { to, .. } => to.parent(),
            _ => None,
        }
    }
}

#[derive(Default)]
struct SyncGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    held: bool,
    waiting: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected EIO on {what}"))
}

fn apply_write(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

impl MemState {
    /// Applies a pending operation to the durable state.
    fn persist(&mut self, op: &Pending) {
        match op {
            Pending::Write { ino, offset, data } => {
                if let Some(inode) = self.inodes.get_mut(ino) {
                    apply_write(&mut inode.durable, *offset, data);
                }
            }
            Pending::SetLen { ino, len } => {
                if let Some(inode) = self.inodes.get_mut(ino) {
                    inode.durable.resize(*len as usize, 0);
                }
            }
            Pending::Link { path, ino } => {
                self.durable_names.insert(path.clone(), *ino);
            }
            Pending::Unlink { path } => {
                self.durable_names.remove(path);
            }
            Pending::Rename { from, to } => {
                if let Some(ino) = self.durable_names.remove(from) {
                    self.durable_names.insert(to.clone(), ino);
                }
            }
        }
    }

    fn inode(&self, ino: u64) -> io::Result<&Inode> {
        self.inodes
            .get(&ino)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "stale inode"))
    }

    fn inode_mut(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "stale inode"))
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", path.display()),
            )
        })
    }

    fn require_dir(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !self.dirs.contains(dir) => {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} missing", dir.display()),
                ))
            }
            _ => Ok(()),
        }
    }
}

impl MemFs {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, MemState> {
        lock(&self.state)
    }

    /// The filesystem as found after power loss right now: only durable state survives.
    pub fn crash(&self) -> MemFs {
        self.crash_keeping(0, 0)
    }

    /// The filesystem after power loss, where the first `keep` pending operations (in issue
    /// order) also reached the disk, and then the first `torn_bytes` bytes of the next pending
    /// operation if it is a write. The returned `MemFs` is independent of `self`, has no locks
    /// held, no faults armed, and everything in it is durable.
    pub fn crash_keeping(&self, keep: usize, torn_bytes: usize) -> MemFs {
        let state = self.state();
        let mut crashed = MemState {
            inodes: state
                .inodes
                .iter()
                .map(|(&ino, inode)| {
                    (
                        ino,
                        Inode {
                            current: Vec::new(),
                            durable: inode.durable.clone(),
                        },
                    )
                })
                .collect(),
            next_ino: state.next_ino,
            durable_names: state.durable_names.clone(),
            dirs: state.dirs.clone(),
            ..MemState::default()
        };
        for op in state.pending.iter().take(keep) {
            crashed.persist(op);
        }
        if let Some(Pending::Write { ino, offset, data }) = state.pending.get(keep) {
            let torn = &data[..torn_bytes.min(data.len())];
            crashed.persist(&Pending::Write {
                ino: *ino,
                offset: *offset,
                data: torn.to_vec(),
            });
        }
        // Unlinked inodes are unreachable after the crash; keep the reachable ones only.
        let reachable: BTreeSet<u64> = crashed.durable_names.values().copied().collect();
        crashed.inodes.retain(|ino, _| reachable.contains(ino));
        for inode in crashed.inodes.values_mut() {
            inode.current = inode.durable.clone();
        }
        crashed.names = crashed.durable_names.clone();
        MemFs {
            state: Arc::new(Mutex::new(crashed)),
            gate: Arc::default(),
        }
    }

    /// Number of operations not yet made durable.
    pub fn pending_ops(&self) -> usize {
        self.state().pending.len()
    }

    /// Number of `sync_data` calls so far (failed ones included).
    pub fn sync_count(&self) -> u64 {
        self.state().syncs
    }

    /// Number of `sync_dir` calls so far.
    pub fn sync_dir_count(&self) -> u64 {
        self.state().dir_syncs
    }

    /// Number of `write_all_at` calls so far (failed ones included).
    pub fn write_count(&self) -> u64 {
        self.state().writes
    }

    /// The `n`-th `write_all_at` from now (`n >= 1`) fails with `EIO` and writes nothing.
    pub fn fail_nth_write(&self, n: u64) {
        let mut state = self.state();
        state.fail_write_at = Some(state.writes + n.max(1));
    }

    /// The `n`-th `sync_data` from now (`n >= 1`) fails with `EIO` and persists nothing.
    pub fn fail_nth_sync(&self, n: u64) {
        let mut state = self.state();
        state.fail_sync_at = Some(state.syncs + n.max(1));
    }

    /// The `n`-th `sync_dir` from now (`n >= 1`) fails with `EIO` and persists nothing.
    pub fn fail_nth_sync_dir(&self, n: u64) {
        let mut state = self.state();
        state.fail_sync_dir_at = Some(state.dir_syncs + n.max(1));
    }

    /// Every `sync_data` sleeps this long first, as a real disk would.
    pub fn set_sync_delay(&self, delay: Duration) {
        self.state().sync_delay = delay;
    }

    /// From now on `sync_data` blocks (before doing anything) until [`MemFs::release_syncs`].
    pub fn hold_syncs(&self) {
        lock(&self.gate.state).held = true;
    }

    /// Lets held and future `sync_data` calls proceed.
    pub fn release_syncs(&self) {
        lock(&self.gate.state).held = false;
        self.gate.changed.notify_all();
    }

    /// Blocks until at least `n` threads are waiting at the gate set by [`MemFs::hold_syncs`].
    pub fn wait_for_held_syncs(&self, n: usize) {
        let mut gate = lock(&self.gate.state);
        while gate.waiting < n {
            gate = self
                .gate
                .changed
                .wait(gate)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Current (not necessarily durable) content of `path`.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        let ino = state.names.get(path)?;
        state.inodes.get(ino).map(|inode| inode.current.clone())
    }

    /// XORs `mask` into the byte at `offset` of `path`, in both the current and the durable
    /// image: media corruption, not a write.
    pub fn corrupt(&self, path: &Path, offset: u64, mask: u8) -> io::Result<()> {
        let mut state = self.state();
        let ino = state.lookup(path)?;
        let inode = state.inode_mut(ino)?;
        for image in [&mut inode.current, &mut inode.durable] {
            if let Some(byte) = image.get_mut(offset as usize) {
                *byte ^= mask;
            }
        }
        Ok(())
    }

    /// Cuts `path` to `len` bytes in both images, as a filesystem that lost the end of a file.
    pub fn truncate_file(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state();
        let ino = state.lookup(path)?;
        let inode = state.inode_mut(ino)?;
        inode.current.truncate(len as usize);
        inode.durable.truncate(len as usize);
        Ok(())
    }

    /// Replaces the whole content of `path` (creating it) in both images, durably.
    pub fn put_file(&self, path: &Path, bytes: &[u8]) {
        let mut state = self.state();
        let ino = match state.names.get(path) {
            Some(&ino) => ino,
            None => {
                let ino = state.next_ino;
                state.next_ino += 1;
                state.names.insert(path.to_path_buf(), ino);
                state.durable_names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        state.inodes.insert(
            ino,
            Inode {
                current: bytes.to_vec(),
                durable: bytes.to_vec(),
            },
        );
    }
}

struct MemFile {
    fs: MemFs,
    ino: u64,
}

impl LogFile for MemFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let state = self.fs.state();
        let image = &state.inode(self.ino)?.current;
        let start = offset as usize;
        let end = start.checked_add(buf.len());
        match end {
            Some(end) if end <= image.len() => {
                buf.copy_from_slice(&image[start..end]);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end of file",
            )),
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.fs.state();
        state.writes += 1;
        if state.fail_write_at == Some(state.writes) {
            return Err(eio("write"));
        }
        apply_write(&mut state.inode_mut(self.ino)?.current, offset, buf);
        state.pending.push(Pending::Write {
            ino: self.ino,
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut gate = lock(&self.fs.gate.state);
            if gate.held {
                gate.waiting += 1;
                self.fs.gate.changed.notify_all();
                while gate.held {
                    gate = self
                        .fs
                        .gate
                        .changed
                        .wait(gate)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                gate.waiting -= 1;
            }
        }
        let delay = self.fs.state().sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut state = self.fs.state();
        state.syncs += 1;
        let failed = state.fail_sync_at == Some(state.syncs);
        let pending = std::mem::take(&mut state.pending);
        let (mine, others): (Vec<Pending>, Vec<Pending>) = pending
            .into_iter()
            .partition(|op| op.ino() == Some(self.ino));
        state.pending = others;
        if failed {
            // As Linux does after a writeback error: the dirty pages are dropped from the
            // writeback queue (still readable, never persisted), so a later successful sync
            // proves nothing about them.
            return Err(eio("fdatasync"));
        }
        for op in &mine {
            state.persist(op);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.fs.state();
        state.inode_mut(self.ino)?.current.resize(len as usize, 0);
        state.pending.push(Pending::SetLen { ino: self.ino, len });
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.fs.state().inode(self.ino)?.current.len() as u64)
    }
}

struct MemLock {
    fs: MemFs,
    path: PathBuf,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.fs.state().locks.remove(&self.path);
    }
}

impl FileSystem for MemFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        if !state.dirs.contains(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", dir.display()),
            ));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let ino = self.state().lookup(path)?;
        Ok(Arc::new(MemFile {
            fs: self.clone(),
            ino,
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let mut state = self.state();
        state.require_dir(path)?;
        let ino = match state.names.get(path) {
            Some(&ino) => {
                state.inode_mut(ino)?.current.clear();
                state.pending.push(Pending::SetLen { ino, len: 0 });
                ino
            }
            None => {
                let ino = state.next_ino;
                state.next_ino += 1;
                state.inodes.insert(ino, Inode::default());
                state.names.insert(path.to_path_buf(), ino);
                state.pending.push(Pending::Link {
                    path: path.to_path_buf(),
                    ino,
                });
                ino
            }
        };
        drop(state);
        Ok(Arc::new(MemFile {
            fs: self.clone(),
            ino,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.lookup(path)?;
        state.names.remove(path);
        state.pending.push(Pending::Unlink {
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        let ino = state.lookup(from)?;
        state.require_dir(to)?;
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), ino);
        state.pending.push(Pending::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.dir_syncs += 1;
        if state.fail_sync_dir_at == Some(state.dir_syncs) {
            return Err(eio("directory fsync"));
        }
        let pending = std::mem::take(&mut state.pending);
        let (mine, others): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(|op| op.dir() == Some(dir));
        for op in &mine {
            state.persist(op);
        }
        state.pending = others;
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut state = self.state();
        if !state.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked", path.display()),
            ));
        }
        Ok(Box::new(MemLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from("/d")
    }

    #[test]
    fn unsynced_writes_and_names_are_lost_in_a_crash() {
        let fs = MemFs::new();
        fs.create_dir_all(&dir()).unwrap();
        let a = fs.create(&dir().join("a")).unwrap();
        a.write_all_at(b"one", 0).unwrap();
        a.sync_data().unwrap();
        assert!(
            fs.crash().file_bytes(&dir().join("a")).is_none(),
            "name not synced"
        );
        fs.sync_dir(&dir()).unwrap();
        a.write_all_at(b"two", 3).unwrap();
        let crashed = fs.crash();
        assert_eq!(crashed.file_bytes(&dir().join("a")).unwrap(), b"one");
        let torn = fs.crash_keeping(0, 2);
        assert_eq!(torn.file_bytes(&dir().join("a")).unwrap(), b"onetw");
    }

    #[test]
    fn rename_is_atomic_and_durable_after_sync_dir() {
        let fs = MemFs::new();
        fs.create_dir_all(&dir()).unwrap();
        fs.put_file(&dir().join("x"), b"old");
        let tmp = fs.create(&dir().join("x.tmp")).unwrap();
        tmp.write_all_at(b"new", 0).unwrap();
        tmp.sync_data().unwrap();
        fs.rename(&dir().join("x.tmp"), &dir().join("x")).unwrap();
        assert_eq!(fs.crash().file_bytes(&dir().join("x")).unwrap(), b"old");
        fs.sync_dir(&dir()).unwrap();
        assert_eq!(fs.crash().file_bytes(&dir().join("x")).unwrap(), b"new");
    }

    #[test]
    fn injected_sync_failure_persists_nothing() {
        let fs = MemFs::new();
        fs.create_dir_all(&dir()).unwrap();
        let a = fs.create(&dir().join("a")).unwrap();
        fs.sync_dir(&dir()).unwrap();
        a.write_all_at(b"data", 0).unwrap();
        fs.fail_nth_sync(1);
        assert!(a.sync_data().is_err());
        assert_eq!(fs.crash().file_bytes(&dir().join("a")).unwrap(), b"");
        a.sync_data().unwrap();
        assert_eq!(
            fs.crash().file_bytes(&dir().join("a")).unwrap(),
            b"",
            "a retried sync must not resurrect writes whose sync failed"
        );
    }
}
