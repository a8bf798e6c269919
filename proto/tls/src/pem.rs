//! Reading PEM files: a certificate chain (file order, so leaf first), a private key (PKCS#8,
//! PKCS#1 or SEC1, as etcd and kube-apiserver accept), and a CA bundle ready to verify against.
//! Every error names the file it is about.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a PEM file could not be used. The texts are what both servers print, and tests
/// compare some of them.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed PEM: {source}")]
    Malformed {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path}: no CERTIFICATE block found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PRIVATE KEY block found")]
    NoPrivateKey { path: PathBuf },
    /// A key file refused in [`KeyErrors::Unusable`] wording, whatever the cause.
    #[error("{path}: no usable key: {source}")]
    UnusableKey {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path}: unusable CA certificate: {source}")]
    UnusableCa {
        path: PathBuf,
        source: rustls::Error,
    },
}

/// How [`private_key`] words a file it finds no key in. The two servers word it differently,
/// and their users (and tests) see those words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyErrors {
    /// By cause, as cairn-store: [`PemError::NoPrivateKey`] when the file has no key block,
    /// [`PemError::Malformed`] when it cannot be decoded.
    ByCause,
    /// One wording for every cause, as the apiserver: [`PemError::UnusableKey`].
    Unusable,
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in `path`, in file order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PemError::Malformed {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in `path`; a failure is worded as `errors` says.
pub fn private_key(path: &Path, errors: KeyErrors) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| {
        let path = path.to_path_buf();
        match (errors, source) {
            (KeyErrors::Unusable, source) => PemError::UnusableKey { path, source },
            (KeyErrors::ByCause, rustls_pki_types::pem::Error::NoItemsFound) => {
                PemError::NoPrivateKey { path }
            }
            (KeyErrors::ByCause, source) => PemError::Malformed { path, source },
        }
    })
}

/// The CA certificates of a trusted CA file, ready to verify against; every certificate in
/// the file must be usable as a trust anchor.
pub fn roots(path: &Path) -> Result<RootCertStore, PemError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|source| PemError::UnusableCa {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_in_each_servers_wording() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let shown = empty.display();

        assert_eq!(
            certificates(&empty).unwrap_err().to_string(),
            format!("{shown}: no CERTIFICATE block found")
        );
        assert_eq!(
            private_key(&empty, KeyErrors::ByCause)
                .unwrap_err()
                .to_string(),
            format!("{shown}: no PRIVATE KEY block found")
        );
        assert_eq!(
            private_key(&empty, KeyErrors::Unusable)
                .unwrap_err()
                .to_string(),
            format!("{shown}: no usable key: no items found")
        );

        let missing = dir.path().join("missing.pem");
        let err = roots(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read {}: ", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn reads_a_chain_and_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&cert_file, format!("{}{}", cert.pem(), cert.pem())).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();

        assert_eq!(certificates(&cert_file).unwrap().len(), 2);
        assert!(private_key(&key_file, KeyErrors::ByCause).is_ok());
        assert!(!roots(&cert_file).unwrap().is_empty());
    }
}
