//! Who is calling the edge. Every request outside the anonymous paths must
//! carry `Authorization: Bearer <credential>`: an API key (`lsk_…`, verified
//! by the registry) or a JWT from a configured OIDC issuer ([`jwt`]). The
//! outcome is a [`Principal`] in the request's extensions, which handlers
//! take through the [`Caller`] extractor and forward to the services.
//!
//! Verification results are cached for `api_key_cache_ttl_ms` (default 5 s):
//! that is the bound within which every replica refuses a revoked key or a
//! suspended tenant; the replica that revoked a key forgets it at once.

mod cache;
pub mod jwt;
mod keys;

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use locksmith_auth::{Access, Principal};
use locksmith_domain::TenantId;
use locksmith_errors::{ApiError, ErrorCode};
use serde::Deserialize;

use keys::Verifier;
pub use keys::{Authenticated, Quota};

use locksmith_limits::RateLimits;

use crate::{Backends, problem::Failure};

/// `[auth]` in the edge's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse requests without credentials outside `anonymous_paths` (seed
    /// 000's `require-auth`). `false` serves them as an operator and is
    /// refused at start unless the edge listens on loopback.
    #[serde(default = "yes")]
    pub require_auth: bool,
    /// Paths served without credentials (seed 000's `anonymous-paths`):
    /// exact paths, or a prefix ending in `/*`.
    #[serde(default = "default_anonymous_paths")]
    pub anonymous_paths: Vec<String>,
    /// How long a verified API key or a tenant's status is trusted before it
    /// is checked again: the bound on revocation across replicas. 0 checks
    /// every request.
    #[serde(default = "default_cache_ttl_ms")]
    pub cache_ttl_ms: u64,
    /// Requests per minute for tenants whose quota is 0.
    #[serde(default = "default_requests_per_minute")]
    pub default_requests_per_minute: NonZeroU32,
    /// Trusted OIDC issuers of JWT bearer tokens.
    #[serde(default)]
    pub oidc_issuers: Vec<jwt::OidcIssuer>,
}

fn yes() -> bool {
    true
}

fn default_anonymous_paths() -> Vec<String> {
    ["/health", "/ready", "/openapi.json", "/oauth/callback/*"]
        .map(str::to_owned)
        .to_vec()
}

fn default_cache_ttl_ms() -> u64 {
    5_000
}

fn default_requests_per_minute() -> NonZeroU32 {
    NonZeroU32::new(6_000).unwrap_or(NonZeroU32::MIN)
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            require_auth: true,
            anonymous_paths: default_anonymous_paths(),
            cache_ttl_ms: default_cache_ttl_ms(),
            default_requests_per_minute: default_requests_per_minute(),
            oidc_issuers: Vec::new(),
        }
    }
}

/// Why the authentication settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// `require_auth = false` on a listener reachable from other hosts.
    #[error(
        "auth.require_auth = false serves every caller as an operator; it is allowed only when the edge listens on loopback, not {0}"
    )]
    OpenListener(std::net::SocketAddr),
    /// A bad OIDC issuer entry.
    #[error(transparent)]
    Jwt(#[from] jwt::JwtConfigError),
    /// Several issuers, one of which may speak for every tenant.
    #[error(
        "OIDC issuer {0:?} lists no `tenants`: with more than one issuer configured, each must name the tenants it may speak for"
    )]
    IssuerWithoutTenants(String),
    /// An issuer's `tenants` entry is not a tenant id.
    #[error("OIDC issuer {0:?} lists a tenant that is not a tenant id")]
    BadIssuerTenant(String),
}

impl AuthConfig {
    /// Refuses settings that would expose the suite.
    pub fn check(&self, listen: std::net::SocketAddr) -> Result<(), AuthConfigError> {
        if !self.require_auth && !listen.ip().is_loopback() {
            return Err(AuthConfigError::OpenListener(listen));
        }
        for issuer in &self.oidc_issuers {
            if self.oidc_issuers.len() > 1 && issuer.tenants.is_empty() {
                return Err(AuthConfigError::IssuerWithoutTenants(issuer.issuer.clone()));
            }
            if issuer.tenants.iter().any(|t| TenantId::parse(t).is_err()) {
                return Err(AuthConfigError::BadIssuerTenant(issuer.issuer.clone()));
            }
        }
        Ok(())
    }

