//! etcd's "simple" tokens: `<16 random letters>.<raft index>`.
//!
//! The member that answers Authenticate draws the random prefix and proposes it through the
//! log; every member, applying that entry, records `prefix.index -> user` here, so a token is
//! valid on any member once it has applied the entry (a member asked about a token whose
//! index it has not applied yet first waits for it — see `Node::caller`). Tokens live in
//! memory only: a restarted member forgets them, as etcd's do.
//!
//! Each member keeps its own expiry clock: a token lapses `ttl` after it was issued or last
//! used on that member (`--auth-token-ttl`, 300 s by default). Expired tokens are dropped
//! when met and in a sweep at most once a second, so the table holds at most what
//! authenticate traffic issues within one TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Length of the random part of a token (etcd's `simpleTokenLength`).
pub const PREFIX_LEN: usize = 16;

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A fresh random token prefix.
pub fn random_prefix() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; PREFIX_LEN];
    getrandom::fill(&mut raw)?;
    // 52 letters: the modulo bias (256 = 4*52 + 48) is irrelevant for an unguessable id of
    // 16 letters, which the index suffix makes unique anyway.
    Ok(raw
        .iter()
        .map(|b| LETTERS[*b as usize % LETTERS.len()] as char)
        .collect())
}

/// The raft index a well-formed simple token names, if it is one.
pub fn token_index(token: &str) -> Option<u64> {
    let (prefix, index) = token.split_once('.')?;
    if prefix.len() != PREFIX_LEN || !prefix.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    index.parse().ok()
}

struct Entry {
    user: String,
    expires: Instant,
}

/// The tokens this member knows.
pub struct Tokens {
    ttl: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    tokens: HashMap<String, Entry>,
    last_sweep: Instant,
}

impl Tokens {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(Inner {
                tokens: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a token issued to `user`.
    pub fn assign(&self, token: String, user: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        if now.duration_since(inner.last_sweep) >= SWEEP_EVERY {
            inner.tokens.retain(|_, e| e.expires > now);
            inner.last_sweep = now;
        }
        inner.tokens.insert(
            token,
            Entry {
                user: user.to_string(),
                expires: now + self.ttl,
            },
        );
    }

    /// The user a live token belongs to; using a token restarts its TTL.
    pub fn user_of(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut inner = self.lock();
        let entry = inner.tokens.get_mut(token)?;
        if entry.expires <= now {
            inner.tokens.remove(token);
            return None;
        }
        entry.expires = now + self.ttl;
        Some(entry.user.clone())
    }

    /// Forgets every token of `user` (deleted, or given a new password).
    pub fn invalidate_user(&self, user: &str) {
        self.lock().tokens.retain(|_, e| e.user != user);
    }

    /// Forgets every token (auth disabled).
    pub fn clear(&self) {
        self.lock().tokens.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_letters_and_tokens_parse() {
        let p = random_prefix().unwrap();
        assert_eq!(p.len(), PREFIX_LEN);
        assert!(p.bytes().all(|b| b.is_ascii_alphabetic()));
        assert_ne!(p, random_prefix().unwrap());
        assert_eq!(token_index(&format!("{p}.42")), Some(42));
        for bad in ["", "abc.1", &p, &format!("{p}.x"), &format!("{p}.-1")] {
            assert_eq!(token_index(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_expire_unless_used_and_are_invalidated_per_user() {
        let t = Tokens::new(Duration::from_millis(200));
        t.assign("a.1".into(), "alice");
        t.assign("b.2".into(), "bob");
        assert_eq!(t.user_of("a.1").as_deref(), Some("alice"));
        t.invalidate_user("alice");
        assert_eq!(t.user_of("a.1"), None);
        // Used every 100 ms, bob's token outlives its 200 ms TTL.
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(t.user_of("b.2").as_deref(), Some("bob"));
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.user_of("b.2"), None, "expired once left alone");
        assert!(t.is_empty());
        t.assign("c.3".into(), "carol");
        t.clear();
        assert_eq!(t.user_of("c.3"), None);
    }
}
