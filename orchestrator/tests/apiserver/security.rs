//! The secure port: TLS, authentication (bearer tokens from --token-auth-file, client
//! certificates from --client-ca-file, anonymous requests) and authorization (RBAC evaluated
//! over Roles, ClusterRoles and their bindings stored through the API, aggregated ClusterRoles,
//! AlwaysDeny), answered with Kubernetes' 401 and 403 Status bodies, the review APIs, and the
//! real kubectl with a kubeconfig carrying a token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{have, Api, Backend, Cluster, Kubectl, Reply};

/// Declares one test per backend running `$scenario(Backend)`.
macro_rules! on_both_backends_secure {
    ($scenario:path, $on_cairn:ident, $on_etcd:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_cairn() {
            $scenario(Backend::cairn().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_etcd() {
            if let Some(backend) = Backend::etcd().await {
                $scenario(backend).await;
            }
        }
    };
}

on_both_backends_secure!(
    rbac_allow_deny_matrix,
    rbac_allow_deny_matrix_on_cairn,
    rbac_allow_deny_matrix_on_etcd
);
on_both_backends_secure!(
    authentication_and_reviews,
    authentication_and_reviews_on_cairn,
    authentication_and_reviews_on_etcd
);
on_both_backends_secure!(
    anonymous_off_and_always_deny,
    anonymous_off_and_always_deny_on_cairn,
    anonymous_off_and_always_deny_on_etcd
);
on_both_backends_secure!(
    kubectl_with_a_token,
    kubectl_with_a_token_on_cairn,
    kubectl_with_a_token_on_etcd
);

/// Users of the token file: (token, user, uid, groups).
const TOKENS: &str = "\
admin-token,admin,1,system:masters
alice-token,alice,2,dev
bob-token,bob,3
carol-token,carol,4,\"qa,readers\"
builder-token,system:serviceaccount:dev:builder,5,\"system:serviceaccounts,system:serviceaccounts:dev\"
";

/// Files an apiserver with a secure port needs: tokens, a client CA and a client certificate
/// it signed (CN dave, O ops), and the directory the serving certificate is generated into.
struct Fixtures {
    dir: tempfile::TempDir,
    client_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    client_key: rustls_pki_types::PrivateKeyDer<'static>,
}

impl Fixtures {
    fn new() -> Fixtures {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tokens.csv"), TOKENS).expect("token file");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::default();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "client-ca");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        std::fs::write(dir.path().join("client-ca.pem"), ca_cert.pem()).expect("CA file");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let mut leaf = rcgen::CertificateParams::default();
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        leaf.distinguished_name
            .push(rcgen::DnType::OrganizationName, "ops");
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "dave");
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = leaf.signed_by(&key, &issuer).expect("client cert");
        Fixtures {
            client_chain: vec![cert.der().clone()],
            client_key: rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            dir,
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

/// The flags of a secure apiserver with the fixtures' files, and these further flags.
fn secure_flags(fx: &Fixtures, flags: &[&str]) -> Vec<String> {
    let port = crate::harness::free_port().to_string();
    let (tokens, ca, certs) = (
        fx.path("tokens.csv"),
        fx.path("client-ca.pem"),
        fx.path("certs"),
    );
    let mut all = vec![
        "--secure-port",
        &port,
        "--bind-address",
        "127.0.0.1",
        "--cert-dir",
        &certs,
        "--token-auth-file",
        &tokens,
        "--client-ca-file",
        &ca,
    ];
    all.extend_from_slice(flags);
    all.into_iter().map(String::from).collect()
}

/// A secure apiserver on `backend`.
async fn start(backend: Backend, fx: &Fixtures, flags: &[&str]) -> Cluster {
    let all = secure_flags(fx, flags);
    Cluster::start_with(backend, &all.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// The roots that trust the generated serving certificate: the CA after it in apiserver.crt.
fn roots(cert_file: &Path) -> rustls::RootCertStore {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(cert_file).expect("serving certificate");
    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .expect("PEM");
    assert_eq!(chain.len(), 2, "serving certificate followed by its CA");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(chain[1].clone()).expect("CA");
    roots
}

/// A client certificate (CN mallory, O system:masters) from a CA the server does not trust.
fn untrusted_client_cert() -> (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:masters");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mallory");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).expect("cert");
    (
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

/// Whether the server refuses a connection made with `config` (during or right after the
/// handshake: with TLS 1.3 the client learns of a refused certificate on its first read).
async fn connection_refused(addr: &str, config: rustls::ClientConfig) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let Ok(mut tls) = connector.connect(name, tcp).await else {
        return true;
    };
    if tls
        .write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .is_err()
    {
        return true;
    }
    let mut buf = [0u8; 64];
    matches!(tls.read(&mut buf).await, Err(_) | Ok(0))
}

fn builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
}

/// Secure clients: (anonymous, with dave's client certificate), and the serving cert file.
fn clients(cluster: &Cluster, fx: &Fixtures) -> (Api, Api, PathBuf) {
    let (addr, cert_file) = cluster.secure.clone().expect("secure port on");
    let plain = builder()
        .with_root_certificates(roots(&cert_file))
        .with_no_client_auth();
    let with_cert = builder()
        .with_root_certificates(roots(&cert_file))
        .with_client_auth_cert(fx.client_chain.clone(), fx.client_key.clone_key())
        .expect("client certificate");
    (
        Api::secure(addr.clone(), Arc::new(plain)),
        Api::secure(addr, Arc::new(with_cert)),
        cert_file,
    )
}

/// `body` with the apiVersion and kind of the collection `path` names.
fn typed(path: &str, mut body: Value) -> Value {
    let (api_version, kind) = match path.rsplit('/').next().unwrap_or("") {
        "namespaces" => ("v1", "Namespace"),
        "configmaps" => ("v1", "ConfigMap"),
        "roles" => ("rbac.authorization.k8s.io/v1", "Role"),
        "rolebindings" => ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        "clusterroles" => ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        "clusterrolebindings" => ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        "deployments" => ("apps/v1", "Deployment"),
        "jobs" => ("batch/v1", "Job"),
        other => panic!("no type for {other}"),
    };
    body["apiVersion"] = json!(api_version);
    body["kind"] = json!(kind);
    body
}

fn ok(r: &Reply, what: &str) {
    assert!(
        (200..300).contains(&r.code),
        "{what}: {} {}",
        r.code,
        r.body
    );
}

/// Sends the request until it is answered with `code` (RBAC changes reach the cache through a
/// watch, so a new binding takes effect within a moment).
async fn eventually(api: &Api, method: &str, path: &str, body: &str, code: u16) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.call(method, path, "application/json", body).await;
        if r.code == code {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{method} {path}: wanted {code}, still {} {}",
            r.code,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn forbidden(message: &str, kind: &str, group: &str, name: &str) -> Value {
    let mut details = serde_json::Map::new();
    for (k, v) in [("name", name), ("group", group), ("kind", kind)] {
        if !v.is_empty() {
            details.insert(k.into(), json!(v));
        }
    }
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Forbidden", "details": details, "code": 403,
    })
}

/// Objects the admin (a member of system:masters) creates for the matrix.
fn policy() -> Vec<(&'static str, Value)> {
    let role = |name: &str, rules: Value| json!({"metadata": {"name": name}, "rules": rules});
    let binding = |name: &str, kind: &str, role: &str, subjects: Value| {
        json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": subjects,
        })
    };
    let user =
        |n: &str| json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": n});
    let group =
        |n: &str| json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": n});
    vec![
        ("/api/v1/namespaces", json!({"metadata": {"name": "dev"}})),
        ("/api/v1/namespaces", json!({"metadata": {"name": "prod"}})),
        // alice reads pods in dev (a Role bound by a RoleBinding) ...
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles",
            role(
                "pod-reader",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]),
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
            binding("read-pods", "Role", "pod-reader", json!([user("alice")])),
        ),
        // ... and does anything with anything in batch, everywhere (wildcards, ClusterRoleBinding).
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            role(
                "batch-all",
                json!([{"apiGroups": ["batch"], "resources": ["*"], "verbs": ["*"]}]),
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            binding(
                "alice-batch",
                "ClusterRole",
                "batch-all",
                json!([user("alice")]),
            ),
        ),
        // Group qa (carol) does anything with configmaps, in dev only (a ClusterRole bound by
        // a RoleBinding).
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            role(
                "cm-all",
                json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]),
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
            binding(
                "qa-configmaps",
                "ClusterRole",
                "cm-all",
                json!([group("qa")]),
            ),
        ),
        // Group ops (dave's certificate) scales the deployment "web" only.
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            role(
                "web-scaler",
                json!([{"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": ["web"], "verbs": ["get", "update", "patch"]}]),
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            binding(
                "ops-scale",
                "ClusterRole",
                "web-scaler",
                json!([group("ops")]),
            ),
        ),
        // The service account dev/builder reads secrets in dev (namespace from the binding).
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles",
            role(
                "secret-reader",
                json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]),
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
            binding(
                "builder-secrets",
                "Role",
                "secret-reader",
                json!([{"kind": "ServiceAccount", "name": "builder"}]),
            ),
        ),
        // Anonymous requests may read the core API's discovery (a non-resource prefix).
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            role(
                "core-discovery",
                json!([{"nonResourceURLs": ["/api", "/api/*"], "verbs": ["get"]}]),
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            binding(
                "anonymous-core-discovery",
                "ClusterRole",
                "core-discovery",
                json!([group("system:unauthenticated")]),
            ),
        ),
        // bob views dev through the aggregated "view" role; leases reach it by aggregation.
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
            binding("bob-view", "ClusterRole", "view", json!([user("bob")])),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            json!({
                "metadata": {"name": "leases-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
                "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch"]}],
            }),
        ),
        (
            "/apis/apps/v1/namespaces/dev/deployments",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        ),
        (
            "/apis/apps/v1/namespaces/dev/deployments",
            json!({"metadata": {"name": "api"}, "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        ),
    ]
}

async fn rbac_allow_deny_matrix(backend: Backend) {
    let fx = Fixtures::new();
    let cluster = start(backend, &fx, &["--authorization-mode", "RBAC"]).await;
    let (anonymous, dave, _) = clients(&cluster, &fx);
    let admin = anonymous.with_token("admin-token");
    let alice = anonymous.with_token("alice-token");
    let bob = anonymous.with_token("bob-token");
    let carol = anonymous.with_token("carol-token");
    let builder = anonymous.with_token("builder-token");

    eprintln!("-- system:masters sets up the policy");
    for (path, body) in policy() {
        ok(&admin.post(path, &typed(path, body)).await, path);
    }
    let job = typed("jobs", json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})).to_string();
    let cm = |name: &str| typed("configmaps", json!({"metadata": {"name": name}})).to_string();
    let scale = json!({"spec": {"replicas": 3}}).to_string();

    eprintln!("-- allowed (polled until the RBAC cache has the bindings)");
    let allowed: Vec<(&Api, &str, &str, String, u16)> = vec![
        (
            &alice,
            "GET",
            "/api/v1/namespaces/dev/pods",
            String::new(),
            200,
        ),
        (
            &alice,
            "GET",
            "/api/v1/namespaces/dev/pods?watch=1&timeoutSeconds=1",
            String::new(),
            200,
        ),
        (
            &alice,
            "GET",
            "/api/v1/namespaces/dev/pods/nothere",
            String::new(),
            404,
        ),
        (
            &alice,
            "POST",
            "/apis/batch/v1/namespaces/prod/jobs",
            job.clone(),
            201,
        ),
        (&alice, "GET", "/apis/batch/v1/cronjobs", String::new(), 200),
        (
            &carol,
            "POST",
            "/api/v1/namespaces/dev/configmaps",
            cm("c1"),
            201,
        ),
        (
            &carol,
            "DELETE",
            "/api/v1/namespaces/dev/configmaps/c1",
            String::new(),
            200,
        ),
        (
            &dave,
            "GET",
            "/apis/apps/v1/namespaces/dev/deployments/web/scale",
            String::new(),
            200,
        ),
        (
            &builder,
            "GET",
            "/api/v1/namespaces/dev/secrets",
            String::new(),
            200,
        ),
        (
            &bob,
            "GET",
            "/api/v1/namespaces/dev/pods",
            String::new(),
            200,
        ),
        (
            &bob,
            "GET",
            "/apis/apps/v1/namespaces/dev/deployments/web",
            String::new(),
            200,
        ),
        (
            &bob,
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/dev/leases",
            String::new(),
            200,
        ),
        (&anonymous, "GET", "/version", String::new(), 200),
        (&anonymous, "GET", "/healthz", String::new(), 200),
        (&anonymous, "GET", "/api", String::new(), 200),
        (&anonymous, "GET", "/api/v1", String::new(), 200),
        (&bob, "GET", "/apis", String::new(), 200),
        (&bob, "GET", "/openapi/v2", String::new(), 200),
        (
            &admin,
            "DELETE",
            "/api/v1/namespaces/prod/pods",
            String::new(),
            200,
        ),
    ];
    for (who, method, path, body, code) in &allowed {
        eventually(who, method, path, body, *code).await;
    }
    let r = dave
        .call(
            "PATCH",
            "/apis/apps/v1/namespaces/dev/deployments/web/scale",
            "application/merge-patch+json",
            &scale,
        )
        .await;
    ok(&r, "dave scales web");

    eprintln!("-- denied, with Kubernetes' messages");
    let denied: Vec<(&Api, &str, &str, String, Value)> = vec![
        (&alice, "GET", "/api/v1/namespaces/prod/pods", String::new(),
         forbidden("pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"prod\"", "pods", "", "")),
        (&alice, "DELETE", "/api/v1/namespaces/dev/pods/p", String::new(),
         forbidden("pods \"p\" is forbidden: User \"alice\" cannot delete resource \"pods\" in API group \"\" in the namespace \"dev\"", "pods", "", "p")),
        (&alice, "GET", "/api/v1/pods", String::new(),
         forbidden("pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" at the cluster scope", "pods", "", "")),
        (&alice, "GET", "/apis/apps/v1/namespaces/dev/deployments", String::new(),
         forbidden("deployments.apps is forbidden: User \"alice\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"dev\"", "deployments", "apps", "")),
        (&carol, "POST", "/api/v1/namespaces/prod/configmaps", cm("c2"),
         forbidden("configmaps is forbidden: User \"carol\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"prod\"", "configmaps", "", "")),
        (&dave, "GET", "/apis/apps/v1/namespaces/dev/deployments/api/scale", String::new(),
         forbidden("deployments.apps \"api\" is forbidden: User \"dave\" cannot get resource \"deployments/scale\" in API group \"apps\" in the namespace \"dev\"", "deployments", "apps", "api")),
        (&dave, "GET", "/apis/apps/v1/namespaces/dev/deployments/web", String::new(),
         forbidden("deployments.apps \"web\" is forbidden: User \"dave\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"dev\"", "deployments", "apps", "web")),
        (&dave, "PUT", "/apis/apps/v1/namespaces/dev/deployments/web/status", "{}".into(),
         forbidden("deployments.apps \"web\" is forbidden: User \"dave\" cannot update resource \"deployments/status\" in API group \"apps\" in the namespace \"dev\"", "deployments", "apps", "web")),
        (&builder, "GET", "/api/v1/namespaces/prod/secrets", String::new(),
         forbidden("secrets is forbidden: User \"system:serviceaccount:dev:builder\" cannot list resource \"secrets\" in API group \"\" in the namespace \"prod\"", "secrets", "", "")),
        (&bob, "GET", "/apis/coordination.k8s.io/v1/namespaces/prod/leases", String::new(),
         forbidden("leases.coordination.k8s.io is forbidden: User \"bob\" cannot list resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"prod\"", "leases", "coordination.k8s.io", "")),
        (&bob, "DELETE", "/api/v1/namespaces/dev/pods", String::new(),
         forbidden("pods is forbidden: User \"bob\" cannot deletecollection resource \"pods\" in API group \"\" in the namespace \"dev\"", "pods", "", "")),
        (&bob, "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", String::new(),
         forbidden("clusterroles.rbac.authorization.k8s.io \"admin\" is forbidden: User \"bob\" cannot get resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope", "clusterroles", "rbac.authorization.k8s.io", "admin")),
        (&anonymous, "GET", "/apis", String::new(),
         forbidden("forbidden: User \"system:anonymous\" cannot get path \"/apis\"", "", "", "")),
        (&anonymous, "GET", "/api/v1/namespaces/dev/pods", String::new(),
         forbidden("pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"dev\"", "pods", "", "")),
        (&anonymous, "POST", "/healthz", String::new(),
         forbidden("forbidden: User \"system:anonymous\" cannot post path \"/healthz\"", "", "", "")),
        // Forbidden comes before NotFound, as in Kubernetes.
        (&bob, "GET", "/apis/widgets.example.com/v1/widgets", String::new(),
         forbidden("widgets.widgets.example.com is forbidden: User \"bob\" cannot list resource \"widgets\" in API group \"widgets.example.com\" at the cluster scope", "widgets", "widgets.example.com", "")),
    ];
    for (who, method, path, body, want) in &denied {
        let r = who.call(method, path, "application/json", body).await;
        assert_eq!((r.code, &r.body), (403, want), "{method} {path}");
    }

    eprintln!("-- impersonation: allowed to system:masters, refused to others");
    let as_alice = [("impersonate-user", "alice")];
    let r = admin
        .call_with("GET", "/api/v1/namespaces/prod/pods", &as_alice, "")
        .await;
    assert_eq!(
        (r.code, &r.body),
        (
            403,
            &forbidden("pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"prod\"", "pods", "", "")
        )
    );
    let r = admin
        .call_with("GET", "/apis/batch/v1/namespaces/prod/jobs", &as_alice, "")
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    let r = alice
        .call_with("GET", "/version", &[("impersonate-user", "admin")], "")
        .await;
    assert_eq!(
        (r.code, &r.body),
        (
            403,
            &forbidden("users \"admin\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope", "users", "", "admin")
        )
    );

    eprintln!("-- the aggregated roles are filled by the aggregation controller");
    let view = admin
        .get("/apis/rbac.authorization.k8s.io/v1/clusterroles/view")
        .await;
    let rules = view.body["rules"].as_array().cloned().unwrap_or_default();
    assert!(
        rules.iter().any(|r| r["resources"] == json!(["leases"])),
        "view aggregates leases-view: {rules:?}"
    );
    let admin_role = admin
        .get("/apis/rbac.authorization.k8s.io/v1/clusterroles/admin")
        .await;
    assert!(
        admin_role.body["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["resources"] == json!(["leases"]))),
        "admin aggregates edit, which aggregates view: {}",
        admin_role.body
    );

    eprintln!("-- escalation: roles and bindings grant no more than their writer holds");
    let binding = |name: &str, kind: &str, role: &str, user: &str| {
        typed(
            "rolebindings",
            json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}],
            }),
        )
    };
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles";
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings";
    ok(
        &admin
            .post(
                bindings,
                &binding("carol-admin", "ClusterRole", "admin", "carol"),
            )
            .await,
        "carol administers dev",
    );
    let pods_role = typed(
        "roles",
        json!({"metadata": {"name": "pods"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    );
    eventually(&carol, "POST", roles, &pods_role.to_string(), 201).await;
    let nodes_role = typed(
        "roles",
        json!({"metadata": {"name": "nodes"}, "rules": [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get"]}]}),
    );
    let r = carol.post(roles, &nodes_role).await;
    assert_eq!(
        (r.code, &r.body),
        (
            403,
            &forbidden(
                "roles.rbac.authorization.k8s.io \"nodes\" is forbidden: user \"carol\" (groups=[\"qa\" \"readers\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\"]}",
                "roles",
                "rbac.authorization.k8s.io",
                "nodes"
            )
        )
    );
    ok(
        &carol
            .post(bindings, &binding("bob-pods", "Role", "pods", "bob"))
            .await,
        "binding a role carol holds",
    );
    let r = carol
        .post(
            bindings,
            &binding("bob-root", "ClusterRole", "cluster-admin", "bob"),
        )
        .await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "rolebindings.rbac.authorization.k8s.io \"bob-root\" is forbidden: user \"carol\" (groups=[\"qa\" \"readers\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}\n{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}"
    );
    let r = carol
        .post(
            bindings,
            &binding("bob-ghost", "ClusterRole", "no-such-role", "bob"),
        )
        .await;
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (
            404,
            Some("clusterroles.rbac.authorization.k8s.io \"no-such-role\" not found")
        )
    );

    eprintln!("-- a binding removed stops granting");
    ok(
        &admin
            .delete("/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings/read-pods")
            .await,
        "delete binding",
    );
    eventually(&alice, "GET", "/api/v1/namespaces/dev/pods", "", 403).await;

    eprintln!("-- the insecure port is unauthenticated and privileged, as before");
    ok(
        &cluster.api.get("/api/v1/namespaces/dev/secrets").await,
        "insecure",
    );
    cluster.stop().await;
}

async fn authentication_and_reviews(backend: Backend) {
    let fx = Fixtures::new();
    let cluster = start(backend, &fx, &["--authorization-mode", "RBAC"]).await;
    let (anonymous, dave, _) = clients(&cluster, &fx);
    let unauthorized = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
    });

    eprintln!("-- a bad token is 401 even though anonymous requests are allowed");
    let r = anonymous.with_token("wrong").get("/version").await;
    assert_eq!((r.code, &r.body), (401, &unauthorized));
    assert_eq!(anonymous.get("/version").await.code, 200);

    eprintln!("-- a client certificate from another CA is refused during the handshake");
    let (addr, cert_file) = cluster.secure.clone().expect("secure port");
    let (chain, key) = untrusted_client_cert();
    let mallory = builder()
        .with_root_certificates(roots(&cert_file))
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
    assert!(connection_refused(&addr, mallory).await);
    let plain = builder()
        .with_root_certificates(roots(&cert_file))
        .with_no_client_auth();
    assert!(!connection_refused(&addr, plain).await);

    eprintln!("-- who am I: token, certificate, anonymous");
    let ssr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let path = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let r = anonymous.with_token("carol-token").post(path, &ssr).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        r.body["status"]["userInfo"],
        json!({"username": "carol", "uid": "4", "groups": ["qa", "readers", "system:authenticated"]})
    );
    let r = dave.post(path, &ssr).await;
    assert_eq!(
        r.body["status"]["userInfo"],
        json!({"username": "dave", "groups": ["ops", "system:authenticated"]})
    );
    // Anonymous users are not system:basic-user.
    let r = anonymous.post(path, &ssr).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "selfsubjectreviews.authentication.k8s.io is forbidden: User \"system:anonymous\" cannot create resource \"selfsubjectreviews\" in API group \"authentication.k8s.io\" at the cluster scope"
    );

    eprintln!("-- can I: SelfSubjectAccessReview and SubjectAccessReview");
    let admin = anonymous.with_token("admin-token");
    ok(
        &admin
            .post(
                "/api/v1/namespaces",
                &typed("namespaces", json!({"metadata": {"name": "dev"}})),
            )
            .await,
        "namespace",
    );
    ok(
        &admin
            .post(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
                &json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": "carol-edit"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                    "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "carol"}],
                }),
            )
            .await,
        "binding",
    );
    let ssar = |verb: &str, ns: &str| {
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "resource": "deployments", "group": "apps", "namespace": ns}},
        })
    };
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let carol = anonymous.with_token("carol-token");
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = carol.post(path, &ssar("create", "dev")).await;
        if r.body["status"]["allowed"] == true || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        r.body["status"],
        json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"carol-edit/dev\" of ClusterRole \"edit\" to User \"carol\""})
    );
    let r = carol.post(path, &ssar("create", "prod")).await;
    assert_eq!(r.body["status"], json!({"allowed": false}));
    let r = carol
        .post(path, &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}}))
        .await;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["message"],
        "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"
    );
    let sar = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "nobody", "groups": ["system:authenticated"], "nonResourceAttributes": {"path": "/version", "verb": "get"}},
    });
    let r = admin
        .post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &sar)
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["status"]["allowed"], true);
    // Creating a SubjectAccessReview needs more than system:basic-user.
    let r = carol
        .post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &sar)
        .await;
    assert_eq!(r.code, 403);

    eprintln!("-- the reviews are in discovery");
    let r = carol.get("/apis/authorization.k8s.io/v1").await;
    let names: Vec<&str> = r.body["resources"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "selfsubjectaccessreviews",
            "selfsubjectrulesreviews",
            "subjectaccessreviews"
        ]
    );

    eprintln!("-- what may I do here: SelfSubjectRulesReview");
    let ssrr = |ns: &str| json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": ns}});
    let path = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
    let r = carol.post(path, &ssrr("dev")).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let rules = r.body["status"]["resourceRules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        rules.iter().any(|r| r["apiGroups"] == json!(["apps"])
            && r["resources"]
                .as_array()
                .is_some_and(|x| x.contains(&json!("deployments")))
            && r["verbs"]
                .as_array()
                .is_some_and(|x| x.contains(&json!("create")))),
        "edit's rules in dev: {rules:?}"
    );
    assert_eq!(r.body["status"]["incomplete"], false);
    let r = carol.post(path, &ssrr("prod")).await;
    let rules = r.body["status"]["resourceRules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !rules.iter().any(|r| r["apiGroups"] == json!(["apps"])),
        "nothing of edit outside dev: {rules:?}"
    );
    let r = carol.post(path, &ssrr("")).await;
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (400, Some("no namespace on request"))
    );
    cluster.stop().await;
}

