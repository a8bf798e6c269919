//! Applying committed commands: one redb write transaction per batch of Raft entries.
//!
//! Each [`Command`] is atomic: it either applies fully or, on an etcd request error, changes
//! nothing (commands validate before their first change). A local failure (I/O, corruption)
//! poisons the batch: every later `apply` and the `commit` fail, and dropping the batch rolls
//! the whole transaction back. The current and compact revisions and the caller's metadata (the
//! applied log id) are written in the same transaction as the data, so after a crash the store
//! and its "applied" marker always agree; non-durable commits may be lost together, never apart.

use cairn_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantResponse, LeaseRevokeResponse, PutRequest, PutResponse, TxnRequest, TxnResponse,
};
use cairn_proto::mvccpb::Event;
use redb::{Durability, WriteTransaction};

use crate::database::Mvcc;
use crate::error::MvccError;
use crate::format::{LEASE_KEYS, META, STATE, STATE_COMPACT, STATE_CURRENT};
use crate::writer::KvWriter;
use crate::{compact, delete_range, lease, put, txn};

/// A replicated write, applied identically on every member.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// etcd `Put`.
    Put(PutRequest),
    /// etcd `DeleteRange`.
    DeleteRange(DeleteRangeRequest),
    /// etcd `Txn`.
    Txn(TxnRequest),
    /// etcd `Compact`.
    Compact(CompactionRequest),
    /// Create lease `id` (non-zero; the server picks ids) with `ttl` seconds, already clamped by
    /// the server's policy.
    LeaseGrant {
        /// Lease id.
        id: i64,
        /// TTL in seconds.
        ttl: i64,
    },
    /// Delete lease `id` and every key attached to it.
    LeaseRevoke {
        /// Lease id.
        id: i64,
    },
}

/// The response of a successfully applied [`Command`]. Headers carry only `revision`; the server
/// fills `cluster_id`, `member_id` and `raft_term`.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Reply to [`Command::Put`].
    Put(PutResponse),
    /// Reply to [`Command::DeleteRange`].
    DeleteRange(DeleteRangeResponse),
    /// Reply to [`Command::Txn`].
    Txn(TxnResponse),
    /// Reply to [`Command::Compact`].
    Compact(CompactionResponse),
    /// Reply to [`Command::LeaseGrant`].
    LeaseGrant(LeaseGrantResponse),
    /// Reply to [`Command::LeaseRevoke`].
    LeaseRevoke(LeaseRevokeResponse),
}

/// Outcome of one applied command: its response, or the etcd error it failed with (in which
/// case it changed nothing), or a local failure (which poisoned the batch).
pub type CommandResult = Result<Response, MvccError>;

/// An open redb write transaction applying a batch of commands. Only one exists at a time per
/// store (redb serializes writers); readers keep seeing the last commit until [`Self::commit`].
pub struct WriteBatch<'a> {
    mvcc: &'a Mvcc,
    txn: WriteTransaction,
    current: i64,
    compact: i64,
    events: Vec<Event>,
    poisoned: Option<MvccError>,
}

impl<'a> WriteBatch<'a> {
    pub(crate) fn new(mvcc: &'a Mvcc, txn: WriteTransaction, current: i64, compact: i64) -> Self {
        WriteBatch {
            mvcc,
            txn,
            current,
            compact,
            events: Vec::new(),
            poisoned: None,
        }
    }

    /// Applies `cmd` at the next revision. See [`CommandResult`].
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        if let Some(cause) = &self.poisoned {
            return Err(MvccError::Poisoned(cause.to_string()));
        }
        let result = self.apply_unpoisoned(cmd);
        if let Err(e) = &result {
            if e.is_local_failure() {
                self.poisoned = Some(e.clone());
            }
        }
        result
    }

    fn apply_unpoisoned(&mut self, cmd: &Command) -> CommandResult {
        let mut w = KvWriter::open(&self.txn, self.current, self.compact)?;
        let response = match cmd {
            Command::Put(req) => Response::Put(put::apply(&mut w, req)?),
            Command::DeleteRange(req) => Response::DeleteRange(delete_range::apply(&mut w, req)?),
            Command::Txn(req) => Response::Txn(txn::apply(&mut w, req)?),
            Command::Compact(req) => Response::Compact(compact::apply(&mut w, req)?),
            Command::LeaseGrant { id, ttl } => {
                Response::LeaseGrant(lease::grant(&mut w, *id, *ttl)?)
            }
            Command::LeaseRevoke { id } => Response::LeaseRevoke(lease::revoke(&mut w, *id)?),
        };
        self.current = w.rev();
        self.compact = w.compact;
        self.events.append(&mut w.take_events());
        Ok(response)
    }

    /// Keys attached to lease `id`, ascending, including the changes of the commands applied
    /// so far in this batch (empty if none or no such lease).
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>, MvccError> {
        if let Some(cause) = &self.poisoned {
            return Err(MvccError::Poisoned(cause.to_string()));
        }
        let table = self.txn.open_table(LEASE_KEYS)?;
        lease::attached_keys(&table, id)
    }

    /// Records caller metadata (e.g. the applied log id) in this transaction.
    pub fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), MvccError> {
        self.guarded(|txn| {
            txn.open_table(META)?.insert(name, value)?;
            Ok(())
        })
    }

    /// Removes caller metadata in this transaction.
    pub fn remove_meta(&mut self, name: &str) -> Result<(), MvccError> {
        self.guarded(|txn| {
            txn.open_table(META)?.remove(name)?;
            Ok(())
        })
    }

    fn guarded(
        &mut self,
        f: impl FnOnce(&WriteTransaction) -> Result<(), MvccError>,
    ) -> Result<(), MvccError> {
        if let Some(cause) = &self.poisoned {
            return Err(MvccError::Poisoned(cause.to_string()));
        }
        let result = f(&self.txn);
        if let Err(e) = &result {
            self.poisoned = Some(e.clone());
        }
        result
    }

    /// Store revision including the commands applied so far.
    pub fn current_revision(&self) -> i64 {
        self.current
    }

    /// Compact revision including the commands applied so far.
    pub fn compact_revision(&self) -> i64 {
        self.compact
    }

    /// Commits the batch and returns the watch events of its commands, in revision order.
    ///
    /// `durable = true` fsyncs before returning (redb `Durability::Immediate`) and also makes
    /// every earlier non-durable commit durable. `durable = false` (redb `Durability::None`) makes
    /// the commit visible to readers at once but lets a crash lose it, together with every
    /// non-durable commit since the last durable one; the Raft log replays them.
    pub fn commit(mut self, durable: bool) -> Result<Vec<Event>, MvccError> {
        if let Some(cause) = self.poisoned.take() {
            return Err(MvccError::Poisoned(cause.to_string()));
        }
        {
            let mut state = self.txn.open_table(STATE)?;
            state.insert(STATE_CURRENT, self.current)?;
            state.insert(STATE_COMPACT, self.compact)?;
        }
        self.txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        self.txn.commit()?;
        self.mvcc.publish(self.current, self.compact);
        Ok(self.events)
    }

    /// Drops every change of the batch.
    pub fn abort(self) -> Result<(), MvccError> {
        self.txn.abort()?;
        Ok(())
    }
}
