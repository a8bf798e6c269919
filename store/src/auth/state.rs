//! The replicated auth store: users, roles, whether auth is enabled, and etcd's auth
//! revision — and the rules for changing it and for deciding what a caller may do.
//!
//! Every member holds the same [`AuthState`] because it changes only by applying
//! [`AuthCommand`]s in log order; it is persisted in the state machine's meta under
//! [`META_AUTH`] in the same redb transaction as the entry that changed it, and travels in
//! snapshots with the rest of the meta. Pure logic: no I/O, no clock, no tokens (those are
//! per member, see [`super::tokens`]); applying a command returns the token side effect for
//! the caller to carry out.
//!
//! The revision starts at 1 and moves on every change of users, roles or permissions and on
//! auth disable (not on enable), as etcd's does; a request checked at an older revision than
//! the store's when it is applied is refused with "revision of auth store is old".

use std::collections::{BTreeMap, HashMap};
use std::io;

use cairn_proto::authpb::{Permission, Role, User, UserAddOptions};
use prost::Message;

use super::command::{AuthCommand, Caller};
use super::perms::{Access, UserPerms};
use crate::raft::codec::{Reader, Writer};
use crate::server::errors::EtcdError;

/// Meta key of the encoded auth store.
pub const META_AUTH: &str = "auth";
/// The user and role that may do everything.
pub const ROOT: &str = "root";

const FORMAT_VERSION: u8 = 1;

/// What the member must do with its tokens after a command applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEffect {
    None,
    /// Record `token` as belonging to `user`.
    Issue {
        token: String,
        user: String,
    },
    /// Forget the tokens of this user.
    InvalidateUser(String),
    /// Forget every token.
    ClearAll,
}

#[derive(Debug, Clone)]
pub struct AuthState {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Derived from users and roles: each user's merged permissions.
    perms: HashMap<String, UserPerms>,
}

impl Default for AuthState {
    fn default() -> Self {
        Self {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            perms: HashMap::new(),
        }
    }
}

fn has_root_role(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT)
}

impl AuthState {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    fn rebuild_perms(&mut self) {
        let roles = &self.roles;
        self.perms = self
            .users
            .iter()
            .map(|(name, u)| {
                let perms = u
                    .roles
                    .iter()
                    .filter_map(|r| roles.get(r))
                    .flat_map(|r| r.key_permission.iter());
                (name.clone(), UserPerms::merge(perms))
            })
            .collect();
    }