    fn is_anonymous(&self, path: &str) -> bool {
        self.anonymous_paths
            .iter()
            .any(|p| match p.strip_suffix("/*") {
                Some(prefix) => path
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('/')),
                None => p == path,
            })
    }
}

/// Authenticates requests and applies tenants' rate limits.
pub struct Authenticator {
    config: AuthConfig,
    verifier: Verifier,
    limits: RateLimits,
}

impl Authenticator {
    /// An authenticator asking `backends` to verify keys and tenants.
    pub fn new(config: AuthConfig, backends: Backends) -> Result<Self, AuthConfigError> {
        let ttl = Duration::from_millis(config.cache_ttl_ms);
        let jwt = if config.oidc_issuers.is_empty() {
            None
        } else {
            Some(jwt::JwtVerifier::new(config.oidc_issuers.clone())?)
        };
        let issuer_tenants = config
            .oidc_issuers
            .iter()
            .filter(|i| !i.tenants.is_empty())
            .map(|i| {
                let tenants = i.tenants.iter().filter_map(|t| TenantId::parse(t).ok());
                (i.issuer.clone(), tenants.collect())
            })
            .collect();
        Ok(Self {
            limits: RateLimits::new(config.default_requests_per_minute),
            verifier: Verifier::new(backends, jwt, issuer_tenants, ttl),
            config,
        })
    }

    /// The principal of the bearer credential a request to an anonymous
    /// route sends, if it sends one that verifies. The OAuth callback
    /// forwards it so that the broker confines a tenant caller to its own
    /// tenant's states; a request without one (a provider's redirect)
    /// stays anonymous, trusted through the state only.
    pub async fn optional_principal(&self, headers: &HeaderMap) -> Option<Principal> {
        let credential = bearer(headers)?.ok()?;
        self.verifier
            .verify(credential)
            .await
            .ok()
            .map(|a| a.principal)
    }
    /// Forgets a revoked key on this replica at once.
    pub fn forget_key(&self, key_id: &str) {
        self.verifier.forget_key(key_id);
    }

    /// Forgets what this replica knows of a tenant (its status or quota
    /// changed, or it was deleted).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.verifier.forget_tenant(tenant);
    }
}

/// 401 with the RFC 6750 challenge.
fn unauthenticated(detail: impl Into<String>) -> Response {
    let mut response = Failure(ApiError::new(ErrorCode::Unauthenticated, detail)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"locksmith\""),
    );
    response
}

/// The credential in `Authorization: Bearer …`, if any; `Err` if the header
/// is there but is not a bearer credential.
fn bearer(headers: &HeaderMap) -> Option<Result<&str, &'static str>> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return Some(Err("send one Authorization header, not several"));
    }
    let text = match value.to_str() {
        Ok(t) => t,
        Err(_) => return Some(Err("the Authorization header is not ASCII text")),
    };
    match text.split_once(' ') {
        Some((scheme, credential))
            if scheme.eq_ignore_ascii_case("bearer") && !credential.trim().is_empty() =>
        {
            Some(Ok(credential.trim()))
        }
        _ => Some(Err(
            "the Authorization header must be `Bearer <API key or JWT>`",
        )),
    }
}

/// Middleware: decides the principal of every request and counts it
/// against its tenant's rate limit.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    if auth.config.is_anonymous(request.uri().path()) {
        return next.run(request).await;
    }
    let authenticated = match bearer(request.headers()) {
        None if auth.config.require_auth => {
            return unauthenticated(
                "this route needs credentials: Authorization: Bearer <API key or JWT>",
            );
        }
        None => Authenticated::anonymous_operator(),
        Some(Err(why)) => return unauthenticated(why),
        Some(Ok(credential)) => match auth.verifier.verify(credential).await {
            Ok(a) => a,
            Err(error) if error.code == ErrorCode::Unauthenticated => {
                return unauthenticated(error.detail);
            }
            Err(error) => return Failure(error).into_response(),
        },
    };
    let decision = authenticated
        .quota
        .as_ref()
        .map(|q| auth.limits.check(&q.tenant, q.per_minute, q.seen));
    if let Some(d) = decision
        && let Some(wait) = d.retry_after
    {
        let mut response = Failure(
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "the tenant's limit of {} requests per minute is used up",
                    d.limit
                ),
            )
            .with_retry_after(Duration::from_secs(locksmith_limits::whole_seconds_up(
                wait,
            ))),
        )
        .into_response();
        d.write_headers(response.headers_mut());
        return response;
    }
    request.extensions_mut().insert(authenticated.principal);
    let mut response = next.run(request).await;
    if let Some(d) = decision {
        d.write_headers(response.headers_mut());
    }
    response
}

