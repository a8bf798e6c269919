//! Auto TLS (`--auto-tls`, `--peer-auto-tls`): a self-signed certificate for the hosts of a
//! side's listen URLs, kept in `<dir>/cert.pem` and `<dir>/key.pem` (etcd's
//! `<data-dir>/fixtures/{client,peer}`) and reused on every later start while both files
//! exist, as etcd reuses them.
//!
//! The certificate is made by [`cairn_tls::self_signed`]: subject `O=etcd`, signed by its
//! own key, valid from now for a year and for both server and client authentication, so a
//! member can present it when it dials a peer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_tls::pem::{self, KeyErrors};
use cairn_tls::self_signed::{Issuer, Spec};

use super::{Identity, TlsError};

/// Loads the side's generated certificate from `dir`, making it first if it is missing.
pub fn load_or_create(
    side: &'static str,
    dir: &Path,
    hosts: &[String],
) -> Result<Identity, TlsError> {
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::OrganizationName, "etcd");
    let spec = Spec {
        purpose: side,
        hosts,
        subject,
        issuer: Issuer::Itself,
        client_auth: true,
        backdate: Duration::ZERO,
    };
    let files = cairn_tls::self_signed::load_or_create(dir, "cert.pem", "key.pem", &spec)?;
    if files.created {
        tracing::info!(side, path = %files.cert_file.display(), "created self-signed certificate");
    }
    Ok(Identity {
        certs: pem::certificates(&files.cert_file)?,
        key: Arc::new(pem::private_key(&files.key_file, KeyErrors::ByCause)?),
        self_signed: true,
        cert_file: files.cert_file,
        key_file: files.key_file,
    })
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
