//! Impersonation, after kube-apiserver's filter: `Impersonate-User`, `Impersonate-Group`
//! (repeatable), `Impersonate-Uid` and `Impersonate-Extra-<key>` headers make the request act as
//! another user, once the authenticated user is allowed the `impersonate` verb on each of them:
//! `users` (or, for `system:serviceaccount:<ns>:<name>`, `serviceaccounts` in `<ns>`), `groups`,
//! and `uids` / `userextras/<key>` in authentication.k8s.io, named by the value asked for. The
//! impersonated user is in `system:authenticated` (or, for `system:anonymous`,
//! `system:unauthenticated`) and, for a service account, in `system:serviceaccounts` and
//! `system:serviceaccounts:<ns>`.

use http::HeaderMap;

use super::super::status::ApiError;
use super::authorize::{self, Authorizer};
use super::request_info::RequestInfo;
use super::{UserInfo, ANONYMOUS_USER, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The user the request acts as: `user` itself when it asks for no impersonation, else the
/// impersonated user once `user` may impersonate every part of it (403 otherwise).
pub fn impersonate(
    authorizer: &Authorizer,
    user: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let name = values(headers, USER).first().map(|s| s.to_string());
    let groups: Vec<String> = values(headers, GROUP)
        .into_iter()
        .map(String::from)
        .collect();
    let uid = values(headers, UID).first().map(|s| s.to_string());
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (header, value) in headers {
        if let Some(key) = header.as_str().strip_prefix(EXTRA_PREFIX) {
            if let Ok(v) = value.to_str() {
                let key = percent_encoding::percent_decode_str(key)
                    .decode_utf8_lossy()
                    .into_owned();
                extra.entry(key).or_default().push(v.to_string());
            }
        }
    }
    let Some(name) = name else {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::BadRequest(
            "requested impersonation of groups, uid or extra without impersonating a user".into(),
        ));
    };
    let check = |info: RequestInfo| -> Result<(), ApiError> {
        let decision = authorizer.authorize(&user, &info);
        if decision.allowed() {
            Ok(())
        } else {
            Err(authorize::forbidden(&user, &info, decision.reason()))
        }
    };
    let attributes =
        |group: &str, namespace: &str, resource: &str, sub: &str, name: &str| RequestInfo {
            is_resource_request: true,
            verb: "impersonate".into(),
            api_group: group.into(),
            namespace: namespace.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..RequestInfo::default()
        };
    let mut impersonated_groups = groups.clone();
    match name
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'))
    {
        Some((ns, sa)) => {
            check(attributes("", ns, "serviceaccounts", "", sa))?;
            if groups.is_empty() {
                impersonated_groups = vec![
                    "system:serviceaccounts".to_string(),
                    format!("system:serviceaccounts:{ns}"),
                ];
            }
        }
        None => check(attributes("", "", "users", "", &name))?,
    }
    for g in &groups {
        check(attributes("", "", "groups", "", g))?;
    }
    if let Some(uid) = &uid {
        check(attributes("authentication.k8s.io", "", "uids", "", uid))?;
    }
    for (key, vals) in &extra {
        for v in vals {
            check(attributes(
                "authentication.k8s.io",
                "",
                "userextras",
                key,
                v,
            ))?;
        }
    }
    let always = if name == ANONYMOUS_USER {
        UNAUTHENTICATED_GROUP
    } else {
        AUTHENTICATED_GROUP
    };
    if !impersonated_groups.iter().any(|g| g == always) {
        impersonated_groups.push(always.to_string());
    }
    Ok(UserInfo {
        name,
        uid: uid.unwrap_or_default(),
        groups: impersonated_groups,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::super::authorize::Mode;
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    #[test]
    fn privileged_users_impersonate_others_may_not() {
        let deny = Authorizer {
            modes: vec![Mode::AlwaysDeny],
            rbac: None,
        };
        let admin = user("admin", &["system:masters"]);
        let as_bob = headers(&[("Impersonate-User", "bob"), ("Impersonate-Group", "qa")]);
        assert_eq!(
            impersonate(&deny, admin.clone(), &as_bob).unwrap(),
            user("bob", &["qa", "system:authenticated"])
        );
        let sa = headers(&[("Impersonate-User", "system:serviceaccount:dev:ci")]);
        assert_eq!(
            impersonate(&deny, admin.clone(), &sa).unwrap().groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:dev",
                "system:authenticated"
            ]
        );
        let alice = user("alice", &[]);
        assert_eq!(
            impersonate(&deny, alice.clone(), &as_bob).unwrap_err().to_string(),
            "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope: Everything is forbidden."
        );
        assert_eq!(
            impersonate(&deny, alice.clone(), &HeaderMap::new()).unwrap(),
            alice
        );
        assert!(matches!(
            impersonate(&deny, admin, &headers(&[("Impersonate-Group", "qa")])),
            Err(ApiError::BadRequest(_))
        ));
    }
}
