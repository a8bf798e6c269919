//! Command-line configuration, with etcd's flag names, defaults and meanings.
//!
//! Like etcd (which uses Go's flag package), a flag may be written `--name value`,
//! `--name=value`, `-name value` or `-name=value`, and every flag can also come from its
//! `ETCD_*` environment variable, so a script written for etcd runs unchanged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// An etcd-v3-compatible key-value server replicated by Raft.
#[derive(Debug, Clone, Parser)]
#[command(name = "cairn-store", version, about)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory [default: ${name}.cairn].
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// List of URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,

    /// List of additional URLs to listen on that will respond to both the /metrics and
    /// /health endpoints.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,

    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,

    /// List of URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,

    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping: name=peer-url,...
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: ClusterState,

    /// Initial cluster token for the cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1536 * 1024)]
    pub max_request_bytes: u32,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,

    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,

    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,

    /// Number of entries kept in the log after a snapshot, for slow followers to catch up
    /// from the log rather than from a snapshot.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5000
    )]
    pub experimental_snapshot_catchup_entries: u64,

    /// Duration of periodic watch progress notifications (Go duration, e.g. 10m, 5s, 500ms).
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m",
        value_parser = parse_go_duration
    )]
    pub experimental_watch_progress_notify_interval: Duration,

    /// Interpret --auto-compaction-retention as 'periodic' (hours or a duration) or
    /// 'revision' (a number of revisions).
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,

    /// Auto compaction retention; 0 disables auto compaction.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,

    /// Type of auth token: 'simple' (JWT tokens are not supported).
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,

    /// Time (in seconds) of the auth token's time to live.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,

    /// Cost of the bcrypt hashing of auth passwords (4 to 31).
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,

    /// Logging level: debug, info, warn, error.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Logger; only 'zap' (structured) is known, accepted for compatibility.
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,

    /// Transport security (`--cert-file` ... `--peer-auto-tls`).
    #[command(flatten)]
    pub tls: crate::tls::TlsFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

/// A configuration error, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("--initial-cluster has an entry without '=': {0:?}")]
    BadInitialCluster(String),
    #[error("{0}")]
    AutoCompaction(String),
    #[error("couldn't find local name {name:?} in the initial cluster configuration")]
    NameNotInCluster { name: String },
    #[error(
        "--initial-cluster has peer URLs {in_cluster:?} for {name:?} but \
         --initial-advertise-peer-urls is {advertised:?}"
    )]
    PeerUrlMismatch {
        name: String,
        in_cluster: Vec<String>,
        advertised: Vec<String>,
    },
    #[error("{0}")]
    Auth(String),
    #[error("--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]")]
    Timeouts { election: u64, heartbeat: u64 },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// One listen URL: where to bind and whether it speaks TLS (`https`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUrl {
    pub url: String,
    /// The URL's host as written (for auto TLS certificates).
    pub host: String,
    pub addr: SocketAddr,
    pub secure: bool,
}

/// One member of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl Config {
    /// Parses the process arguments, accepting Go-style single-dash long flags.
    pub fn from_args() -> Self {
        Self::parse_from(normalize_args(std::env::args()))
    }

    /// Parses an argument list (program name first), as the binary does.
    pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Self, clap::Error> {
        Self::try_parse_from(normalize_args(args))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.cairn", self.name)))
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval)
    }

    /// Checks the flags against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::compactor::policy(&self.auto_compaction_mode, &self.auto_compaction_retention)
            .map_err(ConfigError::AutoCompaction)?;
        crate::auth::check_options(&self.auth_token, self.bcrypt_cost)
            .map_err(ConfigError::Auth)?;
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::Timeouts {
                election: self.election_timeout,
                heartbeat: self.heartbeat_interval,
            });
        }
        self.tls.validate(
            &self.client_listen_urls()?,
            &self.metrics_listen_urls()?,
            &self.peer_listen_urls()?,
        )?;
        let members = self.initial_members()?;
        let me = members
            .iter()
            .find(|m| m.name == self.name)
            .ok_or_else(|| ConfigError::NameNotInCluster {
                name: self.name.clone(),
            })?;
        let mut advertised = split_urls(&self.initial_advertise_peer_urls);
        let mut in_cluster = me.peer_urls.clone();
        advertised.sort();
        in_cluster.sort();
        if advertised != in_cluster {
            return Err(ConfigError::PeerUrlMismatch {
                name: self.name.clone(),
                in_cluster,
                advertised,
            });
        }
        Ok(())
    }

    /// The members named by `--initial-cluster` (default: this member alone, at its
    /// advertised peer URLs, as etcd's default of `default=http://localhost:2380`).
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        let spec = match &self.initial_cluster {
            Some(s) => s.clone(),
            None => split_urls(&self.initial_advertise_peer_urls)
                .iter()
                .map(|u| format!("{}={u}", self.name))
                .collect::<Vec<_>>()
                .join(","),
        };
        let mut members: Vec<InitialMember> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| ConfigError::BadInitialCluster(part.to_string()))?;
            parse_url(url)?;
            match members.iter_mut().find(|m| m.name == name) {
                Some(m) => m.peer_urls.push(url.to_string()),
                None => members.push(InitialMember {
                    name: name.to_string(),
                    peer_urls: vec![url.to_string()],
                }),
            }
        }
        Ok(members)
    }

    pub fn client_listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        listen_addrs(&self.listen_client_urls)
    }

    /// `--listen-metrics-urls` (none by default).
    pub fn metrics_listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        listen_addrs(&self.listen_metrics_urls)
    }

    pub fn peer_listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        listen_addrs(&self.listen_peer_urls)
    }

    pub fn client_listen_urls(&self) -> Result<Vec<ListenUrl>, ConfigError> {
        listen_urls(&self.listen_client_urls)
    }

    pub fn metrics_listen_urls(&self) -> Result<Vec<ListenUrl>, ConfigError> {
        listen_urls(&self.listen_metrics_urls)
    }

    pub fn peer_listen_urls(&self) -> Result<Vec<ListenUrl>, ConfigError> {
        listen_urls(&self.listen_peer_urls)
    }

    pub fn advertise_client_urls(&self) -> Vec<String> {
        split_urls(&self.advertise_client_urls)
    }

    /// The effective watch progress notification period: as in etcd, 0 keeps the 10 minute
    /// default and anything shorter than 100ms is raised to 100ms.
    pub fn watch_progress_notify_interval(&self) -> Duration {
        match self.experimental_watch_progress_notify_interval {
            d if d.is_zero() => Duration::from_secs(600),
            d => d.max(Duration::from_millis(100)),
        }
    }

    /// The effective backend quota: etcd's 2 GiB default when the flag is 0.
    pub fn quota_bytes(&self) -> i64 {
        if self.quota_backend_bytes <= 0 {
            2 * 1024 * 1024 * 1024
        } else {
            self.quota_backend_bytes
        }
    }
}

