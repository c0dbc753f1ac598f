//! The token proxy (issue 13), end to end over the edge and over gRPC,
//! against a test API of our own (`proxy/upstream.rs`) that reports the
//! credential it received and counts requests, behind an https front whose
//! CA the proxy's egress guard trusts. Only 127.0.0.1 is allow-listed, so
//! other internal addresses stay refused.

use locksmith_egress::EgressPolicy;
use locksmith_proto::proxy::v1::{self as pb, token_proxy_service_client::TokenProxyServiceClient};
use locksmith_proxy::forward::UpstreamConfig;
use locksmith_tls::TlsFiles;
use reqwest::Method;
use serde_json::json;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};

use crate::broker_flows::{tls_front, tls_front_speaking};
use crate::harness::{BrokerSetup, ProxySetup, Suite, create_tenant};
use crate::oauth_server::{ClientSpec, RegisteredClient, oauth_server};

mod calls;
mod refresh;
mod storm;
mod streams;
pub(crate) mod upstream;

use upstream::Upstream;

/// The catalog of these tests: the real OAuth server's `oidc` entry whose
/// API is the test API, API-key entries taking the key in a header and in
/// the query, a basic-auth one, and two whose API sits at an internal
/// address the egress guard must refuse.
fn catalog(oidc_front: u16, api_front: u16, h2_front: u16) -> String {
    format!(
        r#"
version = 1
[providers.oidc]
display_name = "Test OAuth server"
auth_mode = "oauth2_authorization_code"
authorization_url = "https://localhost:{oidc_front}/auth"
token_url = "https://localhost:{oidc_front}/token"
revocation_url = "https://localhost:{oidc_front}/token/revocation"
client_auth = "basic"
pkce = true
default_scopes = ["read", "write"]
[providers.oidc.api]
base_url = "https://127.0.0.1:{api_front}/oidc-api"

[providers.keyed]
display_name = "Keyed API"
auth_mode = "api_key"
[providers.keyed.api]
base_url = "https://127.0.0.1:{api_front}/keyed"
headers = {{ "x-api-version" = "2024-01" }}
credential = {{ location = "header", name = "x-api-key" }}

[providers.h2api]
display_name = "Keyed API over HTTP/2"
auth_mode = "api_key"
[providers.h2api.api]
base_url = "https://127.0.0.1:{h2_front}/h2"
credential = {{ location = "bearer" }}

[providers.queried]
display_name = "Key in the query"
auth_mode = "api_key"
[providers.queried.api]
base_url = "https://127.0.0.1:{api_front}/queried"
credential = {{ location = "query", name = "key" }}

[providers.basicapi]
display_name = "Basic API"
auth_mode = "basic"
[providers.basicapi.api]
base_url = "https://127.0.0.1:{api_front}/basic"

[providers.internal]
display_name = "Another loopback address"
auth_mode = "api_key"
[providers.internal.api]
base_url = "https://127.0.0.2:{api_front}/x"

[providers.metadata]
display_name = "Cloud metadata"
auth_mode = "api_key"
[providers.metadata.api]
base_url = "https://169.254.169.254/latest"
"#
    )
}

/// The suite, the test API and what the tests need to call it.
pub(crate) struct World {
    pub suite: Suite,
    pub api: Upstream,
    /// A second API, on another port: where a redirect points.
    pub elsewhere: Upstream,
    pub elsewhere_front: u16,
    pub oidc_front: u16,
    /// The OAuth server's client: the system OAuth app of `oidc`.
    pub client: RegisteredClient,
    /// The proxy's setup, for more replicas.
    pub proxy_setup: ProxySetup,
    /// acme's write key, and beta's.
    pub acme_key: String,
    pub beta_key: String,
    pub _dir: TempDir,
}

