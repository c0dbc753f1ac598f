//! The registry's configuration (see `deploy/config/registry.toml`).

use std::{net::SocketAddr, path::PathBuf};

use locksmith_store::StorageConfig;
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
    /// The OAuth broker, which erases a deleted tenant's custom providers
    /// in the deletion sweep. Without it they outlive the tenant (and a
    /// tenant created later with the same id would find them).
    #[serde(default)]
    pub broker: Option<Endpoint>,
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
