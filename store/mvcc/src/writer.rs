//! The write primitives of one command: put a key, delete a key, each at the command's revision.
//!
//! Mirrors etcd's `storeTxnWrite`: a command that changes something takes main revision
//! `begin + 1`, and its changes take sub revisions 0, 1, 2, ... in order. Each change updates
//! `HISTORY`, `INDEX`, `LIVE` and `LEASE_KEYS` together, so the table invariants of
//! [`crate::format`] hold after every change, and records the watch event it produces.
//!
//! Commands validate everything before their first change: once a change is made, only a local
//! storage failure can stop the command, and such a failure poisons the whole batch.

use cairn_proto::mvccpb::{event::EventType, Event, KeyValue};
use redb::{Table, WriteTransaction};

use crate::error::MvccError;
use crate::format::{
    encode_change, encode_kv, Bytes, IndexKey, LeaseKey, RevKey, HISTORY, INDEX, KIND_PUT,
    KIND_TOMBSTONE, LEASES, LEASE_KEYS, LIVE,
};
use crate::revision::to_key;
use crate::view::KvView;

/// The tables of a write transaction, opened for one command.
pub(crate) struct KvWriter<'t> {
    pub(crate) live: Table<'t, Bytes, Bytes>,
    pub(crate) index: Table<'t, IndexKey, u8>,
    pub(crate) history: Table<'t, RevKey, Bytes>,
    pub(crate) leases: Table<'t, i64, i64>,
    pub(crate) lease_keys: Table<'t, LeaseKey, ()>,
    /// Store revision before this command.
    begin_rev: i64,
    /// Compact revision; only `Compact` changes it.
    pub(crate) compact: i64,
    /// Changes made so far; the next change's sub revision.
    changes: u64,
    events: Vec<Event>,
    buf: Vec<u8>,
}

impl<'t> KvWriter<'t> {
    pub(crate) fn open(
        txn: &'t WriteTransaction,
        begin_rev: i64,
        compact: i64,
    ) -> Result<Self, MvccError> {
        Ok(KvWriter {
            live: txn.open_table(LIVE)?,
            index: txn.open_table(INDEX)?,
            history: txn.open_table(HISTORY)?,
            leases: txn.open_table(LEASES)?,
            lease_keys: txn.open_table(LEASE_KEYS)?,
            begin_rev,
            compact,
            changes: 0,
            events: Vec::new(),
            buf: Vec::new(),
        })
    }

    /// A read view of the key space including this command's changes so far.
    pub(crate) fn view(
        &self,
    ) -> KvView<'_, Table<'t, Bytes, Bytes>, Table<'t, IndexKey, u8>, Table<'t, RevKey, Bytes>>
    {
        KvView {
            live: &self.live,
            index: &self.index,
            history: &self.history,
            current: self.rev(),
            compact: self.compact,
        }
    }

    /// Revision this command's changes take.
    pub(crate) fn write_rev(&self) -> i64 {
        self.begin_rev + 1
    }

    /// Store revision as of now: `begin + 1` once anything changed, as etcd's `Rev()` after End.
    pub(crate) fn rev(&self) -> i64 {
        if self.changed() {
            self.write_rev()
        } else {
            self.begin_rev
        }
    }

    /// True once this command has made a change.
    pub(crate) fn changed(&self) -> bool {
        self.changes > 0
    }

    /// True if lease `id` exists.
    pub(crate) fn lease_exists(&self, id: i64) -> Result<bool, MvccError> {
        use redb::ReadableTable;
        Ok(self.leases.get(id)?.is_some())
    }

    /// Events of the changes made, in order.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn next_sub(&mut self) -> RevKey {
        let at = (to_key(self.write_rev()), self.changes);
        self.changes += 1;
        at
    }

    /// Writes `key = value` with `lease`; `prev` must be the key's current `KeyValue`.
    /// Version and create revision continue from `prev`, or restart when the key is absent.
    pub(crate) fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        prev: Option<KeyValue>,
    ) -> Result<(), MvccError> {
        let rev = self.write_rev();
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (rev, 1),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: rev,
            version,
            value,
            lease,
        };
        let at = self.next_sub();
        encode_change(&mut self.buf, KIND_PUT, &kv);
        self.history.insert(at, self.buf.as_slice())?;
        self.index.insert((key, at.0, at.1), KIND_PUT)?;
        encode_kv(&mut self.buf, &kv);
        self.live.insert(key, self.buf.as_slice())?;
        // Detach then attach, as etcd does, so re-putting with the same lease keeps it attached.
        if let Some(old) = prev.as_ref().map(|p| p.lease).filter(|&l| l != 0) {
            self.lease_keys.remove((old, key))?;
        }
        if lease != 0 {
            self.lease_keys.insert((lease, key), ())?;
        }
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev,
        });
        Ok(())
    }

    /// Deletes the key of `prev`, its current `KeyValue`: writes a tombstone, drops it from
    /// `LIVE` and detaches it from its lease.
    pub(crate) fn delete(&mut self, prev: KeyValue) -> Result<(), MvccError> {
        let rev = self.write_rev();
        let at = self.next_sub();
        // etcd stores a tombstone as a KeyValue holding only the key.
        let tombstone = KeyValue {
            key: prev.key.clone(),
            ..KeyValue::default()
        };
        encode_change(&mut self.buf, KIND_TOMBSTONE, &tombstone);
        self.history.insert(at, self.buf.as_slice())?;
        self.index
            .insert((prev.key.as_slice(), at.0, at.1), KIND_TOMBSTONE)?;
        self.live.remove(prev.key.as_slice())?;
        if prev.lease != 0 {
            self.lease_keys.remove((prev.lease, prev.key.as_slice()))?;
        }
        // Watchers see the delete revision in the tombstone's mod_revision, as etcd patches it.
        let kv = KeyValue {
            mod_revision: rev,
            ..tombstone
        };
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv: Some(prev),
        });
        Ok(())
    }
}
