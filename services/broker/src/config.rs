//! The broker's configuration (see `deploy/config/broker.toml`).
//!
//! Loaded by `locksmith_config::load` (TOML, then `LOCKSMITH_*` overrides);
//! unknown keys are errors. [`BrokerConfig::check`] validates what serde
//! cannot (the public URL, the return-URL allow-lists) so that a bad file
//! fails at start, naming the key.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use locksmith_domain::TenantId;
use locksmith_egress::EgressPolicy;
use locksmith_store::StorageConfig;
use locksmith_tls::TlsFiles;
use reqwest::Url;
use serde::Deserialize;

/// Everything the broker process needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// gRPC listen address (mTLS).
    pub listen: SocketAddr,
    /// The service's certificate, key and the suite CA.
    pub tls: TlsFiles,
    /// Where pending authorizations (state → PKCE verifier, owner, …) live.
    /// Shared by every replica (OpenBao in production), so the provider's
    /// redirect may reach any of them.
    pub storage: StorageConfig,
    /// The services the broker calls.
    pub services: Services,
    /// The edge's public base URL (`https://locksmith.example.com`): redirect
    /// URIs registered with providers are `{public_url}/oauth/callback/{integration}`.
    pub public_url: String,
    /// The provider catalog.
    #[serde(default)]
    pub catalog: CatalogSection,
    /// The egress guard for every call to a provider (token, refresh,
    /// revoke): https only, no internal addresses unless allow-listed.
    #[serde(default)]
    pub egress: EgressPolicy,
    /// The refresh protocol's timing.
    #[serde(default)]
    pub refresh: RefreshSection,
    /// Where a finished flow may send the user's browser, per tenant.
    #[serde(default)]
    pub return_urls: ReturnUrls,
    /// More of the suite's own endpoints (`https://bao.internal:8200`, the
    /// registry) that no tenant's custom provider may point at, besides the
    /// broker's own OpenBao and credential store, which always count.
    #[serde(default)]
    pub suite_endpoints: Vec<String>,
}

/// Endpoints of the services the broker calls (the registry's `[services]`
/// shape).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// The credential store: connection records and OAuth apps.
    pub credstore: Endpoint,
    /// The tenant registry: a connection's owner must exist; the tenants
    /// the health counts page over.
    pub registry: Endpoint,
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

/// `[catalog]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    /// The provider catalog file, validated at start.
    #[serde(default = "default_catalog_path")]
    pub path: PathBuf,
}

fn default_catalog_path() -> PathBuf {
    PathBuf::from("deploy/catalog/providers.toml")
}

impl Default for CatalogSection {
    fn default() -> Self {
        Self {
            path: default_catalog_path(),
        }
    }
}

/// `[refresh]`: see the refresh protocol (design brief §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshSection {
    /// An access token this close to its expiry is refreshed before use.
    pub skew_seconds: u64,
    /// How long a refresh lease holds: past it, another replica may refresh
    /// even if the holder never finished (it crashed).
    pub lease_ttl_ms: u64,
}

impl Default for RefreshSection {
    fn default() -> Self {
        // A minute of skew covers clock drift and a slow call; the lease
        // outlives the egress timeout (10 s) with room for the writes around it.
        Self {
            skew_seconds: 60,
            lease_ttl_ms: 30_000,
        }
    }
}

impl RefreshSection {
    /// The skew as a duration.
    pub fn skew(&self) -> Duration {
        Duration::from_secs(self.skew_seconds)
    }
    /// The lease lifetime as a duration.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
}

/// `[return_urls]`: tenant id → URL prefixes a flow of that tenant may
/// return the browser to. Configuration for now (a per-tenant setting in the
/// registry later); a tenant without an entry may only get the JSON answer.
///
/// ```toml
/// [return_urls]
/// acme = ["https://app.acme.example/integrations/"]
/// ```
pub type ReturnUrls = BTreeMap<String, Vec<String>>;

/// A configuration value that cannot be used, naming the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}: {reason}")]
pub struct ConfigProblem {
    /// The key (`public_url`, `return_urls.acme[0]`).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl BrokerConfig {
    /// Checks what serde cannot; answers the parsed public URL and the
    /// compiled allow-lists.
    pub fn check(&self) -> Result<(PublicUrl, ReturnUrlPolicy), ConfigProblem> {
        let public = PublicUrl::parse(&self.public_url).map_err(|reason| ConfigProblem {
            key: "public_url".into(),
            reason,
        })?;
        let policy = ReturnUrlPolicy::compile(&self.return_urls)?;
        if self.refresh.lease_ttl_ms == 0 {
            return Err(ConfigProblem {
                key: "refresh.lease_ttl_ms".into(),
                reason: "must be greater than zero".into(),
            });
        }
        Ok((public, policy))
    }
}

/// The edge's public base URL, checked: http(s), a host, no query, no
/// fragment, no user info; kept without a trailing `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// Parses and checks `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        // http is for loopback development and tests; providers refuse
        // plain-http redirect URIs elsewhere anyway.
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err("must be an http(s) URL with a host".into());
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err("must have no query, fragment or user info".into());
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// The redirect URI of `integration`'s flows.
    pub fn redirect_uri(&self, integration: &str) -> String {
        format!("{}/oauth/callback/{integration}", self.0)
    }
}

