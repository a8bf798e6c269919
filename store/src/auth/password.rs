//! Password hashing: bcrypt, as etcd stores passwords (`$2a$<cost>$...`).
//!
//! Hashing happens at the API edge, before a UserAdd or UserChangePassword is proposed, so a
//! clear password is never written to the Raft log, sent to a peer or stored. Both directions
//! cost milliseconds of CPU at etcd's default cost of 10: callers run them on the blocking
//! pool, never on a runtime worker.

/// etcd's `--bcrypt-cost` bounds and default.
pub const MIN_COST: u32 = 4;
pub const MAX_COST: u32 = 31;
pub const DEFAULT_COST: u32 = 10;

/// The bcrypt hash of `password` at `cost` (which the configuration has checked), in the
/// `$2a$` form etcd's Go bcrypt writes.
pub fn hash(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    Ok(bcrypt::hash_with_result(password, cost)?.format_for_version(bcrypt::Version::TwoA))
}

/// Whether `password` matches `stored`; a malformed stored hash matches nothing.
pub fn matches(password: &str, stored: &[u8]) -> bool {
    std::str::from_utf8(stored)
        .ok()
        .and_then(|h| bcrypt::verify(password, h).ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_never_contain_the_password() {
        let h = hash("s3cret-pw", MIN_COST).unwrap();
        assert!(h.starts_with("$2a$04$"), "{h}");
        assert!(!h.contains("s3cret-pw"));
        assert!(matches("s3cret-pw", h.as_bytes()));
        assert!(!matches("s3cret-px", h.as_bytes()));
        assert!(!matches("s3cret-pw", b"not a hash"));
        assert!(!matches("", b""));
    }
}
