//! Who a request is from and whether it may do what it asks, after kube-apiserver's filters:
//! authentication, impersonation, request attributes, then authorization — all before a request
//! reaches discovery or the REST layer, so watches and subresources are covered alike — and,
//! inside the REST layer, RBAC's escalation checks on writes of roles and bindings.
//!
//! - [`tls`]: the `--secure-port` TLS config (given or self-signed serving certificate,
//!   optional client certificates verified against `--client-ca-file`), ALPN h2 + http/1.1;
//!   PEM files, self-signed certificates and a client certificate's subject (CN and O values)
//!   come from `cairn-tls`, shared with cairn-store.
//! - [`token_file`]: `--token-auth-file`, Kubernetes' CSV format.
//! - [`authenticate`]: client certificate, bearer token, anonymous; 401 when credentials fail.
//! - [`impersonate`]: `Impersonate-*` headers, allowed by the `impersonate` verb.
//! - [`request_info`]: kube's RequestInfo resolver (verb, API group, resource, subresource,
//!   namespace, name; or a non-resource path).
//! - [`authorize`]: `--authorization-mode` (AlwaysAllow, AlwaysDeny, RBAC) as a union, and the
//!   403 wording.
//! - [`rbac`]: RBAC rule evaluation over a policy snapshot.
//! - [`rbac_cache`]: the RBAC objects, listed and then followed through an etcd watch.
//! - [`escalation`]: writes of roles and bindings may not grant more than the writer holds.
//! - [`bootstrap_policy`]: the default ClusterRoles and ClusterRoleBindings made at startup.
//! - [`review`]: SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview and
//!   SelfSubjectReview.
//!
//! Invariant: a request on the secure port is authorized with the user its credentials prove
//! (or `system:anonymous` when none are sent and anonymous requests are enabled); only the
//! insecure port, which is for local use, acts as a privileged user without credentials.

pub mod authenticate;
pub mod authorize;
pub mod bootstrap_policy;
pub mod escalation;
pub mod impersonate;
pub mod rbac;
pub mod rbac_cache;
pub mod request_info;
pub mod review;
pub mod tls;
pub mod token_file;

use std::collections::BTreeMap;

/// The user every request without credentials is, when anonymous requests are enabled.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of anonymous requests.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group every authenticated user is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Members of this group may do anything, whatever the authorization mode.
pub const MASTERS_GROUP: &str = "system:masters";
/// Who the insecure port's requests are from (kube's old insecure port used the same user).
pub const UNSECURED_USER: &str = "system:unsecured";

/// An authenticated (or anonymous) user, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The anonymous user.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS_USER.into(),
            groups: vec![UNAUTHENTICATED_GROUP.into()],
            ..UserInfo::default()
        }
    }

    /// The insecure port's user: a member of `system:masters`.
    pub fn unsecured() -> UserInfo {
        UserInfo {
            name: UNSECURED_USER.into(),
            groups: vec![MASTERS_GROUP.into(), AUTHENTICATED_GROUP.into()],
            ..UserInfo::default()
        }
    }

    /// Adds `system:authenticated` unless the user already is in it (or is anonymous), as
    /// kube's authenticated-group adder does.
    pub fn with_authenticated_group(mut self) -> UserInfo {
        let anonymous =
            self.name == ANONYMOUS_USER || self.groups.iter().any(|g| g == UNAUTHENTICATED_GROUP);
        if !anonymous && !self.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.into());
        }
        self
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// How the secure port decides who a request is from and what it may do.
#[derive(Clone)]
pub struct Security {
    pub authenticator: authenticate::Authenticator,
    pub authorizer: authorize::Authorizer,
}

/// Which port a connection came in on.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The insecure port: no authentication, no authorization.
    Insecure,
    /// The secure port, with the subject of the client certificate the handshake verified.
    Secure(Option<cairn_tls::Subject>),
}
