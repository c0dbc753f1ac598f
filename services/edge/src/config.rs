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
    /// The URL outside callers reach the edge at: OAuth redirect URIs are
    /// `{public_url}/oauth/callback/{integration}`. Without it the callback
    /// cannot name the redirect URI a flow was started for, so it answers 503.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The edge's client certificate for calling the services.
    pub tls: TlsFiles,
    /// Where the services listen.
    pub services: Services,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// Who may call: credentials, anonymous paths, rate limits, OIDC issuers.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
}

/// Endpoints of the backend services.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// The tenant registry.
    pub registry: Endpoint,
    /// The credential store.
    pub credstore: Endpoint,
    /// The OAuth broker (connections to integrations). Defaults to the
    /// documented local address, so configurations written before the
    /// broker existed still load.
    #[serde(default = "default_broker")]
    pub broker: Endpoint,
    /// The token proxy (`/proxy/{integration}/…`). Defaults to the
    /// documented local address.
    #[serde(default = "default_proxy")]
    pub proxy: Endpoint,
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

fn default_broker() -> Endpoint {
    Endpoint {
        url: "https://127.0.0.1:7103".to_owned(),
        server_name: default_server_name(),
    }
}

fn default_proxy() -> Endpoint {
    Endpoint {
        url: "https://127.0.0.1:7104".to_owned(),
        server_name: default_server_name(),
    }
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
    /// Longest a client may take to send a request's head (request line and
    /// headers), in milliseconds, measured from when the edge starts waiting
    /// for it (on a new connection or an idle keep-alive one). Slower
    /// connections are closed without an answer.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Most connections served at once; beyond it new connections wait,
    /// unaccepted, in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Longest request target (path and query) accepted, in bytes; longer
    /// ones get 414 problem+json.
    #[serde(default = "default_max_uri_bytes")]
    pub max_uri_bytes: usize,
    /// Largest header section accepted (each header counted as name, value
    /// and 4 bytes of framing), in bytes; larger ones get 431 problem+json.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
}

fn default_max_body() -> usize {
    64 * 1024
}

fn default_timeout_ms() -> u64 {
    15_000
}

fn default_header_read_timeout_ms() -> u64 {
    10_000
}

fn default_max_connections() -> usize {
    10_000
}

fn default_max_uri_bytes() -> usize {
    8 * 1024
}

fn default_max_header_bytes() -> usize {
    16 * 1024
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            request_timeout_ms: default_timeout_ms(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            max_connections: default_max_connections(),
            max_uri_bytes: default_max_uri_bytes(),
            max_header_bytes: default_max_header_bytes(),
        }
    }
}
