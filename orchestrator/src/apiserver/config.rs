//! The apiserver's flags, named after kube-apiserver's so its scripts carry over. Flag values
//! this build cannot honour are refused at startup rather than silently ignored (see
//! `validate`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::auth::authorize::Mode;
use super::kubelet;
use super::service_ip::ServiceCidr;
use super::service_node_port::NodePortRange;
use super::watch_cache::CacheConfig;

/// `cairn apiserver` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// etcd v3 endpoints (comma separated), e.g. http://127.0.0.1:2379.
    #[arg(
        long = "etcd-servers",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_servers: Vec<String>,
    /// Key prefix under which every object is stored.
    #[arg(long = "etcd-prefix", default_value = "/registry")]
    pub etcd_prefix: String,
    /// Address of the TLS port (--secure-port).
    #[arg(long = "bind-address", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_address: IpAddr,
    /// TLS port (HTTP/1.1 and h2 through ALPN), with authentication and authorization. 0 turns
    /// it off.
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,
    /// Serving certificate (PEM; may be followed by intermediates). Without it and
    /// --tls-private-key-file, a self-signed one is generated into --cert-dir.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of --tls-cert-file (PEM).
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Where the generated serving certificate is kept (apiserver.crt, apiserver.key).
    #[arg(long = "cert-dir", default_value = "/var/run/kubernetes")]
    pub cert_dir: PathBuf,
    /// CA bundle (PEM) that client certificates are verified against; a verified certificate's
    /// CN is the user name and its O values are the groups.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Address of the plain-HTTP port.
    #[arg(long = "insecure-bind-address", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub insecure_bind_address: IpAddr,
    /// Plain-HTTP port, with no authentication or authorization (every request acts as a member
    /// of system:masters): for tests and local use. 0 picks a free port.
    #[arg(long = "insecure-port", default_value_t = 8080)]
    pub insecure_port: u16,
    /// Bearer tokens file (Kubernetes' CSV format: token,user,uid[,"group1,group2"]).
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<PathBuf>,
    /// Ordered list of authorization modes on the secure port: AlwaysAllow, AlwaysDeny, RBAC.
    #[arg(long = "authorization-mode", default_value = "AlwaysAllow")]
    pub authorization_mode: String,
    /// Requests to the secure port without credentials are served as system:anonymous (group
    /// system:unauthenticated). Turned off when AlwaysAllow is an authorization mode.
    #[arg(
        long = "anonymous-auth",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub anonymous_auth: bool,
    /// Range Service cluster IPs are allocated from (IPv4; the first address is kept for the
    /// `kubernetes` Service).
    #[arg(long = "service-cluster-ip-range", default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// Events the watch cache keeps per resource for watches from an exact resourceVersion
    /// (kube-apiserver's flag; older ones get 410 Expired).
    #[arg(long = "default-watch-cache-size", default_value_t = 1024)]
    pub default_watch_cache_size: usize,
    /// How often a watch that allows bookmarks gets a BOOKMARK event (Go duration: 1m, 500ms).
    #[arg(long = "watch-bookmark-interval", default_value = "1m", value_parser = parse_duration)]
    pub watch_bookmark_interval: Duration,
    /// The address the `default/kubernetes` Endpoints give for this apiserver. Default: the
    /// bind address of the served port, or (when that is unspecified) the host's address on
    /// its default route, else 127.0.0.1.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,
    /// Ports NodePort and LoadBalancer Services get their node ports from (`a-b`, `a+n`).
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Node address types tried, in this order, to reach a node's kubelet (for pods/log).
    #[arg(
        long = "kubelet-preferred-address-types",
        value_delimiter = ',',
        default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP"
    )]
    pub kubelet_preferred_address_types: Vec<String>,
    /// CA bundle (PEM) that kubelets' serving certificates are verified against. Without it,
    /// as in kube-apiserver, they are not verified.
    #[arg(long = "kubelet-certificate-authority")]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Client certificate (PEM) presented to kubelets.
    #[arg(long = "kubelet-client-certificate")]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Private key (PEM) of --kubelet-client-certificate.
    #[arg(long = "kubelet-client-key")]
    pub kubelet_client_key: Option<PathBuf>,
    /// How long connecting to a kubelet and waiting for its response headers may take.
    #[arg(long = "kubelet-timeout", default_value = "5s", value_parser = parse_duration)]
    pub kubelet_timeout: Duration,
}

