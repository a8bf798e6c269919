//! etcd's transport-security flags, flattened into [`crate::Config`], and their checks
//! against the listen URLs.
//!
//! Each side (client, peer) has its cert/key pair, its trusted CA, client-certificate
//! authentication and auto TLS. The checks run before anything starts and read no file:
//! an `https` listen URL needs a cert/key pair or auto TLS on its side, as etcd requires.
//! Settings for a side none of whose URLs is `https` are ignored with a warning, as etcd
//! ignores them, except that the peer settings also serve for dialing `https` peers.

use rustls::crypto::CryptoProvider;
use rustls::SupportedProtocolVersion;

use super::TlsError;
use crate::config::ListenUrl;

/// TLS flags with etcd's names and `ETCD_*` variables. Booleans take Go's forms:
/// `--client-cert-auth`, `--client-cert-auth=false`, `ETCD_CLIENT_CERT_AUTH=true`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsFlags {
    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE", default_value = "")]
    pub cert_file: String,

    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE", default_value = "")]
    pub key_file: String,

    /// Path to the client server TLS trusted CA cert file; clients must then present a
    /// certificate it signed.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE", default_value = "")]
    pub trusted_ca_file: String,

    /// Enable client cert authentication.
    #[arg(
        long,
        env = "ETCD_CLIENT_CERT_AUTH",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = parse_go_bool
    )]
    pub client_cert_auth: bool,

    /// Client TLS using generated certificates.
    #[arg(
        long,
        env = "ETCD_AUTO_TLS",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = parse_go_bool
    )]
    pub auto_tls: bool,

    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE", default_value = "")]
    pub peer_cert_file: String,

    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE", default_value = "")]
    pub peer_key_file: String,

    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE", default_value = "")]
    pub peer_trusted_ca_file: String,

    /// Enable peer client cert authentication.
    #[arg(
        long,
        env = "ETCD_PEER_CLIENT_CERT_AUTH",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = parse_go_bool
    )]
    pub peer_client_cert_auth: bool,

    /// Peer TLS using generated certificates.
    #[arg(
        long,
        env = "ETCD_PEER_AUTO_TLS",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = parse_go_bool
    )]
    pub peer_auto_tls: bool,

    /// Comma-separated list of supported TLS 1.2 cipher suites between client/server and
    /// peers (empty: all that are offered).
    #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "")]
    pub cipher_suites: String,

    /// Minimum TLS version supported: TLS1.2 or TLS1.3.
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "TLS1.2")]
    pub tls_min_version: String,

    /// Maximum TLS version supported: TLS1.2 or TLS1.3 (empty: TLS1.3).
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "")]
    pub tls_max_version: String,
}

/// One side's settings, as given.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    /// "client" or "peer", for messages and the auto TLS directory.
    pub name: &'static str,
    pub cert_file: &'a str,
    pub key_file: &'a str,
    pub trusted_ca_file: &'a str,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
}

impl Side<'_> {
    /// Whether a cert/key pair was given (etcd's `!TLSInfo.Empty()`).
    pub fn has_pair(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty()
    }

    /// Whether this side has anything to serve TLS with.
    pub fn can_serve(&self) -> bool {
        self.has_pair() || self.auto_tls
    }

    /// Whether any TLS flag of this side was given.
    pub fn any_given(&self) -> bool {
        self.can_serve() || !self.trusted_ca_file.is_empty() || self.client_cert_auth
    }

    fn check(&self) -> Result<(), TlsError> {
        if self.has_pair() && (self.cert_file.is_empty() || self.key_file.is_empty()) {
            return Err(TlsError::HalfPair {
                cert: self.cert_file.to_string(),
                key: self.key_file.to_string(),
            });
        }
        if self.client_cert_auth && self.trusted_ca_file.is_empty() {
            let (auth, ca) = match self.name {
                "peer" => ("--peer-client-cert-auth", "--peer-trusted-ca-file"),
                _ => ("--client-cert-auth", "--trusted-ca-file"),
            };
            return Err(TlsError::CertAuthWithoutCa { auth, ca });
        }
        Ok(())
    }
}