/// The caller's principal, for handlers. Missing means the route was served
/// without [`authenticate`] (an anonymous path): refused, never guessed.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                Failure(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "this route needs credentials: Authorization: Bearer <API key or JWT>",
                ))
            })
    }
}

impl Caller {
    /// Confines the call to `tenant` with `access`: another tenant answers
    /// exactly as if `tenant` did not exist.
    pub fn authorize(&self, tenant: &str, access: Access) -> Result<(), Failure> {
        let absent = || ApiError::not_found(format!("tenant '{tenant}' does not exist"));
        // An id that does not parse names no tenant the caller owns; the
        // registry answers it with a 400 naming the field.
        let Ok(id) = TenantId::parse(tenant) else {
            return match self.0.tenant() {
                None => Ok(()),
                Some(_) => Err(Failure(ApiError::invalid_field(
                    "tenant_id",
                    "must be a tenant id ([a-z0-9][a-z0-9-]{0,62})",
                ))),
            };
        };
        self.0
            .authorize(&id, access)
            .map_err(|d| Failure(d.into_api_error(absent)))
    }

    /// Deployment-wide calls: operators only.
    pub fn require_operator(&self) -> Result<(), Failure> {
        self.0
            .require_operator()
            .map_err(|d| Failure(d.into_api_error(ApiError::internal)))
    }

    /// `message` as a request carrying this principal to a service.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        locksmith_auth::forward(&mut request, &self.0);
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_paths_are_exact_or_explicit_prefixes() {
        let config = AuthConfig {
            anonymous_paths: vec!["/health".into(), "/oauth/callback/*".into()],
            ..AuthConfig::default()
        };
        assert!(config.is_anonymous("/health"));
        assert!(!config.is_anonymous("/health/"));
        assert!(!config.is_anonymous("/healthz"));
        assert!(config.is_anonymous("/oauth/callback/github"));
        assert!(!config.is_anonymous("/oauth/callback"));
        assert!(!config.is_anonymous("/oauth/callbackx/github"));
    }

    #[test]
    fn several_issuers_must_each_name_their_tenants() {
        let issuer = |name: &str, tenants: &[&str]| {
            let mut i = jwt::OidcIssuer::new(
                format!("https://{name}.example"),
                format!("https://{name}.example/jwks"),
                vec!["api".into()],
            );
            i.tenants = tenants.iter().map(|t| (*t).to_owned()).collect();
            i
        };
        let listen = "127.0.0.1:8080".parse().unwrap();
        let one = AuthConfig {
            oidc_issuers: vec![issuer("a", &[])],
            ..AuthConfig::default()
        };
        assert!(one.check(listen).is_ok());
        let two = AuthConfig {
            oidc_issuers: vec![issuer("a", &["prod"]), issuer("b", &[])],
            ..AuthConfig::default()
        };
        assert!(matches!(
            two.check(listen),
            Err(AuthConfigError::IssuerWithoutTenants(i)) if i == "https://b.example"
        ));
        let bad = AuthConfig {
            oidc_issuers: vec![issuer("a", &["Not A Tenant"])],
            ..AuthConfig::default()
        };
        assert!(matches!(
            bad.check(listen),
            Err(AuthConfigError::BadIssuerTenant(_))
        ));
    }

    #[test]
    fn require_auth_false_only_on_loopback() {
        let open = AuthConfig {
            require_auth: false,
            ..AuthConfig::default()
        };
        assert!(open.check("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(open.check("[::1]:8080".parse().unwrap()).is_ok());
        assert!(matches!(
            open.check("0.0.0.0:8080".parse().unwrap()),
            Err(AuthConfigError::OpenListener(_))
        ));
        assert!(
            AuthConfig::default()
                .check("0.0.0.0:8080".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert!(bearer(&h).is_none());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer lsk_x"),
        );
        assert_eq!(bearer(&h), Some(Ok("lsk_x")));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  tok "),
        );
        assert_eq!(bearer(&h), Some(Ok("tok")));
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "lsk_x"] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert!(matches!(bearer(&h), Some(Err(_))), "{bad}");
        }
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert!(matches!(bearer(&h), Some(Err(_))));
    }
}
