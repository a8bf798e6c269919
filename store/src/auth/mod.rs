//! etcd's authentication and authorization (users, roles, key-range permissions, simple
//! tokens), with etcd 3.4/3.5 semantics and error texts.
//!
//! - [`command`]: the replicated auth commands and the [`Caller`] identity a request carries
//!   through the log;
//! - [`state`]: the replicated auth store and its rules (apply, permission and admin checks);
//! - [`perms`]: key-range permission intervals, etcd's range-permission semantics;
//! - [`access`]: which permission each replicated request needs when it is applied;
//! - [`tokens`]: etcd's "simple" tokens, per member, with their TTL;
//! - [`password`]: bcrypt hashing at the API edge.
//!
//! [`Auth`] is one member's view: the replicated [`AuthState`] (kept equal to the log by the
//! state machine, see `raft::state_machine`), this member's tokens, and an atomic copy of
//! "auth enabled" so that a request costs one atomic load while auth is disabled.
//!
//! The flow of a request while auth is enabled: the receiving member turns the `token`
//! metadata into a [`Caller`] (waiting, if needed, until it has applied the entry that issued
//! the token), checks reads itself, and sends writes through the log wrapped with that caller
//! (`Command::As`), also when it forwards them to the leader; every member checks them again
//! when applying, at the auth revision of that point in the log, as etcd's apply-time checks
//! do. A request admitted while auth was disabled is applied unchecked even if an auth enable
//! commits just before it (etcd would refuse it with "user name is empty").

pub mod access;
pub use cairn_wire::auth_command as command;
pub mod password;
pub mod perms;
pub mod state;
pub mod tokens;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

pub use command::{AuthCommand, Caller};
pub use perms::Access;
pub use state::{AuthState, TokenEffect, META_AUTH};
use tokens::Tokens;

use crate::raft::Command;
use crate::server::errors::EtcdError;

/// gRPC metadata keys a token may come in (etcd's `TokenFieldNameGRPC` and, from its JSON
/// gateway, `TokenFieldNameSwagger`).
pub const TOKEN_METADATA: [&str; 2] = ["token", "authorization"];

/// One member's view of auth.
pub struct Auth {
    enabled: AtomicBool,
    state: RwLock<AuthState>,
    tokens: Tokens,
    bcrypt_cost: u32,
}

impl Auth {
    pub fn new(token_ttl: Duration, bcrypt_cost: u32) -> Self {
        Self {
            enabled: AtomicBool::new(false),
            state: RwLock::new(AuthState::default()),
            tokens: Tokens::new(token_ttl),
            bcrypt_cost,
        }
    }

    /// Whether auth is enabled: the whole cost of auth on a request while it is not.
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub fn state(&self) -> RwLockReadGuard<'_, AuthState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the view with the store persisted in the state machine (`None`: no auth
    /// state was ever written). Tokens are kept: they still name users, which are checked
    /// on use.
    pub fn load(&self, persisted: Option<&[u8]>) -> io::Result<()> {
        let loaded = match persisted {
            Some(b) => AuthState::decode(b)?,
            None => AuthState::default(),
        };
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        self.enabled.store(loaded.enabled(), Ordering::Release);
        *state = loaded;
        Ok(())
    }

