//! Request attributes as kube-apiserver's RequestInfo resolver derives them from the method,
//! path and query, independently of what the server serves (so a request for a resource that
//! does not exist is authorized like any other, and answered 403 before 404):
//!
//! - `/api/<version>/...` and `/apis/<group>/<version>/...` are resource requests; everything
//!   else (`/version`, `/healthz`, `/api`, `/apis/<group>`, `/openapi/v2`) is a non-resource
//!   request whose verb is the lowercased method;
//! - `[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]`, where `namespaces/<ns>` alone (and
//!   `namespaces/<ns>/status|finalize`) is the namespace object itself, in namespace `<ns>`;
//! - verbs: POST create, GET/HEAD get (list or watch without a name), PUT update, PATCH patch,
//!   DELETE delete (deletecollection without a name); a `/watch/` path segment is watch;
//! - a list or watch with `fieldSelector=metadata.name=<n>` names `<n>`.

use http::Method;

use super::super::query::Query;

/// What a request asks to do, for authorization.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    pub is_resource_request: bool,
    /// The URL path (for non-resource requests).
    pub path: String,
    pub verb: String,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// Subresources of a namespace that are not resources inside it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub fn resolve(method: &Method, path: &str, query: &Query) -> RequestInfo {
    let non_resource = RequestInfo {
        is_resource_request: false,
        path: path.to_string(),
        verb: method.as_str().to_ascii_lowercase(),
        ..RequestInfo::default()
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
        return non_resource;
    }
    let mut info = RequestInfo {
        is_resource_request: true,
        path: path.to_string(),
        ..RequestInfo::default()
    };
    let mut rest = &parts[1..];
    if parts[0] == "apis" {
        if rest.len() < 3 {
            return non_resource;
        }
        info.api_group = rest[0].to_string();
        rest = &rest[1..];
    }
    info.api_version = rest[0].to_string();
    rest = &rest[1..];
    if rest.first() == Some(&"watch") {
        if rest.len() < 2 {
            return non_resource;
        }
        info.verb = "watch".into();
        rest = &rest[1..];
    } else {
        info.verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
        .into();
    }
    if rest[0] == "namespaces" && rest.len() > 1 {
        info.namespace = rest[1].to_string();
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    if let Some(r) = rest.first() {
        info.resource = r.to_string();
    }
    if let Some(n) = rest.get(1) {
        info.name = n.to_string();
    }
    if let Some(s) = rest.get(2) {
        info.subresource = s.to_string();
    }
    if info.name.is_empty() && info.verb == "get" {
        info.verb = if query.flag("watch") { "watch" } else { "list" }.into();
    }
    if info.name.is_empty() && matches!(info.verb.as_str(), "list" | "watch") {
        if let Some(name) = exact_name(query.get("fieldSelector").unwrap_or("")) {
            info.name = name;
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".into();
    }
    info
}

/// `<n>` when a field selector requires `metadata.name` to be exactly `<n>`, a valid path segment.
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (field, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(f, _)| !f.ends_with('!'))?;
        (field.trim() == "metadata.name"
            && !value.is_empty()
            && !matches!(value, "." | "..")
            && !value.contains(['/', '%']))
        .then(|| value.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path_and_query: &str) -> RequestInfo {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        resolve(&method, path, &Query::parse(Some(query)))
    }

    fn short(i: &RequestInfo) -> (&str, &str, &str, &str, &str, &str) {
        (
            &i.verb,
            &i.api_group,
            &i.namespace,
            &i.resource,
            &i.subresource,
            &i.name,
        )
    }

    #[test]
    fn resolves_like_kube_apiserver() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                ("list", "", "default", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/pods?watch=true",
                ("watch", "", "", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/d/pods?watch=1&fieldSelector=metadata.name%3Dweb",
                ("watch", "", "d", "pods", "", "web"),
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/d/pods",
                ("watch", "", "d", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/web",
                ("get", "", "default", "pods", "", "web"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/default/pods/web/status",
                ("update", "", "default", "pods", "status", "web"),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/x/deployments/d/scale",
                ("patch", "apps", "x", "deployments", "scale", "d"),
            ),
            (
                Method::POST,
                "/apis/apps/v1/namespaces/x/deployments",
                ("create", "apps", "x", "deployments", "", ""),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/x/configmaps",
                ("deletecollection", "", "x", "configmaps", "", ""),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/x/configmaps/c",
                ("delete", "", "x", "configmaps", "", "c"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/kube-system",
                ("get", "", "kube-system", "namespaces", "", "kube-system"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/gone/finalize",
                ("update", "", "gone", "namespaces", "finalize", "gone"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                ("list", "", "", "namespaces", "", ""),
            ),
            (
                Method::GET,
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
                (
                    "get",
                    "rbac.authorization.k8s.io",
                    "",
                    "clusterroles",
                    "",
                    "admin",
                ),
            ),
        ];
        for (method, path, want) in cases {
            let i = info(method, path);
            assert!(i.is_resource_request, "{path}");
            assert_eq!(short(&i), want, "{path}");
        }
    }

    #[test]
    fn non_resource_paths() {
        for (method, path, verb) in [
            (Method::GET, "/version", "get"),
            (Method::GET, "/api", "get"),
            (Method::GET, "/api/v1", "get"),
            (Method::GET, "/apis/apps", "get"),
            (Method::GET, "/apis/apps/v1", "get"),
            (Method::POST, "/healthz", "post"),
            (Method::GET, "/openapi/v2", "get"),
        ] {
            let i = info(method, path);
            assert!(!i.is_resource_request, "{path}");
            assert_eq!((i.verb.as_str(), i.path.as_str()), (verb, path));
        }
    }
}