impl World {
    pub async fn start(upstream: UpstreamConfig) -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = oauth_server();
        let issuer = reqwest::Url::parse(&server.issuer).unwrap();
        let oauth_addr = format!("{}:{}", issuer.host_str().unwrap(), issuer.port().unwrap())
            .parse()
            .unwrap();
        let (oidc_front, oidc_ca) = tls_front(oauth_addr, &dir).await;
        let api = Upstream::start().await;
        let (api_front, api_ca) = tls_front(api.addr, &dir).await;
        // The same API behind a front offering HTTP/2 (ALPN `h2`).
        let (h2_front, h2_ca) = tls_front_speaking(api.addr, &dir, vec![b"h2".to_vec()]).await;
        let elsewhere = Upstream::start().await;
        let (elsewhere_front, elsewhere_ca) = tls_front(elsewhere.addr, &dir).await;
        let proxy_setup = ProxySetup {
            egress: Some(EgressPolicy {
                allow_cidrs: vec!["127.0.0.1/32".into()],
                ca_files: vec![api_ca, h2_ca, elsewhere_ca],
                ..EgressPolicy::default()
            }),
            upstream,
            ..ProxySetup::default()
        };
        let suite = Suite::start_with_proxy(
            BrokerSetup {
                catalog: Some(catalog(oidc_front, api_front, h2_front)),
                egress: Some(EgressPolicy {
                    allow_cidrs: vec!["127.0.0.0/8".into()],
                    ca_files: vec![oidc_ca],
                    ..EgressPolicy::default()
                }),
                ..BrokerSetup::default()
            },
            proxy_setup.clone(),
        )
        .await;
        let client = server
            .register_client(&ClientSpec::code_flow(&suite.url("/oauth/callback/oidc")))
            .await;
        let (status, body) = suite
            .call(
                Method::PUT,
                "/system/secrets/oauth-apps/oidc",
                Some(json!({"fields": {"client-id": client.client_id, "client-secret": client.client_secret}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        create_tenant(&suite, "acme").await;
        create_tenant(&suite, "beta").await;
        let acme_key = suite.tenant_key("acme", &["write"]).await;
        let beta_key = suite.tenant_key("beta", &["write"]).await;
        World {
            suite,
            api,
            elsewhere,
            elsewhere_front,
            oidc_front,
            client,
            proxy_setup,
            acme_key,
            beta_key,
            _dir: dir,
        }
    }

    /// Stores `credentials` for `integration` at `owner` (`tenants/acme`).
    pub async fn store(&self, owner: &str, integration: &str, credentials: serde_json::Value) {
        let (status, body) = self
            .suite
            .call_with(
                &self.suite.client_as(&self.acme_key),
                Method::POST,
                &format!("/{owner}/integrations/{integration}/credentials"),
                Some(json!({ "credentials": credentials })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// A proxy client holding a workload certificate of `tenant`.
    pub fn workload(&self, tenant: &str) -> TokenProxyServiceClient<Channel> {
        self.workload_at(tenant, &self.suite.proxy.url)
    }

    /// The same, of the proxy replica at `url`.
    pub fn workload_at(&self, tenant: &str, url: &str) -> TokenProxyServiceClient<Channel> {
        let dir = self.suite.pki.path();
        locksmith_tls::issue_workload(dir, tenant, "billing", time::OffsetDateTime::now_utc())
            .unwrap();
        let tls = TlsFiles::for_workload(dir, tenant, "billing")
            .unwrap()
            .load()
            .unwrap();
        let channel = Endpoint::from_shared(url.to_owned())
            .unwrap()
            .tls_config(tls.client_tls("localhost"))
            .unwrap()
            .connect_lazy();
        TokenProxyServiceClient::new(channel)
            .max_decoding_message_size(8 * 1024 * 1024)
            .max_encoding_message_size(8 * 1024 * 1024)
    }
}

/// A unary call's request.
pub(crate) fn call(connection: &str, method: &str, path: &str) -> pb::CallRequest {
    pb::CallRequest {
        head: Some(pb::RequestHead {
            connection: connection.into(),
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
        }),
        body: Default::default(),
    }
}

/// The ErrorInfo reason of a gRPC status.
pub(crate) fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// Sends `raw_target` exactly as written (no client normalises it) to the
/// edge with `key`: answers the status and the body.
pub(crate) async fn raw_get(edge: &str, raw_target: &str, key: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = edge.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {raw_target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked or not, the problem is the one JSON object in the body.
    let json = body
        .find('{')
        .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}
