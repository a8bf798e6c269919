//! etcd's concurrency recipes (`clientv3/concurrency`), run inside the member for the Election
//! and Lock services, as etcd's `v3election` / `v3lock` servers run them over an in-process
//! client:
//!
//! - [`client`]: the KV calls the recipes make — through the KV service, so validation,
//!   errors and headers are the KV API's — and waiting for a key's deletion;
//! - [`key_events`]: the events of a key range from a revision on, read from the watch hub
//!   (or redb once the hub's window has moved past), waking on each published commit;
//! - [`election`]: Campaign, Proclaim, Resign, Leader, Observe;
//! - [`mutex`]: Lock, Unlock.
//!
//! Invariants (etcd's): a contender's key is `name + "/" + lease id in lower-case hex`, written
//! with that lease, so it disappears with the lease; the contender whose key has the lowest
//! create revision under the prefix leads / holds the lock; each waiter waits only for the
//! deletion of the key created just before its own, one at a time, driven by events; a waiter
//! whose client gives up removes its own key.

pub mod client;
pub mod election;
pub mod key_events;
pub mod mutex;

/// The range end that makes `key` a prefix (etcd's `GetPrefixRangeEnd`): the prefix with its
/// last byte below 0xff incremented and everything after it dropped; `[0]` (every key from the
/// prefix on) when every byte is 0xff.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A contender's key: `prefix` (which ends in "/") and the lease id in hex, as etcd's recipes
/// format it with `%x`.
pub fn contender_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_are_etcds() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn contender_keys_use_lower_hex() {
        assert_eq!(
            contender_key(b"e/", 0x694d7c5a1b2c3d4e),
            b"e/694d7c5a1b2c3d4e".to_vec()
        );
        assert_eq!(contender_key(b"e/", 0), b"e/0".to_vec());
    }
}
