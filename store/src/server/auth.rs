//! The Auth service: enabling and disabling auth, Authenticate, and managing users and roles.
//!
//! Changes go through the log as [`AuthCommand`]s carrying the caller, and are refused when
//! applied unless the caller has the root role (etcd's `needAdminPermission`); the same check
//! runs here first so that a refused UserAdd costs no bcrypt. Passwords are hashed here, on
//! the blocking pool, before anything is proposed. Reads (UserGet, UserList, RoleGet,
//! RoleList, AuthStatus) are answered from this member's replicated view after a linearizable
//! read barrier, with etcd's rules: root for lists and status, and a user may read itself and
//! the roles it has.
//!
//! Authenticate follows etcd: check the password against this member's view, propose a token
//! prefix through the log (every member learns the token `prefix.index` when it applies the
//! entry), and start over if the auth store changed while the password was being checked.

use std::sync::Arc;

use cairn_proto::etcdserverpb::auth_server::Auth;
use cairn_proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

use super::errors::EtcdError;
use crate::auth::{tokens, AuthCommand, Caller};
use crate::node::Node;
use crate::raft::{Command, CommandResult};

pub struct AuthService {
    pub node: Arc<Node>,
}

impl AuthService {
    fn header(&self) -> Option<ResponseHeader> {
        Some(self.node.header(self.node.mvcc.current_revision()))
    }

    /// The caller of a management request, refused here already unless it may manage auth.
    async fn admin<T>(&self, request: &Request<T>) -> Result<Option<Caller>, Status> {
        let caller = self.node.caller(request.metadata()).await?;
        if let Some(c) = &caller {
            self.node.auth.check_admin(c)?;
        }
        Ok(caller)
    }

