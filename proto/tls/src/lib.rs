//! The TLS pieces both servers need, written once: cairn-store (client and peer ports) and
//! the apiserver (secure port, kubelet client) depend on this crate rather than on each other,
//! since the apiserver reaches the store only through the etcd gRPC API.
//!
//! - [`pem`]: reading certificate chains, private keys and CA bundles from PEM files; every
//!   failure names the file;
//! - [`subject`]: a certificate's subject CN and O values, read from its DER encoding (the user
//!   name, and for the apiserver the groups, of a client certificate);
//! - [`self_signed`]: a key and certificate for the hosts of a listener, made once into a
//!   directory and reused while both files exist (etcd's auto TLS, kube-apiserver's
//!   `--cert-dir`);
//! - [`any_server_cert`]: a client-side verifier that accepts any server certificate but still
//!   checks the handshake signatures (peers with self-signed certificates, kubelets without
//!   `--kubelet-certificate-authority`).
//!
//! Nothing here does network I/O or picks a crypto provider: callers pass the rustls provider
//! they build their configs with (ring, in both servers).

pub mod any_server_cert;
pub mod pem;
pub mod self_signed;
pub mod subject;

pub use any_server_cert::AnyServerCert;
pub use pem::PemError;
pub use subject::Subject;