/// Parses a Go `time.Duration` string as etcd's duration flags take them: a sequence of
/// decimal numbers with units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h` — `10m`, `1h30m`,
/// `1.5s` — or a bare `0`. Negative durations are refused.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (expected e.g. 10m, 5s, 500ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1e0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Rewrites Go-style `-flag` into `--flag` so clap accepts etcd command lines verbatim.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let single_dash_long = a.starts_with('-')
                && !a.starts_with("--")
                && a.len() > 2
                && a.as_bytes()[1].is_ascii_alphabetic();
            if i > 0 && single_dash_long {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

pub fn split_urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses `scheme://host:port` into (scheme, host, port).
pub fn parse_url(url: &str) -> Result<(String, String, u16), ConfigError> {
    let bad = |reason: &str| ConfigError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing scheme"))?;
    if scheme != "http" && scheme != "https" && scheme != "unix" && scheme != "unixs" {
        return Err(bad("URL scheme must be http, https, unix, or unixs"));
    }
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| bad("missing port"))?;
    let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((scheme.to_string(), host.to_string(), port))
}

fn listen_addrs(urls: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    Ok(listen_urls(urls)?.into_iter().map(|u| u.addr).collect())
}

fn listen_urls(urls: &str) -> Result<Vec<ListenUrl>, ConfigError> {
    let mut out = Vec::new();
    for url in split_urls(urls) {
        let (scheme, host, port) = parse_url(&url)?;
        let ip = match host.as_str() {
            "localhost" => "127.0.0.1",
            "" => "0.0.0.0",
            h => h,
        };
        let ip: std::net::IpAddr = ip.parse().map_err(|_| ConfigError::BadUrl {
            url: url.clone(),
            reason: "listen URLs must use an IP address or localhost".into(),
        })?;
        out.push(ListenUrl {
            secure: scheme == "https" || scheme == "unixs",
            addr: SocketAddr::new(ip, port),
            host,
            url,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let args = std::iter::once("cairn-store")
            .chain(args.iter().copied())
            .map(String::from);
        Config::parse_from(normalize_args(args))
    }

    #[test]
    fn defaults_are_a_single_member_on_2379() {
        let c = parse(&[]);
        c.validate().unwrap();
        assert_eq!(c.data_dir(), PathBuf::from("default.cairn"));
        assert_eq!(
            c.client_listen_addrs().unwrap(),
            vec!["127.0.0.1:2379".parse().unwrap()]
        );
        let members = c.initial_members().unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].name, "default");
    }

    #[test]
    fn go_style_flags_and_three_member_cluster() {
        let c = parse(&[
            "-name",
            "infra1",
            "--initial-advertise-peer-urls=http://127.0.0.1:12380",
            "--initial-cluster",
            "infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380",
            "--initial-cluster-state",
            "new",
        ]);
        c.validate().unwrap();
        assert_eq!(c.initial_members().unwrap().len(), 3);
    }

    #[test]
    fn go_durations_and_the_progress_notify_interval() {
        assert_eq!(parse_go_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "5x", "-1s", "s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        let c = parse(&[]);
        assert_eq!(c.watch_progress_notify_interval(), Duration::from_secs(600));
        let c = parse(&["--experimental-watch-progress-notify-interval", "10ms"]);
        assert_eq!(
            c.watch_progress_notify_interval(),
            Duration::from_millis(100)
        );
        let c = parse(&["-experimental-watch-progress-notify-interval=2s"]);
        assert_eq!(c.watch_progress_notify_interval(), Duration::from_secs(2));
    }

    #[test]
    fn name_missing_from_cluster_is_refused() {
        let c = parse(&[
            "--name",
            "x",
            "--initial-cluster",
            "y=http://127.0.0.1:2380",
        ]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::NameNotInCluster { .. })
        ));
    }
}
