//! openraft's log storage over our segmented log (`cairn-log`).
//!
//! Entries are stored as their [`codec`](super::codec) encoding, one record each. The vote
//! and the last purged log id are meta blobs of the log, each replaced atomically. Durability follows openraft's contract: `append` returns once the entries are
//! readable, and the callback fires only after the group commit's `fdatasync` covered them.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;

use bytes::Bytes;
use cairn_log::{Log, LogError};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::RaftLogReader;

use super::codec;
use super::{Entry, LogId, TypeConfig, Vote};

const META_PURGED: &str = "purged-log-id";

fn io_err(e: LogError) -> io::Error {
    io::Error::other(e)
}

/// Cheap to clone: every clone shares the same log.
#[derive(Clone)]
pub struct LogStore {
    log: Arc<Log>,
}

impl LogStore {
    pub fn new(log: Arc<Log>) -> Self {
        Self { log }
    }

    fn last_purged(&self) -> io::Result<Option<LogId>> {
        match self.log.read_meta(META_PURGED).map_err(io_err)? {
            Some(b) => codec::decode_opt_log_id(&b),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        let records = self.log.read(range).map_err(io_err)?;
        records
            .iter()
            .map(|(index, data)| {
                let e = codec::decode_entry(data)?;
                if e.log_id.index != *index {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("log record {index} holds entry {}", e.log_id.index),
                    ));
                }
                Ok(e)
            })
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        match self.log.read_vote().map_err(io_err)? {
            Some(b) => Ok(Some(codec::decode_vote(&b)?)),
            None => Ok(None),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id = self.last_purged()?;
        let last_log_id = match self.log.last_index() {
            Some(last) => {
                let data = self.log.entry(last).map_err(io_err)?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("log entry {last} vanished"),
                    )
                })?;
                Some(codec::decode_entry(&data)?.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.log
            .save_vote(&codec::encode_vote(vote))
            .map_err(io_err)
    }

    // The committed log id is deliberately not persisted (openraft's default): it is only a
    // restart shortcut, and saving it atomically costs two extra syncs (file + directory) on
    // every commit — two thirds of a single client's write latency. After a restart the
    // applied id in the state machine and the next leader's commit index restore it.

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let records: Vec<(u64, Bytes)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, Bytes::from(codec::encode_entry(&e))))
            .collect();
        self.log
            .append(records, move |r| callback.io_completed(r.map_err(io_err)))
            .map_err(io_err)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.log.truncate(from).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The purged id is recorded before entries go, so a crash in between leaves entries
        // that are merely unreachable, never a gap openraft does not know about.
        self.log
            .save_meta(META_PURGED, &codec::encode_opt_log_id(Some(&log_id)))
            .map_err(io_err)?;
        self.log.purge(log_id.index).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::state_machine::StateMachine;
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::StorageError;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = Log::open(
                dir.path().join("log"),
                cairn_log::LogOptions {
                    segment_size: 16 * 1024,
                    ..Default::default()
                },
            )
            .expect("open log");
            let mvcc = cairn_mvcc::Mvcc::open(&dir.path().join("db")).expect("open mvcc");
            let (tx, _rx) = tokio::sync::watch::channel(0);
            let sm = StateMachine::new(Arc::new(mvcc), tx).expect("state machine");
            Ok((dir, LogStore::new(Arc::new(log)), sm))
        }
    }

    /// openraft's own storage conformance suite, run on our log and state machine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
        Suite::test_all(Builder).await?;
        Ok(())
    }
}
