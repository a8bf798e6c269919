//! Small named blobs (vote, committed, purge point) kept in files that are replaced atomically.
//!
//! Save: write `<name>.meta.tmp`, `fdatasync` it, rename it over `<name>.meta`, `fsync` the
//! directory. A crash at any point leaves either the old or the new `<name>.meta`; tmp leftovers
//! are deleted on open. Each file carries a checksum (see `format::encode_meta`), so a damaged
//! final file is reported as corruption instead of being read as a value.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::LogError;
use crate::format;
use crate::fs::FileSystem;

/// Meta name under which the log records its own purge point. User names cannot start with `_`.
pub(crate) const PURGED_META: &str = "_purged";

const MAX_NAME_LEN: usize = 64;

/// Rejects names that would not make a plain, non-reserved file name.
pub(crate) fn validate_user_name(name: &str) -> Result<(), LogError> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if first_ok && rest_ok && name.len() <= MAX_NAME_LEN {
        Ok(())
    } else {
        Err(LogError::InvalidMetaName(name.to_owned()))
    }
}

pub(crate) struct MetaStore {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// Serialises saves: two concurrent saves of one name would share its tmp file.
    save_lock: Mutex<()>,
}

impl MetaStore {
    pub(crate) fn new(fs: Arc<dyn FileSystem>, dir: PathBuf) -> Self {
        Self {
            fs,
            dir,
            save_lock: Mutex::new(()),
        }
    }

    /// Deletes tmp files a crash left behind; they never hold the current value.
    pub(crate) fn remove_tmp_leftovers(&self, names: &[String]) -> Result<(), LogError> {
        for name in names.iter().filter(|n| n.ends_with(format::TMP_SUFFIX)) {
            let path = self.dir.join(name);
            self.fs
                .remove(&path)
                .map_err(|e| LogError::io("remove", &path, e))?;
        }
        Ok(())
    }

    /// Durably replaces the value of `name`. Blocks for two syncs.
    pub(crate) fn save(&self, name: &str, value: &[u8]) -> Result<(), LogError> {
        let _serial = self
            .save_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let tmp = self.dir.join(format::meta_tmp_file_name(name));
        let path = self.dir.join(format::meta_file_name(name));
        let file = self
            .fs
            .create(&tmp)
            .map_err(|e| LogError::io("create", &tmp, e))?;
        file.write_all_at(&format::encode_meta(value), 0)
            .map_err(|e| LogError::io("write", &tmp, e))?;
        file.sync_data()
            .map_err(|e| LogError::io("fdatasync", &tmp, e))?;
        self.fs
            .rename(&tmp, &path)
            .map_err(|e| LogError::io("rename", &tmp, e))?;
        self.sync_dir()
    }

    /// The value of `name`, `None` if it was never saved.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
        let path = self.dir.join(format::meta_file_name(name));
        let file = match self.fs.open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("open", &path, e)),
        };
        let size = file.size().map_err(|e| LogError::io("stat", &path, e))?;
        let mut bytes = vec![0u8; size as usize];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| LogError::io("read", &path, e))?;
        match format::decode_meta(&bytes) {
            Ok(payload) => Ok(Some(payload.to_vec())),
            Err((offset, reason)) => Err(LogError::corrupt(&path, offset, reason)),
        }
    }

    fn sync_dir(&self) -> Result<(), LogError> {
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| LogError::io("fsync directory", &self.dir, e))
    }
}