/// One allowed return-URL prefix: same scheme, host and port, and a path
/// under the prefix's path at a `/` boundary (so `https://a.example/app`
/// admits `/app` and `/app/x`, never `/application` or `a.example.evil`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Prefix {
    origin: String,
    path: String,
}

/// The compiled `[return_urls]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReturnUrlPolicy {
    by_tenant: BTreeMap<TenantId, Vec<Prefix>>,
}

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl ReturnUrlPolicy {
    /// Compiles the configured prefixes, refusing any that is not an
    /// absolute http(s) URL without query, fragment or user info.
    pub fn compile(urls: &ReturnUrls) -> Result<Self, ConfigProblem> {
        let mut by_tenant = BTreeMap::new();
        for (tenant, prefixes) in urls {
            let id = TenantId::parse(tenant).map_err(|_| ConfigProblem {
                key: format!("return_urls.{tenant}"),
                reason: "not a tenant id".into(),
            })?;
            let mut compiled = Vec::new();
            for (i, text) in prefixes.iter().enumerate() {
                let problem = |reason: &str| ConfigProblem {
                    key: format!("return_urls.{tenant}[{i}]"),
                    reason: reason.to_owned(),
                };
                let url = Url::parse(text).map_err(|_| problem("not an absolute URL"))?;
                if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
                    return Err(problem("must be an http(s) URL with a host"));
                }
                if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                    return Err(problem("must have no query, fragment or user info"));
                }
                compiled.push(Prefix {
                    origin: origin_of(&url),
                    path: url.path().trim_end_matches('/').to_owned(),
                });
            }
            by_tenant.insert(id, compiled);
        }
        Ok(Self { by_tenant })
    }

    /// Whether `tenant` may send browsers to `url`; `url` must be absolute
    /// http(s) without user info or fragment.
    pub fn permits(&self, tenant: &TenantId, url: &str) -> bool {
        let Ok(parsed) = Url::parse(url) else {
            return false;
        };
        if !matches!(parsed.scheme(), "https" | "http")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.fragment().is_some()
        {
            return false;
        }
        let origin = origin_of(&parsed);
        let path = parsed.path();
        self.by_tenant.get(tenant).is_some_and(|prefixes| {
            prefixes.iter().any(|p| {
                p.origin == origin
                    && (path == p.path
                        || path
                            .strip_prefix(p.path.as_str())
                            .is_some_and(|rest| rest.starts_with('/')))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_file_parses_and_checks() {
        let file: BrokerConfig =
            toml::from_str(include_str!("../../../deploy/config/broker.toml")).unwrap();
        let (public, _) = file.check().unwrap();
        assert_eq!(
            public.redirect_uri("github"),
            "http://127.0.0.1:8080/oauth/callback/github"
        );
        assert_eq!(file.refresh, RefreshSection::default());
        assert_eq!(
            file.catalog.path,
            PathBuf::from("deploy/catalog/providers.toml")
        );
    }

    #[test]
    fn the_public_url_is_checked_and_kept_without_a_trailing_slash() {
        assert_eq!(
            PublicUrl::parse("https://id.example/")
                .unwrap()
                .redirect_uri("x"),
            "https://id.example/oauth/callback/x"
        );
        for bad in ["ftp://x/", "https://x/?a=b", "https://u@x/", "/relative"] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn return_urls_match_at_origin_and_path_boundaries_only() {
        let acme = TenantId::parse("acme").unwrap();
        let urls: ReturnUrls = [(
            "acme".to_owned(),
            vec!["https://app.acme.example/done".to_owned()],
        )]
        .into();
        let policy = ReturnUrlPolicy::compile(&urls).unwrap();
        for ok in [
            "https://app.acme.example/done",
            "https://app.acme.example/done/",
            "https://app.acme.example/done/x?y=1",
        ] {
            assert!(policy.permits(&acme, ok), "{ok}");
        }
        for bad in [
            "https://app.acme.example/doneX",
            "https://app.acme.example.evil.com/done",
            "http://app.acme.example/done",
            "https://app.acme.example:8443/done",
            "https://evil@app.acme.example/done",
            "https://app.acme.example/done#frag",
            "javascript:alert(1)",
            "/done",
        ] {
            assert!(!policy.permits(&acme, bad), "{bad}");
        }
        assert!(!policy.permits(
            &TenantId::parse("beta").unwrap(),
            "https://app.acme.example/done"
        ));
    }

    #[test]
    fn malformed_allow_lists_name_the_entry() {
        let urls: ReturnUrls = [("acme".to_owned(), vec!["nope".to_owned()])].into();
        assert_eq!(
            ReturnUrlPolicy::compile(&urls).unwrap_err().key,
            "return_urls.acme[0]"
        );
        let urls: ReturnUrls = [("Bad_Tenant".to_owned(), vec![])].into();
        assert_eq!(
            ReturnUrlPolicy::compile(&urls).unwrap_err().key,
            "return_urls.Bad_Tenant"
        );
    }
}
