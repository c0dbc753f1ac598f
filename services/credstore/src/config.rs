//! The credential store's configuration (see `deploy/config/credstore.toml`).

use std::{net::SocketAddr, path::PathBuf};

use locksmith_tls::TlsFiles;
use serde::Deserialize;

/// Everything the credential store process needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredStoreConfig {
    /// gRPC listen address (mTLS).
    pub listen: SocketAddr,
    /// The service's certificate, key and the suite CA.
    pub tls: TlsFiles,
    /// Where sealed secrets and wrapped keys live.
    pub storage: StorageConfig,
    /// How data keys are wrapped.
    pub keys: KeysConfig,
    /// Where the audit trail goes.
    pub audit: AuditConfig,
}

/// Storage backend settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The embedded store's SQLite file.
    pub path: PathBuf,
}

/// Data key wrapping.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// File holding the 256-bit master key that wraps every data key (mode
    /// 0600; created on first start). Losing it loses every secret.
    pub master_key_file: PathBuf,
}

/// Audit trail settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// JSON-lines file the audit events are appended to (created if absent).
    pub path: PathBuf,
}
