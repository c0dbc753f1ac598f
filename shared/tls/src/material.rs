//! Loading a service's TLS files and turning them into tonic configs.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity, ServerTlsConfig};

use crate::{ServiceName, TlsError};

/// Where a service's TLS material lives (a config section).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The suite CA certificate.
    pub ca: PathBuf,
    /// This process's certificate.
    pub cert: PathBuf,
    /// This process's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `locksmith pki init` writes for `service` into `dir`.
    pub fn in_dir(dir: &Path, service: ServiceName) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{service}.pem")),
            key: dir.join(format!("{service}-key.pem")),
        }
    }

    /// Reads the three files.
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TlsError::Io {
                path: path.to_owned(),
                source,
            })
        };
        Ok(TlsMaterial {
            ca_pem: read(&self.ca)?,
            cert_pem: read(&self.cert)?,
            key_pem: SecretString::from(read(&self.key)?),
        })
    }
}

/// A process's TLS material in memory.
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: String,
    cert_pem: String,
    key_pem: SecretString,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Material from PEM strings.
    pub fn from_pems(ca_pem: String, cert_pem: String, key_pem: SecretString) -> Self {
        Self {
            ca_pem,
            cert_pem,
            key_pem,
        }
    }

    fn identity(&self) -> TlsIdentity {
        TlsIdentity::from_pem(&self.cert_pem, self.key_pem.expose_secret())
    }

    /// Server side: present our certificate and verify callers against the
    /// suite CA. Client certificates are optional at the handshake on purpose:
    /// a caller without one then gets a clear UNAUTHENTICATED status from
    /// `MtlsAuthLayer` instead of an opaque TLS alert. A certificate from
    /// another CA still fails the handshake.
    pub fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(true)
    }

    /// Client side: our certificate as client identity, the suite CA as the
    /// only trusted root, and `server_name` checked against the server's SANs.
    pub fn client_tls(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(self.identity())
            .domain_name(server_name)
    }
}

/// Installs rustls' ring provider for the process. Call first thing in every
/// `main` (and in tests); a second call is harmless.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
