//! The apiserver's flags, named after kube-apiserver's so its scripts carry over. Flags that name
//! features not built yet are refused at startup rather than silently ignored (see `validate`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::service_ip::ServiceCidr;
use super::service_node_port::NodePortRange;

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
    /// TLS port; serving TLS is not built yet, so 0 (off) is the only accepted value today.
    #[arg(long = "secure-port", default_value_t = 0)]
    pub secure_port: u16,
    /// Address of the plain-HTTP port.
    #[arg(long = "insecure-bind-address", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub insecure_bind_address: IpAddr,
    /// Plain-HTTP port, with no authentication: for tests and local use. 0 picks a free port.
    #[arg(long = "insecure-port", default_value_t = 8080)]
    pub insecure_port: u16,
    /// Bearer tokens file (Kubernetes' CSV format). Not built yet: refused if given.
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<PathBuf>,
    /// Range Service cluster IPs are allocated from (IPv4; the first address is kept for the
    /// `kubernetes` Service).
    #[arg(long = "service-cluster-ip-range", default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// The address the `default/kubernetes` Endpoints give for this apiserver. Default: the
    /// bind address of the served port, or (when that is unspecified) the host's address on
    /// its default route, else 127.0.0.1.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,
    /// Ports NodePort and LoadBalancer Services get their node ports from (`a-b`, `a+n`).
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,
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
        if self.token_auth_file.is_some() {
            return Err("--token-auth-file: token authentication is not implemented yet".into());
        }
        if self.secure_port != 0 {
            return Err(
                "--secure-port: serving TLS is not implemented yet; use --insecure-port".into(),
            );
        }
        if self.etcd_servers.is_empty() {
            return Err("--etcd-servers: at least one endpoint is required".into());
        }
        if !self.etcd_prefix.starts_with('/') || self.etcd_prefix.ends_with('/') {
            return Err("--etcd-prefix must start with '/' and not end with '/'".into());
        }
        self.service_cidr()?;
        self.node_port_range()?;
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

    /// The parsed `--service-cluster-ip-range`.
    pub fn service_cidr(&self) -> Result<ServiceCidr, String> {
        ServiceCidr::parse(&self.service_cluster_ip_range)
            .map_err(|e| format!("--service-cluster-ip-range: {e}"))
    }
}
