//! A key and certificate for the hosts of a listener, generated when its owner was given
//! none: etcd's auto TLS (`--auto-tls`, `--peer-auto-tls`, a certificate signed by its own
//! key) and kube-apiserver's `--cert-dir` (a serving certificate signed by a CA made with it).
//! [`Spec`] carries what differs between the two; the rest is common:
//!
//! - keys are ECDSA P-256 (etcd makes P-521 keys, which ring cannot sign with);
//! - the certificate is valid for a year from its start, for the hosts as subject alternative
//!   names, for digital signatures and key encipherment, and for server authentication;
//! - the files are made once and reused on every later start while both exist, as etcd and
//!   kube-apiserver reuse theirs; the key file is written `0600` before the certificate file
//!   (`0644`), each synced, so a certificate file never exists without its key.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// How long a generated certificate (and its CA) is valid.
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating a self-signed {purpose} certificate: {source}")]
    Generate {
        purpose: &'static str,
        source: rcgen::Error,
    },
}

/// What a generated certificate is, where the two servers' certificates differ.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// What it serves, as error messages name it: `client`, `peer`, `serving`.
    pub purpose: &'static str,
    /// The IP addresses or DNS names it is valid for; empty ones are skipped, repeats kept once.
    pub hosts: &'a [String],
    /// Its subject.
    pub subject: DistinguishedName,
    /// Who signs it.
    pub issuer: Issuer,
    /// Whether it is also valid for client authentication (a store member presents its peer
    /// certificate when it dials another member).
    pub client_auth: bool,
    /// How long before now its validity starts, for clients whose clocks are behind.
    pub backdate: Duration,
}

/// Who signs a generated certificate.
#[derive(Debug, Clone)]
pub enum Issuer {
    /// Its own key (etcd's auto TLS): the certificate file holds that one certificate.
    Itself,
    /// A CA with this subject, generated with it and valid as long (kube-apiserver's): the
    /// certificate file holds the certificate, then the CA.
    NewCa(DistinguishedName),
}

/// The two files of a generated certificate.
#[derive(Debug, Clone)]
pub struct Files {
    /// The certificate chain, leaf first, in PEM.
    pub cert_file: PathBuf,
    /// The leaf's private key, in PEM.
    pub key_file: PathBuf,
    /// Made by this call rather than found.
    pub created: bool,
}

/// `<dir>/<cert_name>` and `<dir>/<key_name>`, generated to `spec` first (and `dir` created)
/// unless both files exist. Existing files are not read: loading them is the caller's.
pub fn load_or_create(
    dir: &Path,
    cert_name: &str,
    key_name: &str,
    spec: &Spec<'_>,
) -> Result<Files, SelfSignedError> {
    let cert_file = dir.join(cert_name);
    let key_file = dir.join(key_name);
    let created = !(cert_file.exists() && key_file.exists());
    if created {
        let (chain_pem, key_pem) = generate(spec)?;
        std::fs::create_dir_all(dir).map_err(|source| SelfSignedError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        write(&key_file, key_pem.as_bytes(), 0o600)?;
        write(&cert_file, chain_pem.as_bytes(), 0o644)?;
    }
    Ok(Files {
        cert_file,
        key_file,
        created,
    })
}

/// A fresh key pair and a certificate to `spec`: (the chain in PEM, leaf first; the leaf's
/// key in PEM).
pub fn generate(spec: &Spec<'_>) -> Result<(String, String), SelfSignedError> {
    let failed = |source| SelfSignedError::Generate {
        purpose: spec.purpose,
        source,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let not_before = rcgen::date_time_ymd(1970, 1, 1) + now - spec.backdate;

    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = spec.subject.clone();
    for host in spec.hosts.iter().filter(|h| !h.is_empty()) {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into().map_err(failed)?),
        };
        if !leaf.subject_alt_names.contains(&san) {
            leaf.subject_alt_names.push(san);
        }
    }
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if spec.client_auth {
        leaf.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    leaf.not_before = not_before;
    leaf.not_after = not_before + VALIDITY;
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;

    let chain = match &spec.issuer {
        Issuer::Itself => leaf.self_signed(&leaf_key).map_err(failed)?.pem(),
        Issuer::NewCa(subject) => {
            let mut ca = CertificateParams::default();
            ca.distinguished_name = subject.clone();
            ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
            ca.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            ca.not_before = not_before;
            ca.not_after = not_before + VALIDITY;
            let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
            let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
            let issuer = rcgen::Issuer::new(ca, ca_key);
            let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(failed)?;
            format!("{}{}", leaf_cert.pem(), ca_cert.pem())
        }
    };
    Ok((chain, leaf_key.serialize_pem()))
}

/// Writes `bytes` to `path` with `mode` (for a new file) and syncs it.
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SelfSignedError> {
    let failed = |source| SelfSignedError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    f.write_all(bytes).map_err(failed)?;
    f.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pem;

    fn spec(hosts: &[String], issuer: Issuer) -> Spec<'_> {
        let mut subject = DistinguishedName::new();
        subject.push(rcgen::DnType::OrganizationName, "cairn");
        Spec {
            purpose: "test",
            hosts,
            subject,
            issuer,
            client_auth: false,
            backdate: Duration::ZERO,
        }
    }

    #[test]
    fn made_once_then_reused_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let spec = spec(&hosts, Issuer::Itself);
        let first = load_or_create(dir.path(), "cert.pem", "key.pem", &spec).unwrap();
        assert!(first.created);
        let chain = pem::certificates(&first.cert_file).unwrap();
        assert_eq!(chain.len(), 1, "signed by its own key");
        let again = load_or_create(dir.path(), "cert.pem", "key.pem", &spec).unwrap();
        assert!(!again.created);
        assert_eq!(pem::certificates(&again.cert_file).unwrap(), chain);
        let mode = std::fs::metadata(&first.key_file).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn a_new_ca_comes_after_the_certificate_it_signed() {
        let hosts = vec!["localhost".to_string(), String::new(), "localhost".into()];
        let mut ca = DistinguishedName::new();
        ca.push(rcgen::DnType::CommonName, "localhost-ca@1");
        let (chain, _key) = generate(&spec(&hosts, Issuer::NewCa(ca))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("chain.pem");
        std::fs::write(&file, chain).unwrap();
        let certs = pem::certificates(&file).unwrap();
        assert_eq!(certs.len(), 2, "certificate, then its CA");
        let subjects: Vec<_> = certs
            .iter()
            .map(|c| crate::subject::subject(c).unwrap())
            .collect();
        assert_eq!(subjects[0].organizations, vec!["cairn".to_string()]);
        assert_eq!(subjects[1].common_name.as_deref(), Some("localhost-ca@1"));
    }
}
