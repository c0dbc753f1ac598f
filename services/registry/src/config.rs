//! The registry's configuration (see `deploy/config/registry.toml`).

use std::{net::SocketAddr, path::PathBuf};

use locksmith_tls::TlsFiles;
use serde::Deserialize;

/// Everything the registry process needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// gRPC listen address (mTLS).
    pub listen: SocketAddr,
    /// The service's certificate, key and the suite CA.
    pub tls: TlsFiles,
    /// Where records live.
    pub storage: StorageConfig,
    /// API key hashing.
    pub api_keys: ApiKeysConfig,
}

/// How API keys are hashed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// File holding the 32-byte pepper of the keyed hash (mode 0600; created
    /// on first start). Every registry replica must share it; losing it
    /// invalidates every API key.
    pub pepper_file: PathBuf,
}

/// Storage backend settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The embedded store's SQLite file.
    pub path: PathBuf,
}
