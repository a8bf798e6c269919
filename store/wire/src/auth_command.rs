//! The replicated auth commands ([`AuthCommand`]) and the identity a client request carries
//! through the log ([`Caller`]), with their byte encodings (inside a
//! [`Command`](crate::raft::Command), see docs/auth.md).
//!
//! Passwords appear here only as bcrypt hashes: the API edge hashes them before proposing,
//! and no variant can hold a clear password.

use std::io;

use cairn_proto::authpb::Permission;
use prost::Message;

use crate::raft::codec::{Reader, Writer};

/// Who sent a request, as checked by the member that received it: the user its token names
/// and the auth revision at that member when it checked. An empty user (revision 0) is a
/// request without a token while auth was enabled (etcd's empty `AuthInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub revision: u64,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self {
            user: String::new(),
            revision: 0,
        }
    }

    pub fn encode_to(&self, w: &mut Writer) {
        w.str(&self.user);
        w.u64(self.revision);
    }

    pub fn decode(r: &mut Reader<'_>) -> io::Result<Self> {
        Ok(Self {
            user: r.string()?,
            revision: r.u64()?,
        })
    }
}

/// A change of the auth store, applied by every member in log order.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthCommand {
    Enable,
    Disable,
    /// Issue the token `token_prefix.<index of this entry>` to `name`, whose password the
    /// proposing member has checked.
    Authenticate {
        name: String,
        token_prefix: String,
    },
    /// `password_hash` is `None` for a `--no-password` user.
    UserAdd {
        name: String,
        password_hash: Option<String>,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        password_hash: String,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        user: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleDelete {
        name: String,
    },
    /// `perm` is `None` when the request carried none (refused when applied, as etcd does).
    RoleGrantPermission {
        role: String,
        perm: Option<Permission>,
    },
    RoleRevokePermission {
        role: String,
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
}

const ENABLE: u8 = 1;
const DISABLE: u8 = 2;
const AUTHENTICATE: u8 = 3;
const USER_ADD: u8 = 4;
const USER_DELETE: u8 = 5;
const USER_CHANGE_PASSWORD: u8 = 6;
const USER_GRANT_ROLE: u8 = 7;
const USER_REVOKE_ROLE: u8 = 8;
const ROLE_ADD: u8 = 9;
const ROLE_DELETE: u8 = 10;
const ROLE_GRANT_PERMISSION: u8 = 11;
const ROLE_REVOKE_PERMISSION: u8 = 12;

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed auth command: {what}"),
    )
}

