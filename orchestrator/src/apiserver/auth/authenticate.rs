//! Authentication, in kube-apiserver's order: a verified client certificate (CN is the user, O
//! values the groups), then an `Authorization: Bearer` token from `--token-auth-file`, then —
//! when `--anonymous-auth` is on and no credential was offered — `system:anonymous`. Credentials
//! that are offered and wrong fail the request (401) even when anonymous requests are allowed,
//! as kube's fail-on-error union does. Every authenticated user is in `system:authenticated`.

use cairn_tls::Subject;
use http::{header, HeaderMap};

use super::token_file::TokenFile;
use super::UserInfo;

/// Why a request was not authenticated (answered 401 `Unauthorized`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    #[error("invalid bearer token")]
    InvalidToken,
    #[error("no credentials were offered and anonymous requests are disabled")]
    NoCredentials,
}

/// The secure port's authenticators.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    pub tokens: Option<TokenFile>,
    pub anonymous: bool,
}

impl Authenticator {
    /// Who a request is from. `client_cert` is the subject of the client certificate the TLS
    /// handshake verified, if one was sent.
    pub fn authenticate(
        &self,
        client_cert: Option<&Subject>,
        headers: &HeaderMap,
    ) -> Result<UserInfo, AuthnError> {
        if let Some(subject) = client_cert {
            if let Some(cn) = subject.common_name.as_deref().filter(|cn| !cn.is_empty()) {
                let user = UserInfo {
                    name: cn.to_string(),
                    groups: subject.organizations.clone(),
                    ..UserInfo::default()
                };
                return Ok(user.with_authenticated_group());
            }
        }
        if let Some(tokens) = &self.tokens {
            if let Some(token) = bearer_token(headers) {
                return match tokens.lookup(token).filter(|_| !token.is_empty()) {
                    Some(user) => Ok(user.clone().with_authenticated_group()),
                    None => Err(AuthnError::InvalidToken),
                };
            }
        }
        if self.anonymous {
            Ok(UserInfo::anonymous())
        } else {
            Err(AuthnError::NoCredentials)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header ("bearer" in any case), if any.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    fn authn(anonymous: bool) -> Authenticator {
        Authenticator {
            tokens: Some(TokenFile::parse(Path::new("t"), "secret,alice,1,\"dev,ops\"\n").unwrap()),
            anonymous,
        }
    }

    #[test]
    fn token_certificate_and_anonymous() {
        let a = authn(true);
        let alice = a
            .authenticate(None, &headers(Some("Bearer secret")))
            .unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(
            a.authenticate(None, &headers(None)).unwrap(),
            UserInfo::anonymous()
        );
        let cert = Subject {
            common_name: Some("carol".into()),
            organizations: vec!["admins".into()],
        };
        let carol = a
            .authenticate(Some(&cert), &headers(Some("Bearer wrong")))
            .unwrap();
        assert_eq!(carol.name, "carol", "a verified certificate comes first");
        assert_eq!(carol.groups, ["admins", "system:authenticated"]);
    }

    #[test]
    fn a_bad_token_is_refused_even_when_anonymous_is_allowed() {
        assert_eq!(
            authn(true).authenticate(None, &headers(Some("Bearer nope"))),
            Err(AuthnError::InvalidToken)
        );
        assert_eq!(
            authn(false).authenticate(None, &headers(None)),
            Err(AuthnError::NoCredentials)
        );
        // Basic credentials are not a bearer token: anonymous, when allowed.
        assert_eq!(
            authn(true)
                .authenticate(None, &headers(Some("Basic YTpi")))
                .unwrap()
                .name,
            "system:anonymous"
        );
    }
}
