//! The events of one key range from a revision on, in revision order, each exactly once: read
//! from the watch hub's window of recent events, or from redb when the window no longer reaches
//! back that far, and waited for by subscribing to the hub's head revision — no polling.

use std::collections::VecDeque;
use std::sync::Arc;

use cairn_mvcc::{KeyRange, Mvcc};
use cairn_proto::mvccpb::Event;
use tokio::sync::watch;

use crate::node::Node;
use crate::server::errors::EtcdError;
use crate::watch::hub::ReadLimit;
use crate::watch::WatchHub;

/// At most this much is read at once (whole revisions).
const READ_LIMIT: ReadLimit = ReadLimit {
    max_events: 256,
    max_bytes: 1024 * 1024,
};

pub struct KeyEvents {
    hub: Arc<WatchHub>,
    mvcc: Arc<Mvcc>,
    head: watch::Receiver<i64>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// First revision not read yet.
    next: i64,
    ready: VecDeque<Event>,
}

impl KeyEvents {
    /// Events of `key` / `range_end` (etcd's range convention) with revisions `>= from`.
    pub fn new(node: &Node, key: &[u8], range_end: &[u8], from: i64) -> Self {
        let hub = node.watch_hub.clone();
        // Subscribed before anything is read, so a commit published after a read wakes us.
        let head = hub.subscribe();
        Self {
            hub,
            mvcc: node.mvcc.clone(),
            head,
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            next: from.max(1),
            ready: VecDeque::new(),
        }
    }

    /// The next event, waiting until one is committed. `Compacted` if the history from the
    /// start revision is gone (a watch from there would be canceled the same way).
    pub async fn next(&mut self) -> Result<Event, EtcdError> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(ev);
            }
            let head = self.hub.head();
            if self.next <= head {
                self.read(head)?;
                continue;
            }
            self.head.changed().await.map_err(|_| EtcdError::Stopped)?;
        }
    }

    fn read(&mut self, head: i64) -> Result<(), EtcdError> {
        let keys = KeyRange::new(&self.key, &self.range_end);
        match self.hub.read(self.next, head, keys, READ_LIMIT) {
            Some(chunk) => {
                self.ready
                    .extend(chunk.events.iter().map(|ev| ev.event().clone()));
                self.next = chunk.through + 1;
            }
            None => {
                let batch = self
                    .mvcc
                    .events(self.next, &self.key, &self.range_end, READ_LIMIT.max_events)
                    .map_err(EtcdError::from)?;
                self.ready.extend(batch.events);
                self.next = batch.next_revision.max(self.next);
            }
        }
        Ok(())
    }
}