impl AuthCommand {
    /// A short name for logs; never includes a password hash.
    pub fn name(&self) -> &'static str {
        match self {
            AuthCommand::Enable => "auth_enable",
            AuthCommand::Disable => "auth_disable",
            AuthCommand::Authenticate { .. } => "authenticate",
            AuthCommand::UserAdd { .. } => "user_add",
            AuthCommand::UserDelete { .. } => "user_delete",
            AuthCommand::UserChangePassword { .. } => "user_change_password",
            AuthCommand::UserGrantRole { .. } => "user_grant_role",
            AuthCommand::UserRevokeRole { .. } => "user_revoke_role",
            AuthCommand::RoleAdd { .. } => "role_add",
            AuthCommand::RoleDelete { .. } => "role_delete",
            AuthCommand::RoleGrantPermission { .. } => "role_grant_permission",
            AuthCommand::RoleRevokePermission { .. } => "role_revoke_permission",
        }
    }

    pub fn encode_to(&self, w: &mut Writer) {
        match self {
            AuthCommand::Enable => w.u8(ENABLE),
            AuthCommand::Disable => w.u8(DISABLE),
            AuthCommand::Authenticate { name, token_prefix } => {
                w.u8(AUTHENTICATE);
                w.str(name);
                w.str(token_prefix);
            }
            AuthCommand::UserAdd {
                name,
                password_hash,
            } => {
                w.u8(USER_ADD);
                w.str(name);
                match password_hash {
                    None => w.u8(0),
                    Some(h) => {
                        w.u8(1);
                        w.str(h);
                    }
                }
            }
            AuthCommand::UserDelete { name } => {
                w.u8(USER_DELETE);
                w.str(name);
            }
            AuthCommand::UserChangePassword {
                name,
                password_hash,
            } => {
                w.u8(USER_CHANGE_PASSWORD);
                w.str(name);
                w.str(password_hash);
            }
            AuthCommand::UserGrantRole { user, role } => {
                w.u8(USER_GRANT_ROLE);
                w.str(user);
                w.str(role);
            }
            AuthCommand::UserRevokeRole { user, role } => {
                w.u8(USER_REVOKE_ROLE);
                w.str(user);
                w.str(role);
            }
            AuthCommand::RoleAdd { name } => {
                w.u8(ROLE_ADD);
                w.str(name);
            }
            AuthCommand::RoleDelete { name } => {
                w.u8(ROLE_DELETE);
                w.str(name);
            }
            AuthCommand::RoleGrantPermission { role, perm } => {
                w.u8(ROLE_GRANT_PERMISSION);
                w.str(role);
                match perm {
                    None => w.u8(0),
                    Some(p) => {
                        w.u8(1);
                        w.bytes(&p.encode_to_vec());
                    }
                }
            }
            AuthCommand::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                w.u8(ROLE_REVOKE_PERMISSION);
                w.str(role);
                w.bytes(key);
                w.bytes(range_end);
            }
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> io::Result<Self> {
        Ok(match r.u8()? {
            ENABLE => AuthCommand::Enable,
            DISABLE => AuthCommand::Disable,
            AUTHENTICATE => AuthCommand::Authenticate {
                name: r.string()?,
                token_prefix: r.string()?,
            },
            USER_ADD => AuthCommand::UserAdd {
                name: r.string()?,
                password_hash: match r.u8()? {
                    0 => None,
                    1 => Some(r.string()?),
                    _ => return Err(invalid("password option")),
                },
            },
            USER_DELETE => AuthCommand::UserDelete { name: r.string()? },
            USER_CHANGE_PASSWORD => AuthCommand::UserChangePassword {
                name: r.string()?,
                password_hash: r.string()?,
            },
            USER_GRANT_ROLE => AuthCommand::UserGrantRole {
                user: r.string()?,
                role: r.string()?,
            },
            USER_REVOKE_ROLE => AuthCommand::UserRevokeRole {
                user: r.string()?,
                role: r.string()?,
            },
            ROLE_ADD => AuthCommand::RoleAdd { name: r.string()? },
            ROLE_DELETE => AuthCommand::RoleDelete { name: r.string()? },
            ROLE_GRANT_PERMISSION => AuthCommand::RoleGrantPermission {
                role: r.string()?,
                perm: match r.u8()? {
                    0 => None,
                    1 => Some(Permission::decode(r.bytes()?).map_err(|_| invalid("permission"))?),
                    _ => return Err(invalid("permission option")),
                },
            },
            ROLE_REVOKE_PERMISSION => AuthCommand::RoleRevokePermission {
                role: r.string()?,
                key: r.bytes()?.to_vec(),
                range_end: r.bytes()?.to_vec(),
            },
            _ => return Err(invalid("unknown kind")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips() {
        let cmds = [
            AuthCommand::Enable,
            AuthCommand::Disable,
            AuthCommand::Authenticate {
                name: "alice".into(),
                token_prefix: "abcdefghijklmnop".into(),
            },
            AuthCommand::UserAdd {
                name: "bob".into(),
                password_hash: Some("$2a$04$x".into()),
            },
            AuthCommand::UserAdd {
                name: "svc".into(),
                password_hash: None,
            },
            AuthCommand::UserDelete { name: "bob".into() },
            AuthCommand::UserChangePassword {
                name: "bob".into(),
                password_hash: "$2a$04$y".into(),
            },
            AuthCommand::UserGrantRole {
                user: "bob".into(),
                role: "r".into(),
            },
            AuthCommand::UserRevokeRole {
                user: "bob".into(),
                role: "r".into(),
            },
            AuthCommand::RoleAdd { name: "r".into() },
            AuthCommand::RoleDelete { name: "r".into() },
            AuthCommand::RoleGrantPermission {
                role: "r".into(),
                perm: Some(Permission {
                    perm_type: 2,
                    key: b"/p/".to_vec(),
                    range_end: b"/p0".to_vec(),
                }),
            },
            AuthCommand::RoleGrantPermission {
                role: "r".into(),
                perm: None,
            },
            AuthCommand::RoleRevokePermission {
                role: "r".into(),
                key: b"k".to_vec(),
                range_end: vec![],
            },
        ];
        for c in cmds {
            let mut w = Writer::default();
            c.encode_to(&mut w);
            let mut r = Reader::new(&w.buf);
            assert_eq!(AuthCommand::decode(&mut r).unwrap(), c);
            assert!(r.is_empty());
        }
        assert!(AuthCommand::decode(&mut Reader::new(&[99])).is_err());
        assert!(AuthCommand::decode(&mut Reader::new(&[USER_ADD])).is_err());
    }
}
