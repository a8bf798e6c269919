//! Backup files: what `Maintenance.Snapshot` streams and `cairn-store snapshot restore` reads.
//!
//! A backup is laid out as etcd's snapshot stream is, so etcd's tools accept it: a body whose
//! length is a multiple of 512 bytes, then the SHA-256 of the body (32 bytes), which detects a
//! truncated or damaged download before anything is restored. The body is the state-machine
//! image (format in docs/mvcc-format.md), zero padding, and the image length as a
//! little-endian u64 in the body's last 8 bytes.
//!
//! Restoring builds a fresh data directory for a NEW cluster: the keys, revisions and leases
//! of the backup, no Raft history, and the membership given on the command line (like
//! `etcdutl snapshot restore`).

use std::path::Path;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::server::identity;

/// Length of the checksum trailer.
pub const TRAILER_LEN: usize = 32;

/// The body of a backup is a whole number of these.
const BODY_ALIGN: usize = 512;

/// Pads an image and appends its length and the checksum trailer, making it a backup.
pub fn seal(mut image: Vec<u8>) -> Vec<u8> {
    let tail = seal_tail(image.len() as u64, Sha256::new_with_prefix(&image));
    image.extend_from_slice(&tail);
    image
}

/// Size of the backup made of an image of `image_len` bytes.
pub fn sealed_len(image_len: u64) -> u64 {
    (image_len + 8).div_ceil(BODY_ALIGN as u64) * BODY_ALIGN as u64 + TRAILER_LEN as u64
}

/// What follows an image of `image_len` bytes in its backup (padding, length, checksum), given
/// `hasher` fed with the image: for a backup streamed without holding the image in memory.
pub fn seal_tail(image_len: u64, mut hasher: Sha256) -> Vec<u8> {
    let padding = sealed_len(image_len) - TRAILER_LEN as u64 - 8 - image_len;
    let mut tail = vec![0; padding as usize];
    tail.extend_from_slice(&image_len.to_le_bytes());
    hasher.update(&tail);
    tail.extend_from_slice(&hasher.finalize());
    tail
}

/// Checks a backup's trailer and returns the image inside it.
pub fn open(backup: &[u8]) -> anyhow::Result<&[u8]> {
    if backup.len() < TRAILER_LEN + 8 {
        bail!(
            "backup is {} bytes, too short to hold its checksum",
            backup.len()
        );
    }
    let (body, trailer) = backup.split_at(backup.len() - TRAILER_LEN);
    if Sha256::digest(body).as_slice() != trailer {
        bail!("backup checksum mismatch: the file is truncated or damaged");
    }
    let (padded, len) = body.split_at(body.len() - 8);
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
    if len > padded.len() {
        bail!(
            "backup names an image of {len} bytes in a body of {}",
            padded.len()
        );
    }
    Ok(&padded[..len])
}

/// What a backup holds, for `cairn-store snapshot status`.
pub struct BackupStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_keys: usize,
    pub total_size: usize,
}

pub fn status(path: &Path) -> anyhow::Result<BackupStatus> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let image = open(&bytes)?;
    let dir = tempfile_dir(path)?;
    let mvcc = cairn_mvcc::Mvcc::open(&dir.join("db"))?;
    let info = mvcc.install_snapshot(image)?;
    let all = mvcc.range(&cairn_proto::etcdserverpb::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        count_only: true,
        ..Default::default()
    })?;
    drop(mvcc);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(BackupStatus {
        hash: crc32fast::hash(image),
        revision: info.current_revision,
        total_keys: all.count as usize,
        total_size: bytes.len(),
    })
}

fn tempfile_dir(near: &Path) -> anyhow::Result<std::path::PathBuf> {
    let base = std::env::temp_dir().join(format!(
        "cairn-backup-{}-{}",
        std::process::id(),
        near.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("backup")
    ));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}

/// Creates `cfg.data_dir()` from a backup, for a new cluster described by `cfg`'s
/// `--name`, `--initial-cluster`, `--initial-cluster-token` and
/// `--initial-advertise-peer-urls`. Refuses to touch an existing data directory.
pub fn restore(backup_path: &Path, cfg: &Config) -> anyhow::Result<()> {
    cfg.validate()?;
    let data_dir = cfg.data_dir();
    if data_dir.exists() {
        bail!("data-dir {:?} exists", data_dir.display().to_string());
    }
    let bytes =
        std::fs::read(backup_path).with_context(|| format!("reading {}", backup_path.display()))?;
    let image = open(&bytes)?;
    let member_dir = data_dir.join("member");
    std::fs::create_dir_all(&member_dir)?;
    let result = (|| -> anyhow::Result<()> {
        let mvcc = cairn_mvcc::Mvcc::open(&member_dir.join("db"))?;
        let info = mvcc.install_snapshot(image)?;
        // The new cluster starts its own Raft history: drop the old one's position, its
        // membership and what its members published. Users, roles and permissions belong
        // to the data and are kept, as etcd's restore keeps its auth buckets.
        let mut batch = mvcc.begin()?;
        for name in info.meta.keys() {
            if name != crate::auth::META_AUTH {
                batch.remove_meta(name)?;
            }
        }
        batch.commit(true)?;
        identity::load_or_create(&member_dir, cfg, &cfg.initial_members()?)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&data_dir);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_backups_are_refused() {
        let sealed = seal(b"image bytes".to_vec());
        assert_eq!(
            (sealed.len() - TRAILER_LEN) % BODY_ALIGN,
            0,
            "etcd's tools check this"
        );
        assert_eq!(open(&sealed).unwrap(), b"image bytes");
        assert_eq!(sealed.len() as u64, sealed_len(11));
        let exact = seal(vec![7; BODY_ALIGN - 8]);
        assert_eq!(exact.len(), BODY_ALIGN + TRAILER_LEN);
        assert_eq!(open(&exact).unwrap(), vec![7; BODY_ALIGN - 8].as_slice());
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert!(open(&flipped).is_err());
        assert!(open(&sealed[..sealed.len() - 1]).is_err());
        assert!(open(&[]).is_err());
    }
}