    /// etcd's `isOpPermitted`: may `caller` read or write `key` (or the range up to
    /// `range_end`)?
    pub fn check_op(
        &self,
        caller: &Caller,
        access: Access,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if caller.revision == 0 {
            return Err(EtcdError::UserEmpty);
        }
        if caller.revision < self.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        let Some(user) = self.users.get(&caller.user) else {
            return Err(EtcdError::PermissionDenied);
        };
        if has_root_role(user) {
            return Ok(());
        }
        let allowed = self
            .perms
            .get(&caller.user)
            .is_some_and(|p| p.allows(access, key, range_end));
        if allowed {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// etcd's `IsAdminPermitted`: is `caller` a user with the root role?
    pub fn check_admin(&self, caller: &Caller) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if caller.user.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        match self.users.get(&caller.user) {
            None => Err(EtcdError::UserNotFound),
            Some(u) if has_root_role(u) => Ok(()),
            Some(_) => Err(EtcdError::PermissionDenied),
        }
    }

    /// Whether a token may be issued to `name` (etcd's `Authenticate` when applied; the
    /// password was checked by the proposing member).
    fn may_authenticate(&self, name: &str) -> Result<(), EtcdError> {
        if !self.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        match self.users.get(name) {
            None => Err(EtcdError::AuthFailed),
            Some(u) if u.options.as_ref().is_some_and(|o| o.no_password) => {
                Err(EtcdError::AuthFailed)
            }
            Some(_) => Ok(()),
        }
    }

    fn commit_revision(&mut self) {
        self.revision += 1;
    }

    /// Applies one command at log index `index`. On error nothing changed.
    pub fn apply(&mut self, cmd: &AuthCommand, index: u64) -> Result<TokenEffect, EtcdError> {
        use AuthCommand as A;
        let effect = match cmd {
            A::Enable => {
                if self.enabled {
                    return Ok(TokenEffect::None);
                }
                match self.users.get(ROOT) {
                    None => return Err(EtcdError::RootUserNotExist),
                    Some(u) if !has_root_role(u) => return Err(EtcdError::RootRoleNotExist),
                    Some(_) => {}
                }
                self.enabled = true;
                TokenEffect::None
            }
            A::Disable => {
                if !self.enabled {
                    return Ok(TokenEffect::None);
                }
                self.enabled = false;
                self.commit_revision();
                TokenEffect::ClearAll
            }
            A::Authenticate { name, token_prefix } => {
                self.may_authenticate(name)?;
                TokenEffect::Issue {
                    token: format!("{token_prefix}.{index}"),
                    user: name.clone(),
                }
            }
            A::UserAdd {
                name,
                password_hash,
            } => {
                if name.is_empty() {
                    return Err(EtcdError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(EtcdError::UserAlreadyExist);
                }
                let user = User {
                    name: name.as_bytes().to_vec(),
                    password: password_hash.clone().unwrap_or_default().into_bytes(),
                    roles: vec![],
                    options: Some(UserAddOptions {
                        no_password: password_hash.is_none(),
                    }),
                };
                self.users.insert(name.clone(), user);
                self.commit_revision();
                TokenEffect::None
            }
            A::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                if self.users.remove(name).is_none() {
                    return Err(EtcdError::UserNotFound);
                }
                self.commit_revision();
                TokenEffect::InvalidateUser(name.clone())
            }
            A::UserChangePassword {
                name,
                password_hash,
            } => {
                let user = self.users.get_mut(name).ok_or(EtcdError::UserNotFound)?;
                let no_password = user.options.as_ref().is_some_and(|o| o.no_password);
                user.password = if no_password {
                    Vec::new()
                } else {
                    password_hash.clone().into_bytes()
                };
                self.commit_revision();
                TokenEffect::InvalidateUser(name.clone())
            }
            A::UserGrantRole { user, role } => {
                if !self.users.contains_key(user) {
                    return Err(EtcdError::UserNotFound);
                }
                // The root role needs no record: granting it makes a user root.
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(EtcdError::RoleNotFound);
                }
                let u = self.users.get_mut(user).ok_or(EtcdError::UserNotFound)?;
                if let Err(at) = u.roles.binary_search(role) {
                    u.roles.insert(at, role.clone());
                    self.commit_revision();
                }
                TokenEffect::None
            }
            A::UserRevokeRole { user, role } => {
                if self.enabled && user == ROOT && role == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let u = self.users.get_mut(user).ok_or(EtcdError::UserNotFound)?;
                let before = u.roles.len();
                u.roles.retain(|r| r != role);
                if u.roles.len() == before {
                    return Err(EtcdError::RoleNotGranted);
                }
                self.commit_revision();
                TokenEffect::None
            }
            A::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(EtcdError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(EtcdError::RoleAlreadyExist);
                }
                self.roles.insert(
                    name.clone(),
                    Role {
                        name: name.as_bytes().to_vec(),
                        key_permission: vec![],
                    },
                );
                self.commit_revision();
                TokenEffect::None
            }
            A::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                if self.roles.remove(name).is_none() {
                    return Err(EtcdError::RoleNotFound);
                }
                for u in self.users.values_mut() {
                    u.roles.retain(|r| r != name);
                }
                self.commit_revision();
                TokenEffect::None
            }
            A::RoleGrantPermission { role, perm } => {
                let perm = perm.as_ref().ok_or(EtcdError::PermissionNotGiven)?;
                let r = self.roles.get_mut(role).ok_or(EtcdError::RoleNotFound)?;
                grant(&mut r.key_permission, perm);
                self.commit_revision();
                TokenEffect::None
            }
            A::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let r = self.roles.get_mut(role).ok_or(EtcdError::RoleNotFound)?;
                let before = r.key_permission.len();
                r.key_permission
                    .retain(|p| p.key != *key || p.range_end != *range_end);
                if r.key_permission.len() == before {
                    return Err(EtcdError::PermissionNotGranted);
                }
                self.commit_revision();
                TokenEffect::None
            }
        };
        self.rebuild_perms();
        Ok(effect)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(FORMAT_VERSION);
        w.bool(self.enabled);
        w.u64(self.revision);
        w.u32(self.users.len() as u32);
        for u in self.users.values() {
            w.bytes(&u.encode_to_vec());
        }
        w.u32(self.roles.len() as u32);
        for r in self.roles.values() {
            w.bytes(&r.encode_to_vec());
        }
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> io::Result<Self> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed auth store: {what}"),
            )
        };
        let mut r = Reader::new(bytes);
        if r.u8()? != FORMAT_VERSION {
            return Err(bad("unknown version"));
        }
        let mut state = AuthState {
            enabled: r.bool()?,
            revision: r.u64()?,
            ..Default::default()
        };
        for _ in 0..r.u32()? {
            let u = User::decode(r.bytes()?).map_err(|_| bad("user"))?;
            let name = String::from_utf8(u.name.clone()).map_err(|_| bad("user name"))?;
            state.users.insert(name, u);
        }
        for _ in 0..r.u32()? {
            let role = Role::decode(r.bytes()?).map_err(|_| bad("role"))?;
            let name = String::from_utf8(role.name.clone()).map_err(|_| bad("role name"))?;
            state.roles.insert(name, role);
        }
        if !r.is_empty() {
            return Err(bad("trailing bytes"));
        }
        state.rebuild_perms();
        Ok(state)
    }
}