    /// Applies a committed auth command at log index `index`: changes the view, carries out
    /// the token effect and returns the issued token (Authenticate) and the encoded store to
    /// persist (`None` when nothing changed).
    pub fn apply(
        &self,
        cmd: &AuthCommand,
        index: u64,
    ) -> Result<(Option<String>, Option<Vec<u8>>), EtcdError> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let before = (state.enabled(), state.revision());
        let effect = state.apply(cmd, index)?;
        // Every change moves the revision, except enable, which flips `enabled`.
        let changed = before != (state.enabled(), state.revision());
        self.enabled.store(state.enabled(), Ordering::Release);
        let persisted = changed.then(|| state.encode());
        drop(state);
        if let Some(what) = persisted.as_ref().map(|_| cmd.name()) {
            tracing::info!(command = what, "auth store changed");
        }
        let token = match effect {
            TokenEffect::None => None,
            TokenEffect::Issue { token, user } => {
                self.tokens.assign(token.clone(), &user);
                Some(token)
            }
            TokenEffect::InvalidateUser(user) => {
                self.tokens.invalidate_user(&user);
                None
            }
            TokenEffect::ClearAll => {
                self.tokens.clear();
                None
            }
        };
        Ok((token, persisted))
    }

    /// The caller a token stands for, if this member knows the token and it has not expired;
    /// else etcd's "invalid auth token".
    pub fn caller_for_token(&self, token: &str) -> Result<Caller, EtcdError> {
        let user = self
            .tokens
            .user_of(token)
            .ok_or(EtcdError::InvalidAuthToken)?;
        Ok(Caller {
            user,
            revision: self.state().revision(),
        })
    }

    /// Who a request is from: the user of its token, else the common name of its verified
    /// client certificate, else the anonymous caller (etcd's `AuthInfoFromCtx`, then
    /// `AuthInfoFromTLS`).
    pub fn caller_of(
        &self,
        token: Option<&str>,
        tls_user: Option<&str>,
    ) -> Result<Caller, EtcdError> {
        match (token, tls_user) {
            (Some(t), _) => self.caller_for_token(t),
            (None, Some(cn)) => Ok(self.caller_for_user(cn)),
            (None, None) => Ok(Caller::anonymous()),
        }
    }

    /// The caller a verified client certificate's common name stands for (etcd's
    /// `AuthInfoFromTLS`): the user of that name, whether or not it exists — permission checks
    /// refuse an unknown user.
    pub fn caller_for_user(&self, user: &str) -> Caller {
        Caller {
            user: user.to_string(),
            revision: self.state().revision(),
        }
    }

    pub fn check_op(
        &self,
        caller: &Caller,
        access: Access,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        self.state().check_op(caller, access, key, range_end)
    }

    pub fn check_admin(&self, caller: &Caller) -> Result<(), EtcdError> {
        self.state().check_admin(caller)
    }

    /// etcd's `CheckPassword`: the auth revision at which `name`'s password matched. Runs
    /// bcrypt: call it on the blocking pool.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, EtcdError> {
        let (stored, revision) = {
            let state = self.state();
            if !state.enabled() {
                return Err(EtcdError::AuthNotEnabled);
            }
            let user = state.user(name).ok_or(EtcdError::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(EtcdError::NoPasswordUser);
            }
            (user.password.clone(), state.revision())
        };
        if password::matches(password, &stored) {
            Ok(revision)
        } else {
            Err(EtcdError::AuthFailed)
        }
    }

    /// The bcrypt hash of a new password at `--bcrypt-cost`. Call it on the blocking pool.
    pub fn hash_password(&self, password: &str) -> Result<String, EtcdError> {
        password::hash(password, self.bcrypt_cost)
            .map_err(|e| EtcdError::Internal(format!("hashing a password: {e}")))
    }

    /// The apply-time check of a request sent by `caller` (see [`access`]).
    pub fn permit(
        &self,
        caller: &Caller,
        cmd: &Command,
        lease_keys: &mut access::LeaseKeys<'_>,
    ) -> io::Result<Result<(), EtcdError>> {
        access::permit(&self.state(), caller, cmd, lease_keys)
    }

    /// Tokens this member holds (for tests and metrics).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }
}

/// Metadata naming the subject CN of the client certificate a request's TLS connection
/// presented (set by the client port's HTTP layer, never taken from clients).
pub const TLS_USER_METADATA: &str = "cairn-tls-common-name";

/// The user a request's verified client certificate names, if any (see [`TLS_USER_METADATA`]).
pub fn tls_user_of(meta: &tonic::metadata::MetadataMap) -> Option<&str> {
    meta.get(TLS_USER_METADATA).and_then(|v| v.to_str().ok())
}

/// The token a request carries in its metadata, if any.
pub fn token_of(meta: &tonic::metadata::MetadataMap) -> Option<&str> {
    TOKEN_METADATA
        .iter()
        .find_map(|k| meta.get(*k))
        .and_then(|v| v.to_str().ok())
}

/// Checks `--auth-token` and `--bcrypt-cost`. Only etcd's "simple" tokens are served; a JWT
/// configuration is refused at startup rather than silently replaced.
pub fn check_options(auth_token: &str, bcrypt_cost: u32) -> Result<(), String> {
    let kind = auth_token.split(',').next().unwrap_or_default();
    match kind {
        "simple" if auth_token == "simple" => {}
        "simple" => {
            return Err(format!(
                "invalid --auth-token {auth_token:?}: 'simple' takes no options"
            ))
        }
        "jwt" => {
            return Err(
                "--auth-token jwt is not supported by cairn-store: use --auth-token simple \
                 (the default)"
                    .into(),
            )
        }
        _ => {
            return Err(format!(
                "invalid --auth-token {auth_token:?}: the supported type is 'simple'"
            ))
        }
    }
    if !(password::MIN_COST..=password::MAX_COST).contains(&bcrypt_cost) {
        return Err(format!(
            "invalid --bcrypt-cost {bcrypt_cost}: must be between {} and {}",
            password::MIN_COST,
            password::MAX_COST
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_simple_tokens_and_sane_bcrypt_costs_are_accepted() {
        assert_eq!(check_options("simple", 10), Ok(()));
        assert_eq!(check_options("simple", 4), Ok(()));
        let jwt = check_options("jwt,pub-key=a.pub,priv-key=a,sign-method=RS256", 10);
        assert!(jwt.unwrap_err().contains("jwt is not supported"));
        assert!(check_options("", 10).is_err());
        assert!(check_options("simple,ttl=5m", 10).is_err());
        assert!(check_options("simple", 3)
            .unwrap_err()
            .contains("--bcrypt-cost"));
        assert!(check_options("simple", 32).is_err());
    }
}
