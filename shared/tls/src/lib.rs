//! The suite's PKI and mutual TLS.
//!
//! Every service holds a certificate from the suite CA whose URI SAN names it
//! (`spiffe://locksmith/registry`); tenant workloads get
//! `spiffe://locksmith/tenant/{t}/workload/{name}`. Servers verify callers
//! against the CA, and [`MtlsAuthLayer`] checks the caller's identity against
//! a per-RPC [`AllowList`], deny by default.
//!
//! Identity is decided by the certificate alone (never by a header), so a
//! caller can only be who the CA said it is.

mod authz;
mod cert;
mod identity;
mod material;
mod pki;

#[cfg(test)]
mod mtls_tests;

use std::path::PathBuf;

use time::OffsetDateTime;

pub use authz::{AllowList, Allowed, Caller, MtlsAuthLayer, MtlsAuthService};
pub use identity::{Identity, ServiceName};
pub use material::{TlsFiles, TlsMaterial, install_crypto_provider};
pub use pki::{
    CertificateAuthority, InitReport, IssuedCertificate, LEAF_VALIDITY, init_dir, issue_workload,
};

/// The connections a gRPC service accepts on `listener`, with Nagle's
/// algorithm off. tonic's own TCP_NODELAY default applies only to listeners
/// it binds itself; without it a response's small HTTP/2 frames wait for the
/// caller's delayed ACK, about 40 ms per call.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Everything that can go wrong with certificates and identities. Messages
/// name files, fields and dates, never key material or file contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A string is not a Locksmith identity URI.
    #[error("not a Locksmith identity: {0}")]
    BadIdentity(String),
    /// A certificate does not parse or carries no usable identity.
    #[error("certificate: {0}")]
    BadCertificate(String),
    /// A file holds something other than what it should (no PEM
    /// certificate, no private key, a CA certificate without its key…).
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, without the file's contents.
        reason: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// A certificate is expired or not yet valid at the time given.
    #[error("certificate is not valid at {now}: valid from {not_before} until {not_after}")]
    NotValidAt {
        /// The time checked.
        now: OffsetDateTime,
        /// Start of the validity window.
        not_before: OffsetDateTime,
        /// End of the validity window.
        not_after: OffsetDateTime,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