impl TlsFlags {
    pub fn client(&self) -> Side<'_> {
        Side {
            name: "client",
            cert_file: &self.cert_file,
            key_file: &self.key_file,
            trusted_ca_file: &self.trusted_ca_file,
            client_cert_auth: self.client_cert_auth,
            auto_tls: self.auto_tls,
        }
    }

    pub fn peer(&self) -> Side<'_> {
        Side {
            name: "peer",
            cert_file: &self.peer_cert_file,
            key_file: &self.peer_key_file,
            trusted_ca_file: &self.peer_trusted_ca_file,
            client_cert_auth: self.peer_client_cert_auth,
            auto_tls: self.peer_auto_tls,
        }
    }

    /// Checks the flags against each other and against the listen URLs.
    pub fn validate(
        &self,
        client: &[ListenUrl],
        metrics: &[ListenUrl],
        peer: &[ListenUrl],
    ) -> Result<(), TlsError> {
        self.crypto()?;
        let c = self.client();
        if let Some(url) = client.iter().find(|u| u.secure) {
            if !c.can_serve() {
                return Err(TlsError::NoClientCert {
                    url: url.url.clone(),
                });
            }
        }
        if let Some(url) = metrics.iter().find(|u| u.secure) {
            if !c.can_serve() {
                return Err(TlsError::NoCert { addr: url.addr });
            }
        }
        if client.iter().chain(metrics).any(|u| u.secure) {
            c.check()?;
        }
        let p = self.peer();
        if let Some(url) = peer.iter().find(|u| u.secure) {
            if !p.can_serve() {
                return Err(TlsError::NoCert { addr: url.addr });
            }
        }
        if p.any_given() {
            p.check()?;
        }
        Ok(())
    }

    /// The TLS versions and the crypto provider (ring) with the cipher suites allowed by
    /// `--cipher-suites`, `--tls-min-version` and `--tls-max-version`.
    pub fn crypto(&self) -> Result<Crypto, TlsError> {
        let min = parse_version(&self.tls_min_version)?;
        let max = match self.tls_max_version.as_str() {
            "" => Version::Tls13,
            v => parse_version(v)?,
        };
        if min > max {
            return Err(TlsError::Versions {
                min: self.tls_min_version.clone(),
                max: self.tls_max_version.clone(),
            });
        }
        let names = crate::config::split_urls(&self.cipher_suites);
        if !names.is_empty() && min == Version::Tls13 {
            return Err(TlsError::SuitesWithTls13Only);
        }
        let mut provider = rustls::crypto::ring::default_provider();
        if !names.is_empty() {
            let mut chosen = Vec::new();
            for name in &names {
                let suite = provider
                    .cipher_suites
                    .iter()
                    .find(|s| s.tls13().is_none() && suite_matches(s.suite(), name))
                    .ok_or_else(|| TlsError::CipherSuite {
                        name: name.clone(),
                        supported: tls12_suite_names(),
                    })?;
                chosen.push(*suite);
            }
            // TLS 1.3 suites are not configurable (as in etcd 3.5, where Go fixes them).
            chosen.extend(
                provider
                    .cipher_suites
                    .iter()
                    .filter(|s| s.tls13().is_some())
                    .copied(),
            );
            provider.cipher_suites = chosen;
        }
        let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
        if max == Version::Tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if min == Version::Tls12 {
            versions.push(&rustls::version::TLS12);
        }
        Ok(Crypto {
            provider: std::sync::Arc::new(provider),
            versions,
        })
    }
}

/// What every TLS config of a member is built from.
#[derive(Debug, Clone)]
pub struct Crypto {
    pub provider: std::sync::Arc<CryptoProvider>,
    pub versions: Vec<&'static SupportedProtocolVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    Tls12,
    Tls13,
}

fn parse_version(v: &str) -> Result<Version, TlsError> {
    match v {
        "TLS1.2" => Ok(Version::Tls12),
        "TLS1.3" => Ok(Version::Tls13),
        "TLS1.0" | "TLS1.1" => Err(TlsError::OldVersion(v.to_string())),
        _ => Err(TlsError::UnknownVersion(v.to_string())),
    }
}

/// Go's names for the ChaCha20 suites drop rustls's `_SHA256` suffix; both are accepted.
fn suite_matches(suite: rustls::CipherSuite, name: &str) -> bool {
    suite.as_str().is_some_and(|ours| {
        ours == name || (ours.contains("CHACHA20") && ours.strip_suffix("_SHA256") == Some(name))
    })
}