async fn anonymous_off_and_always_deny(backend: Backend) {
    let fx = Fixtures::new();
    let unauthorized = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
    });
    eprintln!("-- anonymous off; RBAC, then AlwaysDeny for what RBAC does not allow");
    let cluster = start(
        backend,
        &fx,
        &[
            "--authorization-mode",
            "RBAC,AlwaysDeny",
            "--anonymous-auth=false",
        ],
    )
    .await;
    let (anonymous, dave, _) = clients(&cluster, &fx);
    let r = anonymous.get("/version").await;
    assert_eq!((r.code, &r.body), (401, &unauthorized));
    let alice = anonymous.with_token("alice-token");
    ok(
        &alice.get("/version").await,
        "public info for authenticated users",
    );
    ok(
        &dave.get("/apis").await,
        "discovery for authenticated users",
    );
    let r = alice.get("/api/v1/namespaces/default/pods").await;
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (403, Some("pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\": Everything is forbidden."))
    );
    ok(
        &anonymous
            .with_token("admin-token")
            .get("/api/v1/namespaces/default/pods")
            .await,
        "system:masters is allowed before any mode",
    );

    eprintln!("-- kube's default mode, AlwaysAllow, turns anonymous requests off");
    let flags = secure_flags(&fx, &[]);
    let cluster = cluster
        .restart_with(&flags.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let (anonymous, _, _) = clients(&cluster, &fx);
    assert_eq!(anonymous.get("/version").await.code, 401);
    ok(
        &anonymous
            .with_token("bob-token")
            .get("/api/v1/namespaces/kube-system/secrets")
            .await,
        "AlwaysAllow",
    );
    cluster.stop().await;
}