    /// Proposes `cmd` sent by `caller`; the issued token for an Authenticate.
    async fn propose(&self, cmd: AuthCommand, caller: Option<Caller>) -> Result<String, Status> {
        match self.node.propose(Command::Auth(cmd).by(caller)).await? {
            CommandResult::Auth { token } => Ok(token),
            CommandResult::Err(e) => Err(e.into()),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn hash(&self, password: String) -> Result<String, Status> {
        let auth = self.node.auth.clone();
        tokio::task::spawn_blocking(move || auth.hash_password(&password))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Status::from)
    }

    /// A read of the auth store by `caller`, once this member has applied every write
    /// committed before the request.
    async fn read<T>(&self, request: &Request<T>) -> Result<Option<Caller>, Status> {
        let caller = self.node.caller(request.metadata()).await?;
        self.node.read_barrier().await?;
        Ok(caller)
    }

    async fn admin_read<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if let Some(c) = self.read(request).await? {
            self.node.auth.check_admin(&c)?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let caller = self.admin(&request).await?;
        self.propose(AuthCommand::Enable, caller).await?;
        Ok(Response::new(AuthEnableResponse {
            header: self.header(),
        }))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let caller = self.admin(&request).await?;
        self.propose(AuthCommand::Disable, caller).await?;
        Ok(Response::new(AuthDisableResponse {
            header: self.header(),
        }))
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        self.admin_read(&request).await?;
        let (enabled, auth_revision) = {
            let state = self.node.auth.state();
            (state.enabled(), state.revision())
        };
        Ok(Response::new(AuthStatusResponse {
            header: self.header(),
            enabled,
            auth_revision,
        }))
    }

    /// The token in the request's metadata, if any, plays no part: clients authenticate
    /// again precisely when theirs has expired.
    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let req = request.into_inner();
        self.node.read_barrier().await?;
        loop {
            let auth = self.node.auth.clone();
            let (name, password) = (req.name.clone(), req.password.clone());
            let checked =
                tokio::task::spawn_blocking(move || auth.check_password(&name, &password))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
            let checked = match checked {
                Ok(rev) => rev,
                Err(e) => {
                    if e != EtcdError::AuthNotEnabled {
                        tracing::info!(user = %req.name, "authentication refused: {e}");
                    }
                    return Err(e.into());
                }
            };
            let token_prefix = tokens::random_prefix()
                .map_err(|e| Status::internal(format!("random source: {e}")))?;
            let token = self
                .propose(
                    AuthCommand::Authenticate {
                        name: req.name.clone(),
                        token_prefix,
                    },
                    None,
                )
                .await?;
            if self.node.auth.state().revision() == checked {
                return Ok(Response::new(AuthenticateResponse {
                    header: self.header(),
                    token,
                }));
            }
            tracing::debug!(user = %req.name, "auth store changed during authenticate; again");
        }
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let caller = self.admin(&request).await?;
        let req = request.into_inner();
        // A clear password never goes further than this (etcd 3.5 ignores a client's
        // hashedPassword as well and hashes what it is given).
        let password_hash = match req.options {
            Some(o) if o.no_password => None,
            _ => Some(self.hash(req.password).await?),
        };
        let cmd = AuthCommand::UserAdd {
            name: req.name,
            password_hash,
        };
        self.propose(cmd, caller).await?;
        Ok(Response::new(AuthUserAddResponse {
            header: self.header(),
        }))
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let caller = self.read(&request).await?;
        let name = request.into_inner().name;
        let roles = {
            let state = self.node.auth.state();
            if let Some(c) = &caller {
                // Anyone may read themselves.
                if let Err(e) = state.check_admin(c) {
                    if c.user != name {
                        return Err(e.into());
                    }
                }
            }
            state
                .user(&name)
                .ok_or(EtcdError::UserNotFound)?
                .roles
                .clone()
        };
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        self.admin_read(&request).await?;
        let users = self.node.auth.state().user_names();
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let caller = self.admin(&request).await?;
        let name = request.into_inner().name;
        self.propose(AuthCommand::UserDelete { name }, caller)
            .await?;
        Ok(Response::new(AuthUserDeleteResponse {
            header: self.header(),
        }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let caller = self.admin(&request).await?;
        let req = request.into_inner();
        let password_hash = self.hash(req.password).await?;
        let cmd = AuthCommand::UserChangePassword {
            name: req.name,
            password_hash,
        };
        self.propose(cmd, caller).await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: self.header(),
        }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let caller = self.admin(&request).await?;
        let req = request.into_inner();
        let cmd = AuthCommand::UserGrantRole {
            user: req.user,
            role: req.role,
        };
        self.propose(cmd, caller).await?;
        Ok(Response::new(AuthUserGrantRoleResponse {
            header: self.header(),
        }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let caller = self.admin(&request).await?;
        let req = request.into_inner();
        let cmd = AuthCommand::UserRevokeRole {
            user: req.name,
            role: req.role,
        };
        self.propose(cmd, caller).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse {
            header: self.header(),
        }))
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let caller = self.admin(&request).await?;
        let name = request.into_inner().name;
        self.propose(AuthCommand::RoleAdd { name }, caller).await?;
        Ok(Response::new(AuthRoleAddResponse {
            header: self.header(),
        }))
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let caller = self.read(&request).await?;
        let role = request.into_inner().role;
        let perm = {
            let state = self.node.auth.state();
            if let Some(c) = &caller {
                // A user may read the roles it has.
                if let Err(e) = state.check_admin(c) {
                    if !state.has_role(&c.user, &role) {
                        return Err(e.into());
                    }
                }
            }
            state
                .role(&role)
                .ok_or(EtcdError::RoleNotFound)?
                .key_permission
                .clone()
        };
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm,
        }))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        self.admin_read(&request).await?;
        let roles = self.node.auth.state().role_names();
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let caller = self.admin(&request).await?;
        let name = request.into_inner().role;
        self.propose(AuthCommand::RoleDelete { name }, caller)
            .await?;
        Ok(Response::new(AuthRoleDeleteResponse {
            header: self.header(),
        }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let caller = self.admin(&request).await?;
        let req = request.into_inner();
        let cmd = AuthCommand::RoleGrantPermission {
            role: req.name,
            perm: req.perm,
        };
        self.propose(cmd, caller).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse {
            header: self.header(),
        }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let caller = self.admin(&request).await?;
        let req = request.into_inner();
        let cmd = AuthCommand::RoleRevokePermission {
            role: req.role,
            key: req.key,
            range_end: req.range_end,
        };
        self.propose(cmd, caller).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse {
            header: self.header(),
        }))
    }
}