/// etcd's RoleGrantPermission: a permission with the key and range end of an existing one
/// replaces its type; otherwise it is added and the list kept sorted by key.
fn grant(perms: &mut Vec<Permission>, perm: &Permission) {
    let idx = perms.partition_point(|p| p.key < perm.key);
    match perms.get_mut(idx) {
        Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
            p.perm_type = perm.perm_type;
        }
        _ => {
            perms.push(perm.clone());
            perms.sort_by(|a, b| a.key.cmp(&b.key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::authpb::permission::Type as PermType;

    fn apply(s: &mut AuthState, cmd: AuthCommand) -> Result<TokenEffect, EtcdError> {
        s.apply(&cmd, 7)
    }

    fn user_add(name: &str) -> AuthCommand {
        AuthCommand::UserAdd {
            name: name.into(),
            password_hash: Some("$2a$04$hash".into()),
        }
    }

    fn grant_role(user: &str, role: &str) -> AuthCommand {
        AuthCommand::UserGrantRole {
            user: user.into(),
            role: role.into(),
        }
    }

    fn caller(s: &AuthState, user: &str) -> Caller {
        Caller {
            user: user.into(),
            revision: s.revision(),
        }
    }

    #[test]
    fn enable_needs_root_with_root_role() {
        let mut s = AuthState::default();
        assert_eq!(
            apply(&mut s, AuthCommand::Enable),
            Err(EtcdError::RootUserNotExist)
        );
        apply(&mut s, user_add("root")).unwrap();
        assert_eq!(
            apply(&mut s, AuthCommand::Enable),
            Err(EtcdError::RootRoleNotExist)
        );
        // The root role needs no record to be granted.
        apply(&mut s, grant_role("root", "root")).unwrap();
        let rev = s.revision();
        apply(&mut s, AuthCommand::Enable).unwrap();
        assert!(s.enabled());
        assert_eq!(s.revision(), rev, "enable does not move the revision");
        assert_eq!(
            apply(&mut s, AuthCommand::UserDelete { name: ROOT.into() }),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::UserRevokeRole {
                    user: ROOT.into(),
                    role: ROOT.into()
                }
            ),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(
            apply(&mut s, AuthCommand::Disable),
            Ok(TokenEffect::ClearAll)
        );
        assert_eq!(s.revision(), rev + 1, "disable moves it");
    }

    #[test]
    fn management_errors_are_etcds() {
        let mut s = AuthState::default();
        apply(&mut s, user_add("alice")).unwrap();
        assert_eq!(
            apply(&mut s, user_add("alice")),
            Err(EtcdError::UserAlreadyExist)
        );
        assert_eq!(apply(&mut s, user_add("")), Err(EtcdError::UserEmpty));
        assert_eq!(
            apply(&mut s, AuthCommand::RoleAdd { name: "".into() }),
            Err(EtcdError::RoleEmpty)
        );
        assert_eq!(
            apply(&mut s, grant_role("alice", "nosuch")),
            Err(EtcdError::RoleNotFound)
        );
        assert_eq!(
            apply(&mut s, grant_role("nosuch", "root")),
            Err(EtcdError::UserNotFound)
        );
        apply(&mut s, AuthCommand::RoleAdd { name: "r".into() }).unwrap();
        assert_eq!(
            apply(&mut s, AuthCommand::RoleAdd { name: "r".into() }),
            Err(EtcdError::RoleAlreadyExist)
        );
        let rev = s.revision();
        apply(&mut s, grant_role("alice", "r")).unwrap();
        apply(&mut s, grant_role("alice", "r")).unwrap();
        assert_eq!(s.revision(), rev + 1, "a repeated grant changes nothing");
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::UserRevokeRole {
                    user: "alice".into(),
                    role: "x".into()
                }
            ),
            Err(EtcdError::RoleNotGranted)
        );
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::RoleRevokePermission {
                    role: "r".into(),
                    key: b"k".to_vec(),
                    range_end: vec![]
                }
            ),
            Err(EtcdError::PermissionNotGranted)
        );
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::RoleGrantPermission {
                    role: "r".into(),
                    perm: None
                }
            ),
            Err(EtcdError::PermissionNotGiven)
        );
        // Deleting a role takes it from its users.
        apply(&mut s, AuthCommand::RoleDelete { name: "r".into() }).unwrap();
        assert!(s.user("alice").unwrap().roles.is_empty());
    }

    #[test]
    fn permission_checks_follow_roles_revisions_and_root() {
        let mut s = AuthState::default();
        for c in [
            user_add("root"),
            grant_role("root", "root"),
            user_add("alice"),
            AuthCommand::RoleAdd { name: "r".into() },
            AuthCommand::RoleGrantPermission {
                role: "r".into(),
                perm: Some(Permission {
                    perm_type: PermType::Read as i32,
                    key: b"/a".to_vec(),
                    range_end: vec![],
                }),
            },
            grant_role("alice", "r"),
        ] {
            apply(&mut s, c).unwrap();
        }
        let alice = caller(&s, "alice");
        assert_eq!(
            s.check_op(&alice, Access::Write, b"/a", b""),
            Ok(()),
            "auth disabled: everything goes"
        );
        apply(&mut s, AuthCommand::Enable).unwrap();
        assert_eq!(s.check_op(&alice, Access::Read, b"/a", b""), Ok(()));
        assert_eq!(
            s.check_op(&alice, Access::Write, b"/a", b""),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(
            s.check_op(&Caller::anonymous(), Access::Read, b"/a", b""),
            Err(EtcdError::UserEmpty)
        );
        let root = caller(&s, "root");
        assert_eq!(s.check_op(&root, Access::Write, b"\0", b"\0"), Ok(()));
        assert_eq!(s.check_admin(&root), Ok(()));
        assert_eq!(s.check_admin(&alice), Err(EtcdError::PermissionDenied));
        assert_eq!(
            s.check_admin(&Caller::anonymous()),
            Err(EtcdError::UserEmpty)
        );
        // Upgrading read to readwrite replaces the grant.
        apply(
            &mut s,
            AuthCommand::RoleGrantPermission {
                role: "r".into(),
                perm: Some(Permission {
                    perm_type: PermType::Readwrite as i32,
                    key: b"/a".to_vec(),
                    range_end: vec![],
                }),
            },
        )
        .unwrap();
        assert_eq!(s.role("r").unwrap().key_permission.len(), 1);
        assert_eq!(
            s.check_op(&alice, Access::Write, b"/a", b""),
            Err(EtcdError::AuthOldRevision),
            "checked before the grant"
        );
        let alice = caller(&s, "alice");
        assert_eq!(s.check_op(&alice, Access::Write, b"/a", b""), Ok(()));
    }

    #[test]
    fn authenticate_issues_index_tokens_and_store_round_trips() {
        let mut s = AuthState::default();
        let auth = AuthCommand::Authenticate {
            name: "root".into(),
            token_prefix: "p".into(),
        };
        assert_eq!(apply(&mut s, auth.clone()), Err(EtcdError::AuthNotEnabled));
        apply(&mut s, user_add("root")).unwrap();
        apply(&mut s, grant_role("root", "root")).unwrap();
        apply(
            &mut s,
            AuthCommand::UserAdd {
                name: "svc".into(),
                password_hash: None,
            },
        )
        .unwrap();
        apply(&mut s, AuthCommand::Enable).unwrap();
        assert_eq!(
            apply(&mut s, auth),
            Ok(TokenEffect::Issue {
                token: "p.7".into(),
                user: "root".into()
            })
        );
        assert_eq!(
            apply(
                &mut s,
                AuthCommand::Authenticate {
                    name: "svc".into(),
                    token_prefix: "p".into()
                }
            ),
            Err(EtcdError::AuthFailed),
            "no-password users get no token"
        );
        let back = AuthState::decode(&s.encode()).unwrap();
        assert_eq!(back.encode(), s.encode());
        assert!(back.enabled());
        assert_eq!(back.user_names(), vec!["root", "svc"]);
        assert!(AuthState::decode(&s.encode()[..5]).is_err());
        assert!(AuthState::decode(&[9]).is_err());
    }
}