async fn kubectl_with_a_token(backend: Backend) {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    let fx = Fixtures::new();
    let cluster = start(backend, &fx, &["--authorization-mode", "RBAC"]).await;
    let (anonymous, _, cert_file) = clients(&cluster, &fx);
    let admin = anonymous.with_token("admin-token");
    for ns in ["dev", "prod"] {
        ok(
            &admin
                .post(
                    "/api/v1/namespaces",
                    &typed("namespaces", json!({"metadata": {"name": ns}})),
                )
                .await,
            ns,
        );
    }
    ok(
        &admin
            .post(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
                &json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": "carol-edit"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                    "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "carol"}],
                }),
            )
            .await,
        "binding",
    );
    let carol_api = anonymous.with_token("carol-token");
    eventually(&carol_api, "GET", "/api/v1/namespaces/dev/pods", "", 200).await;
    let (addr, _) = cluster.secure.clone().expect("secure port");
    let server = format!("https://{addr}");
    let carol = Kubectl::with_token(&server, &cert_file, "carol-token");

    eprintln!("-- allowed: get, create, delete in dev");
    let out = carol.run(&["get", "pods", "-n", "dev"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stderr.contains("No resources found in dev namespace."));
    let out = carol
        .ok(&[
            "create",
            "configmap",
            "c1",
            "-n",
            "dev",
            "--from-literal=a=b",
        ])
        .await;
    assert_eq!(out.trim(), "configmap/c1 created");
    carol.ok(&["get", "configmap", "c1", "-n", "dev"]).await;
    let out = carol.ok(&["delete", "configmap", "c1", "-n", "dev"]).await;
    assert_eq!(out.trim(), "configmap \"c1\" deleted");

    eprintln!("-- denied, with Kubernetes' messages");
    let out = carol.run(&["get", "pods", "-n", "prod"]).await;
    assert!(!out.ok);
    assert_eq!(
        out.stderr.trim(),
        "Error from server (Forbidden): pods is forbidden: User \"carol\" cannot list resource \"pods\" in API group \"\" in the namespace \"prod\""
    );
    let out = carol
        .run(&["create", "configmap", "c2", "-n", "prod"])
        .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("configmaps is forbidden: User \"carol\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"prod\""),
        "{}",
        out.stderr
    );
    let out = carol.run(&["delete", "namespace", "dev"]).await;
    assert!(!out.ok);
    assert_eq!(
        out.stderr.trim(),
        "Error from server (Forbidden): namespaces \"dev\" is forbidden: User \"carol\" cannot delete resource \"namespaces\" in API group \"\" in the namespace \"dev\""
    );

    eprintln!("-- kubectl auth can-i / whoami");
    let out = carol
        .run(&["auth", "can-i", "create", "deployments", "-n", "dev"])
        .await;
    assert_eq!((out.ok, out.stdout.trim()), (true, "yes"));
    let out = carol
        .run(&["auth", "can-i", "create", "deployments", "-n", "prod"])
        .await;
    assert_eq!((out.ok, out.stdout.trim()), (false, "no"));
    let out = carol.ok(&["auth", "can-i", "--list", "-n", "dev"]).await;
    let deployments: Vec<&str> = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some("deployments.apps"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        deployments,
        [
            "deployments.apps",
            "[]",
            "[]",
            "[create",
            "delete",
            "deletecollection",
            "patch",
            "update",
            "get",
            "list",
            "watch]"
        ],
        "{out}"
    );
    let out = carol.run(&["auth", "can-i", "get", "/healthz"]).await;
    assert_eq!((out.ok, out.stdout.trim()), (true, "yes"));
    let out = carol.ok(&["auth", "whoami"]).await;
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["ATTRIBUTE", "VALUE"],
            vec!["Username", "carol"],
            vec!["UID", "4"],
            vec!["Groups", "[qa", "readers", "system:authenticated]"],
        ]
    );

    eprintln!("-- impersonation with --as / --as-group");
    let admin = Kubectl::with_token(&server, &cert_file, "admin-token");
    let out = admin
        .ok(&["auth", "whoami", "--as=alice", "--as-group=qa"])
        .await;
    assert!(
        out.contains("alice") && out.contains("[qa system:authenticated]"),
        "{out}"
    );
    let out = admin
        .run(&["get", "pods", "-n", "prod", "--as=carol"])
        .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("Error from server (Forbidden): pods is forbidden: User \"carol\" cannot list resource \"pods\" in API group \"\" in the namespace \"prod\""),
        "{}",
        out.stderr
    );
    let out = carol.run(&["get", "pods", "-n", "dev", "--as=admin"]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("users \"admin\" is forbidden: User \"carol\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{}",
        out.stderr
    );

    eprintln!("-- a wrong token");
    let stranger = Kubectl::with_token(&server, &cert_file, "wrong-token");
    let out = stranger.run(&["get", "pods"]).await;
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("error: You must be logged in to the server (the server has asked for the client to provide credentials)"),
        "{}",
        out.stderr
    );
    cluster.stop().await;
}