fn tls12_suite_names() -> String {
    rustls::crypto::ring::default_provider()
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_none())
        .filter_map(|s| s.suite().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a boolean as Go's `strconv.ParseBool` does (etcd's boolean flags and variables).
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn validate(args: &[&str]) -> Result<Config, String> {
        let args = std::iter::once("cairn-store")
            .chain(args.iter().copied())
            .map(String::from);
        let cfg =
            Config::parse_args(crate::config::normalize_args(args)).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    const HTTPS_CLIENT: &[&str] = &[
        "--listen-client-urls",
        "https://127.0.0.1:2379",
        "--advertise-client-urls",
        "https://127.0.0.1:2379",
    ];

    fn with(base: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
        base.iter().chain(more).copied().collect()
    }

    #[test]
    fn https_urls_need_a_certificate_as_etcd_says() {
        assert_eq!(
            validate(HTTPS_CLIENT).unwrap_err(),
            "TLS key/cert (--cert-file, --key-file) must be provided for client url \
             https://127.0.0.1:2379 with HTTPS scheme"
        );
        let peer = [
            "--listen-peer-urls",
            "https://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "https://127.0.0.1:2380",
        ];
        assert_eq!(
            validate(&peer).unwrap_err(),
            "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"
        );
        assert_eq!(
            validate(&["--listen-metrics-urls", "https://127.0.0.1:2381"]).unwrap_err(),
            "cannot listen on TLS for 127.0.0.1:2381: KeyFile and CertFile are not presented"
        );
        validate(&with(HTTPS_CLIENT, &["--auto-tls"])).unwrap();
        validate(&with(&peer, &["-peer-auto-tls=true"])).unwrap();
        validate(&with(
            HTTPS_CLIENT,
            &["--cert-file", "c.pem", "--key-file", "k.pem"],
        ))
        .unwrap();
    }

    #[test]
    fn http_urls_ignore_the_client_flags() {
        let cfg = validate(&[
            "--cert-file",
            "c.pem",
            "--key-file",
            "k.pem",
            "--client-cert-auth",
        ])
        .unwrap();
        assert!(cfg.tls.client_cert_auth);
    }

    #[test]
    fn inconsistent_flags_are_refused() {
        let half = validate(&with(HTTPS_CLIENT, &["--cert-file", "c.pem"])).unwrap_err();
        assert_eq!(
            half,
            "KeyFile and CertFile must both be present[key: , cert: c.pem]"
        );
        let no_ca = validate(&with(HTTPS_CLIENT, &["--auto-tls", "--client-cert-auth"]));
        assert!(no_ca
            .unwrap_err()
            .contains("--client-cert-auth needs --trusted-ca-file"));
        let peer_no_ca = validate(&["--peer-auto-tls", "--peer-client-cert-auth=true"]);
        assert!(peer_no_ca
            .unwrap_err()
            .contains("--peer-client-cert-auth needs --peer-trusted-ca-file"));
        // Go's boolean forms; a separate value is not one of them.
        assert!(
            !validate(&["--client-cert-auth=false"])
                .unwrap()
                .tls
                .client_cert_auth
        );
        assert!(validate(&["--client-cert-auth", "true"]).is_err());
        assert!(validate(&["--auto-tls=maybe"]).is_err());
    }

    #[test]
    fn cipher_suites_and_versions() {
        let suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305";
        let cfg = validate(&["--cipher-suites", suites]).unwrap();
        let crypto = cfg.tls.crypto().unwrap();
        let tls12: Vec<_> = crypto
            .provider
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_none())
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            vec![
                rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(crypto.versions.len(), 2);

        let cbc = validate(&["--cipher-suites", "TLS_RSA_WITH_AES_128_CBC_SHA"]).unwrap_err();
        assert!(cbc.starts_with("unexpected TLS cipher suite \"TLS_RSA_WITH_AES_128_CBC_SHA\""));
        assert_eq!(
            validate(&["--tls-min-version", "TLS1.3", "--cipher-suites", suites]).unwrap_err(),
            "cipher suites cannot be configured when only TLS1.3 is enabled"
        );
        assert!(validate(&["--tls-min-version", "TLS1.1"])
            .unwrap_err()
            .contains("not supported"));
        assert_eq!(
            validate(&["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"]).unwrap_err(),
            "min version (TLS1.3) is greater than max version (TLS1.2)"
        );
        let only13 = validate(&["--tls-min-version", "TLS1.3"]).unwrap();
        assert_eq!(
            only13.tls.crypto().unwrap().versions,
            vec![&rustls::version::TLS13]
        );
        assert!(matches!(
            Config::parse_args(
                ["x", "--tls-max-version", "SSL3"]
                    .iter()
                    .map(|s| s.to_string())
            )
            .unwrap()
            .validate(),
            Err(ConfigError::Tls(super::TlsError::UnknownVersion(_)))
        ));
    }
}
