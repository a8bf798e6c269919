//! Member and cluster ids.
//!
//! Like etcd's, ids are derived deterministically from the bootstrap configuration, so every
//! member of a new cluster computes the same ids for everyone without talking: a member's id
//! hashes its sorted peer URLs with the cluster token, the cluster id hashes the sorted
//! member ids. Once chosen they are stored in `member/identity` and never recomputed, so a
//! restart with different flags keeps the member's identity.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::config::{Config, InitialMember};

const FILE: &str = "identity";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
}

/// 64-bit FNV-1a, folded with a final mix so ids spread over the whole range.
fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator, so ["ab","c"] and ["a","bc"] differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    // 0 means "no member" on the wire.
    h.max(1)
}

pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let joined = urls.join("");
    hash64(&[joined.as_bytes(), token.as_bytes()])
}

pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    hash64(&[&bytes, token.as_bytes()])
}

/// Reads the stored identity, or derives it from the flags and stores it durably.
pub fn load_or_create(
    member_dir: &Path,
    cfg: &Config,
    initial: &[InitialMember],
) -> anyhow::Result<Identity> {
    if let Some(ident) = load(member_dir)? {
        return Ok(ident);
    }
    let me = initial
        .iter()
        .find(|m| m.name == cfg.name)
        .context("this member is not in --initial-cluster")?;
    let token = &cfg.initial_cluster_token;
    let ids: Vec<u64> = initial
        .iter()
        .map(|m| member_id(&m.peer_urls, token))
        .collect();
    let ident = Identity {
        member_id: member_id(&me.peer_urls, token),
        cluster_id: cluster_id(&ids, token),
    };
    store(member_dir, ident)?;
    Ok(ident)
}

/// The stored identity, if this data dir has one.
pub fn load(member_dir: &Path) -> anyhow::Result<Option<Identity>> {
    let path = member_dir.join(FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let mut ids = text.split_whitespace().map(|s| u64::from_str_radix(s, 16));
    if let (Some(Ok(member_id)), Some(Ok(cluster_id))) = (ids.next(), ids.next()) {
        return Ok(Some(Identity {
            member_id,
            cluster_id,
        }));
    }
    anyhow::bail!("{} is corrupt: {text:?}", path.display());
}

/// Stores an identity durably (write, fsync, rename, fsync the directory).
pub fn store(member_dir: &Path, ident: Identity) -> anyhow::Result<()> {
    let path = member_dir.join(FILE);
    let tmp = member_dir.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{:016x} {:016x}", ident.member_id, ident.cluster_id)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(member_dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_urls_and_token_only() {
        let a = member_id(&["http://a:2380".into(), "http://b:2380".into()], "t");
        let b = member_id(&["http://b:2380".into(), "http://a:2380".into()], "t");
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://a:2380".into()], "t"));
        assert_ne!(
            a,
            member_id(&["http://a:2380".into(), "http://b:2380".into()], "u")
        );
        assert_eq!(cluster_id(&[3, 1, 2], "t"), cluster_id(&[1, 2, 3], "t"));
    }
}
