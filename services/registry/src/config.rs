//! The registry's configuration (see `deploy/config/registry.toml`).

use std::{net::SocketAddr, path::PathBuf};

use locksmith_store::OpenBaoConfig;
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
    /// The services the registry calls.
    pub services: Services,
}

/// Endpoints of the services the registry calls (the edge's `[services]`
/// shape).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// The credential store, which provisions a tenant's key when the tenant
    /// is created and shreds it when the tenant is deleted. Required: no
    /// tenant may exist without a key.
    pub credstore: Endpoint,
}

/// One service's address.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `https://host:port`.
    pub url: String,
    /// Name checked against the service certificate's DNS SANs.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

fn default_server_name() -> String {
    "localhost".to_owned()
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

/// Storage backend settings, the same shape as the credential store's
/// `[storage]`: the embedded SQLite file (the default, for single machines)
/// or OpenBao's KV v2 (production; every replica shares it, and it may be
/// the credential store's own mount).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `embedded` (default) or `openbao`.
    #[serde(default)]
    pub backend: Backend,
    /// The embedded store's SQLite file (`backend = "embedded"`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The OpenBao server (`backend = "openbao"`): address, mount (default
    /// `gbo`), prefix, token or AppRole, timeouts.
    #[serde(default)]
    pub openbao: Option<OpenBaoConfig>,
}

/// Which storage backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// One local SQLite file.
    #[default]
    Embedded,
    /// OpenBao KV v2.
    Openbao,
}

/// The storage a configuration names, checked.
#[derive(Debug)]
pub enum StorageChoice<'a> {
    /// The SQLite file.
    Embedded(&'a PathBuf),
    /// The OpenBao server.
    OpenBao(&'a OpenBaoConfig),
}

/// A storage section that does not say where to store.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StorageConfigError {
    /// `backend = "embedded"` without `path`.
    #[error("storage.path is required with backend = \"embedded\"")]
    MissingPath,
    /// `backend = "openbao"` without `[storage.openbao]`.
    #[error("[storage.openbao] is required with backend = \"openbao\"")]
    MissingOpenBao,
}

impl StorageConfig {
    /// The configured backend and its settings.
    pub fn choice(&self) -> Result<StorageChoice<'_>, StorageConfigError> {
        match self.backend {
            Backend::Embedded => self
                .path
                .as_ref()
                .map(StorageChoice::Embedded)
                .ok_or(StorageConfigError::MissingPath),
            Backend::Openbao => self
                .openbao
                .as_ref()
                .map(StorageChoice::OpenBao)
                .ok_or(StorageConfigError::MissingOpenBao),
        }
    }
}
