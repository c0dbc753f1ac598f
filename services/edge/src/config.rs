//! The edge's configuration (see `deploy/config/edge.toml`).

use std::net::SocketAddr;

use locksmith_tls::TlsFiles;
use serde::Deserialize;

/// Everything the edge process needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// HTTP listen address: the suite's only public listener.
    pub listen: SocketAddr,
    /// The URL outside callers reach the edge at (used for OAuth redirect URIs later, and printed).
    #[serde(default)]
    pub public_url: Option<String>,
    /// The edge's client certificate for calling the services.
    pub tls: TlsFiles,
    /// Where the services listen.
    pub services: Services,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
}

/// Endpoints of the backend services.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// The tenant registry.
    pub registry: Endpoint,
}

/// One backend's address.
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

/// Global limits on every request.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Longest a request may take end to end, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub request_timeout_ms: u64,
}

fn default_max_body() -> usize {
    64 * 1024
}

fn default_timeout_ms() -> u64 {
    15_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            request_timeout_ms: default_timeout_ms(),
        }
    }
}
