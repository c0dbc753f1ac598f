//! The suite's PKI and mutual TLS.
//!
//! Every service holds a certificate from the suite CA whose URI SAN names it
//! (`spiffe://locksmith/registry`); tenant workloads get
//! `spiffe://locksmith/tenant/{t}/workload/{name}`. Servers verify callers
//! against the CA, and [`MtlsAuthLayer`] checks the caller's identity against
//! a per-RPC [`AllowList`], deny by default.

mod authz;
mod identity;
mod material;
mod pki;

pub use authz::{AllowList, Allowed, Caller, MtlsAuthLayer, MtlsAuthService};
pub use identity::{Identity, ServiceName};
pub use material::{TlsFiles, TlsMaterial, install_crypto_provider};
pub use pki::{CertificateAuthority, InitReport, IssuedCertificate, init_dir, issue_workload};

/// Everything that can go wrong with certificates and identities. Messages
/// name files and fields, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A string is not a Locksmith identity URI.
    #[error("not a Locksmith identity: {0}")]
    BadIdentity(String),
    /// A certificate does not parse or carries no usable identity.
    #[error("certificate: {0}")]
    BadCertificate(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
