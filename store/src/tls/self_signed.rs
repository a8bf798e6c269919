//! Auto TLS (`--auto-tls`, `--peer-auto-tls`): a self-signed certificate for the hosts of a
//! side's listen URLs, kept in `<dir>/cert.pem` and `<dir>/key.pem` (etcd's
//! `<data-dir>/fixtures/{client,peer}`) and reused on every later start while both files
//! exist, as etcd reuses them.
//!
//! The key is ECDSA P-256 (etcd makes P-521 keys, which ring cannot sign with). The
//! certificate is valid for a year and for both server and client authentication, so a
//! member can present it when it dials a peer.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
};

use super::{pem, Identity, TlsError};

const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Loads the side's generated certificate from `dir`, making it first if it is missing.
pub fn load_or_create(
    side: &'static str,
    dir: &Path,
    hosts: &[String],
) -> Result<Identity, TlsError> {
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    if !(cert_file.exists() && key_file.exists()) {
        let (cert_pem, key_pem) = generate(side, hosts)?;
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        write(&key_file, key_pem.as_bytes(), 0o600)?;
        write(&cert_file, cert_pem.as_bytes(), 0o644)?;
        tracing::info!(side, path = %cert_file.display(), "created self-signed certificate");
    }
    Ok(Identity {
        certs: pem::certificates(&cert_file)?,
        key: Arc::new(pem::private_key(&key_file)?),
        self_signed: true,
        cert_file,
        key_file,
    })
}

/// A fresh key pair and a certificate for `hosts` (IP addresses or DNS names), in PEM.
fn generate(side: &'static str, hosts: &[String]) -> Result<(String, String), TlsError> {
    let failed = |source| TlsError::SelfSigned { side, source };
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "etcd");
    for host in hosts.iter().filter(|h| !h.is_empty()) {
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into().map_err(failed)?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + now;
    params.not_after = params.not_before + VALIDITY;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write {
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

    #[test]
    fn made_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let first = load_or_create("client", dir.path(), &hosts).unwrap();
        assert!(first.self_signed);
        let again = load_or_create("client", dir.path(), &hosts).unwrap();
        assert_eq!(
            first.certs, again.certs,
            "an existing certificate is reused"
        );
        let mode = std::fs::metadata(dir.path().join("key.pem"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
}
