//! URL paths to what they address, following kube-apiserver's layout:
//! `/api/v1/...` (core group) and `/apis/<group>/<version>/...`, then
//! `[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]`.

use super::resources::{self, ResourceDef};
use super::status::ApiError;

/// Which objects a resource request addresses.
#[derive(Debug)]
pub struct Target {
    pub def: &'static ResourceDef,
    /// Request namespace; None for cluster-scoped kinds and all-namespace lists.
    pub namespace: Option<String>,
    /// None for the collection.
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Every path the server answers.
#[derive(Debug)]
pub enum Route {
    Version,
    Health,
    Api,
    Apis,
    Group(String),
    ResourceList(String, String),
    OpenApiV2,
    /// `/openapi/v3`: which document describes which group-version.
    OpenApiV3,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`: the key (`api/v1`, ...).
    OpenApiV3GroupVersion(String),
    Resource(Target),
}

pub fn resolve(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Route::Health),
        ["api"] => Ok(Route::Api),
        ["apis"] => Ok(Route::Apis),
        ["openapi", "v2"] => Ok(Route::OpenApiV2),
        ["openapi", "v3"] => Ok(Route::OpenApiV3),
        ["openapi", "v3", gv @ ..] if !gv.is_empty() => {
            Ok(Route::OpenApiV3GroupVersion(gv.join("/")))
        }
        ["apis", group] => {
            if resources::group_versions().iter().any(|(g, _)| g == group) {
                Ok(Route::Group(group.to_string()))
            } else {
                Err(ApiError::NoRoute)
            }
        }
        ["api", version, rest @ ..] => under_group_version("", version, rest),
        ["apis", group, version, rest @ ..] => under_group_version(group, version, rest),
        _ => Err(ApiError::NoRoute),
    }
}

fn under_group_version(group: &str, version: &str, rest: &[&str]) -> Result<Route, ApiError> {
    if !resources::group_versions().contains(&(group, version)) {
        return Err(ApiError::NoRoute);
    }
    let lookup = |plural: &str| resources::lookup(group, version, plural).ok_or(ApiError::NoRoute);
    let target = |def, namespace: Option<&str>, name: Option<&&str>, sub: Option<&&str>| {
        Ok(Route::Resource(Target {
            def,
            namespace: namespace.map(str::to_string),
            name: name.map(|n| n.to_string()),
            subresource: sub.map(|s| s.to_string()),
        }))
    };
    match rest {
        [] => Ok(Route::ResourceList(group.into(), version.into())),
        // namespaces/<ns>/<namespaced resource>/...
        ["namespaces", ns, plural, tail @ ..]
            if tail.len() <= 2
                && resources::lookup(group, version, plural).is_some_and(|d| d.namespaced) =>
        {
            target(lookup(plural)?, Some(ns), tail.first(), tail.get(1))
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let def = lookup(plural)?;
            // A namespaced kind has no cluster-level item paths (only the all-namespace list).
            if def.namespaced && !tail.is_empty() {
                return Err(ApiError::NoRoute);
            }
            target(def, None, tail.first(), tail.get(1))
        }
        _ => Err(ApiError::NoRoute),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match resolve(path).unwrap() {
            Route::Resource(t) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn resolves_kubernetes_paths() {
        let t = target("/api/v1/namespaces/default/pods/web");
        assert_eq!(
            (t.def.plural, t.namespace.as_deref(), t.name.as_deref()),
            ("pods", Some("default"), Some("web"))
        );
        let t = target("/api/v1/namespaces/default");
        assert_eq!(
            (t.def.plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = target("/api/v1/namespaces/kube-system/status");
        assert_eq!(
            (t.def.plural, t.name.as_deref(), t.subresource.as_deref()),
            ("namespaces", Some("kube-system"), Some("status"))
        );
        let t = target("/apis/apps/v1/namespaces/x/deployments/d/status");
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = target("/api/v1/pods");
        assert_eq!((t.namespace, t.name), (None, None));
        assert!(matches!(resolve("/api/v1/pods/x"), Err(ApiError::NoRoute)));
        let t = target("/apis/batch/v1/jobs");
        assert_eq!((t.def.kind, t.namespace), ("Job", None));
        assert!(matches!(
            resolve("/apis/batch/v1/widgets"),
            Err(ApiError::NoRoute)
        ));
        assert!(matches!(
            resolve("/apis/batch/v2/jobs"),
            Err(ApiError::NoRoute)
        ));
        assert!(matches!(
            resolve("/apis/apps/v1"),
            Ok(Route::ResourceList(..))
        ));
    }
}