/// A Go-style duration made of one number and a unit: `500ms`, `30s`, `1m`, `2h`.
fn parse_duration(v: &str) -> Result<Duration, String> {
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("missing unit in duration {v:?}"))?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {v:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in duration {v:?}")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {v:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Config {
    /// Parses flags as the command line would (`args[0]` is the program name).
    pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        <Wrapper as clap::Parser>::try_parse_from(args).map(|w| w.config)
    }

    /// Rejects flag combinations that ask for something this build cannot do.
    pub fn validate(&self) -> Result<(), String> {
        if self.tls_cert_file.is_some() != self.tls_private_key_file.is_some() {
            return Err(
                "--tls-cert-file and --tls-private-key-file must be specified together".into(),
            );
        }
        self.authorization_modes()?;
        if self.etcd_servers.is_empty() {
            return Err("--etcd-servers: at least one endpoint is required".into());
        }
        if !self.etcd_prefix.starts_with('/') || self.etcd_prefix.ends_with('/') {
            return Err("--etcd-prefix must start with '/' and not end with '/'".into());
        }
        if self.default_watch_cache_size == 0 {
            return Err("--default-watch-cache-size must be positive: every watch is served from the watch cache".into());
        }
        self.service_cidr()?;
        self.node_port_range()?;
        if self.kubelet_client_certificate.is_some() != self.kubelet_client_key.is_some() {
            return Err(
                "--kubelet-client-certificate and --kubelet-client-key must be specified together"
                    .into(),
            );
        }
        for t in &self.kubelet_preferred_address_types {
            if !kubelet::ADDRESS_TYPES.contains(&t.as_str()) {
                return Err(format!(
                    "--kubelet-preferred-address-types: unknown address type {t:?}: supported values are {}",
                    kubelet::ADDRESS_TYPES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// `--advertise-address`, or what kube-apiserver would pick without it.
    pub fn advertise_address(&self) -> IpAddr {
        if let Some(a) = self.advertise_address {
            return a;
        }
        if !self.insecure_bind_address.is_unspecified() {
            return self.insecure_bind_address;
        }
        // The source address of the default route: connecting a UDP socket sends nothing.
        std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| {
                s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
                s.local_addr()
            })
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The parsed `--service-node-port-range`.
    pub fn node_port_range(&self) -> Result<NodePortRange, String> {
        NodePortRange::parse(&self.service_node_port_range)
            .map_err(|e| format!("--service-node-port-range: {e}"))
    }

    /// The parsed `--authorization-mode`.
    pub fn authorization_modes(&self) -> Result<Vec<Mode>, String> {
        Mode::parse_list(&self.authorization_mode)
    }

    /// Whether anonymous requests are served: `--anonymous-auth`, except that kube-apiserver
    /// turns it off next to the AlwaysAllow authorizer (which would let anyone do anything).
    pub fn anonymous_allowed(&self) -> bool {
        if self.anonymous_auth
            && self
                .authorization_modes()
                .is_ok_and(|m| m.contains(&Mode::AlwaysAllow))
        {
            tracing::warn!(
                "AnonymousAuth is not allowed with the AlwaysAllow authorizer. Resetting \
                 AnonymousAuth to false. You should use a different authorizer"
            );
            return false;
        }
        self.anonymous_auth
    }

    /// The parsed `--service-cluster-ip-range`.
    pub fn service_cidr(&self) -> Result<ServiceCidr, String> {
        ServiceCidr::parse(&self.service_cluster_ip_range)
            .map_err(|e| format!("--service-cluster-ip-range: {e}"))
    }

    /// How kubelets are reached.
    pub fn kubelet(&self) -> kubelet::Settings {
        kubelet::Settings {
            preferred_address_types: self.kubelet_preferred_address_types.clone(),
            certificate_authority: self.kubelet_certificate_authority.clone(),
            client_cert: self
                .kubelet_client_certificate
                .clone()
                .zip(self.kubelet_client_key.clone()),
            timeout: self.kubelet_timeout,
        }
    }

    /// The watch cache's sizes and intervals.
    pub fn watch_cache(&self) -> CacheConfig {
        CacheConfig {
            window: self.default_watch_cache_size,
            bookmark_interval: self.watch_bookmark_interval,
            ..CacheConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
