//! Turning a bearer credential into a principal: API keys through the
//! registry, JWTs through [`super::jwt`], both cached for a bounded time.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use locksmith_auth::{Principal, Role, Roles};
use locksmith_domain::TenantId;
use locksmith_errors::{ApiError, ErrorCode};
use locksmith_proto::registry::v1 as pb;
use ring::digest;

use super::{cache::TtlCache, jwt};
use crate::{Backends, routes::api_keys::KeyRole};

/// Most cached verification results per kind; beyond it the cache restarts.
const MAX_CACHED: usize = 100_000;

/// A tenant's rate-limit quota as one verification saw it.
#[derive(Clone, Debug)]
pub struct Quota {
    /// The tenant.
    pub tenant: TenantId,
    /// Its requests per minute (0: the default).
    pub per_minute: u32,
    /// When the registry was read: a newer reading of a changed quota
    /// replaces the tenant's limiter, an older one never does.
    pub seen: Instant,
}

/// A verified caller.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// Who it is.
    pub principal: Principal,
    /// Its tenant's quota, for tenant principals (operators are not rate
    /// limited).
    pub quota: Option<Quota>,
    /// The API key it used, so a revocation can find it in the cache.
    key_id: Option<String>,
}

impl Authenticated {
    /// The caller when `require_auth = false` and no credential was sent.
    pub fn anonymous_operator() -> Self {
        Self {
            principal: Principal::Operator {
                subject: "anonymous (require_auth = false)".into(),
            },
            quota: None,
            key_id: None,
        }
    }
}

/// What the edge knows of a tenant a JWT names.
#[derive(Clone, Debug)]
struct TenantState {
    active: bool,
    requests_per_minute: u32,
    seen: Instant,
}

pub(super) struct Verifier {
    backends: Backends,
    jwt: Option<jwt::JwtVerifier>,
    /// Issuers limited to some tenants (issuers not listed may speak for any).
    issuer_tenants: HashMap<String, Vec<TenantId>>,
    keys: TtlCache<[u8; 32], Authenticated>,
    tenants: TtlCache<TenantId, TenantState>,
    /// Keys revoked and tenants changed through this replica within the
    /// cache bound: their verifications are not cached, so one that was
    /// already in flight when the change was made cannot write back a stale
    /// "valid" after it.
    revoked_keys: TtlCache<String, ()>,
    changed_tenants: TtlCache<TenantId, ()>,
}

fn digest_of(credential: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, credential.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A backend failure while verifying: never a 401 (the caller's credential
/// may be fine), but the backend's own answer, logged.
fn backend_failure(status: &tonic::Status) -> ApiError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            tracing::warn!(code = ?status.code(), "credential verification backend unavailable");
            ApiError::new(
                ErrorCode::Unavailable,
                "credentials cannot be verified right now",
            )
            .with_retry_after(Duration::from_secs(5))
        }
        code => {
            tracing::error!(
                ?code,
                message = status.message(),
                "credential verification failed"
            );
            ApiError::internal()
        }
    }
}

/// The monotonic instant of a wall-clock expiry, so a cached key is not
/// trusted past its own expiry.
fn expiry_instant(t: &prost_types::Timestamp, now: Instant) -> Instant {
    let expires =
        std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.seconds).unwrap_or(0));
    match expires.duration_since(std::time::SystemTime::now()) {
        Ok(left) => now + left,
        Err(_) => now,
    }
}

impl Verifier {
    pub(super) fn new(
        backends: Backends,
        jwt: Option<jwt::JwtVerifier>,
        issuer_tenants: HashMap<String, Vec<TenantId>>,
        ttl: Duration,
    ) -> Self {
        Self {
            backends,
            jwt,
            issuer_tenants,
            keys: TtlCache::new(ttl, MAX_CACHED),
            tenants: TtlCache::new(ttl, MAX_CACHED),
            revoked_keys: TtlCache::new(ttl, MAX_CACHED),
            changed_tenants: TtlCache::new(ttl, MAX_CACHED),
        }
    }

    pub(super) fn forget_key(&self, key_id: &str) {
        self.revoked_keys
            .insert(key_id.to_owned(), (), Instant::now(), None);
        self.keys
            .remove_where(|a| a.key_id.as_deref() == Some(key_id));
    }

    pub(super) fn forget_tenant(&self, tenant: &TenantId) {
        self.changed_tenants
            .insert(tenant.clone(), (), Instant::now(), None);
        self.keys
            .remove_where(|a| a.quota.as_ref().is_some_and(|q| &q.tenant == tenant));
        self.tenants.remove_where(|_| true);
    }

    /// Whether a verification of `key_id` for `tenant` may be cached now.
    fn cacheable(&self, key_id: Option<&str>, tenant: Option<&TenantId>, now: Instant) -> bool {
        let revoked = key_id.is_some_and(|k| self.revoked_keys.get(&k.to_owned(), now).is_some());
        let changed = tenant.is_some_and(|t| self.changed_tenants.get(t, now).is_some());
        !revoked && !changed
    }

    /// The caller a bearer credential stands for.
    pub(super) async fn verify(&self, credential: &str) -> Result<Authenticated, ApiError> {
        if credential.starts_with("lsk_") {
            self.verify_api_key(credential).await
        } else if credential.split('.').count() == 3 {
            self.verify_jwt(credential).await
        } else {
            Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "the bearer credential is neither a Locksmith API key nor a JWT",
            ))
        }
    }

    async fn verify_api_key(&self, key: &str) -> Result<Authenticated, ApiError> {
        let digest = digest_of(key);
        let now = Instant::now();
        if let Some(hit) = self.keys.get(&digest, now) {
            return Ok(hit);
        }
        let answer = self
            .backends
            .api_keys
            .clone()
            .verify_api_key(pb::VerifyApiKeyRequest {
                secret: key.to_owned(),
            })
            .await;
        let verified = match answer {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                // The registry's refusals are written for callers.
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    ApiError::from_status(&status).detail,
                ));
            }
            Err(status) => return Err(backend_failure(&status)),
        };
        let key_meta = verified.api_key.ok_or_else(|| {
            tracing::error!("VerifyApiKey answered without the key");
            ApiError::internal()
        })?;
        let subject = format!("api-key:{}", key_meta.key_id);
        let authenticated = match (key_meta.owner, verified.tenant) {
            (Some(pb::api_key::Owner::Operator(_)), _) => Authenticated {
                principal: Principal::Operator { subject },
                quota: None,
                key_id: Some(key_meta.key_id.clone()),
            },
            (Some(pb::api_key::Owner::TenantId(_)), Some(tenant)) => {
                let id = TenantId::parse(&tenant.id).map_err(|_| {
                    tracing::error!("VerifyApiKey answered a malformed tenant id");
                    ApiError::internal()
                })?;
                Authenticated {
                    principal: Principal::Tenant {
                        tenant: id.clone(),
                        roles: Roles::of(
                            key_meta
                                .roles
                                .iter()
                                .filter_map(|r| KeyRole::from_pb(*r).map(Role::from)),
                        ),
                        subject,
                    },
                    quota: Some(Quota {
                        tenant: id,
                        per_minute: tenant.quotas.map_or(0, |q| q.requests_per_minute),
                        seen: now,
                    }),
                    key_id: Some(key_meta.key_id.clone()),
                }
            }
            _ => {
                tracing::error!("VerifyApiKey answered a key without a usable owner");
                return Err(ApiError::internal());
            }
        };
        let not_after = key_meta
            .expire_time
            .as_ref()
            .map(|t| expiry_instant(t, now));
        let tenant = authenticated.quota.as_ref().map(|q| &q.tenant);
        if self.cacheable(Some(&key_meta.key_id), tenant, Instant::now()) {
            self.keys
                .insert(digest, authenticated.clone(), now, not_after);
        }
        Ok(authenticated)
    }

    async fn verify_jwt(&self, token: &str) -> Result<Authenticated, ApiError> {
        let Some(verifier) = &self.jwt else {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "this deployment accepts no JWTs: no OIDC issuer is configured",
            ));
        };
        let claims = verifier
            .verify(token, time::OffsetDateTime::now_utc())
            .await
            .map_err(|e| match e {
                // The token may be fine: the issuer's keys could not be read.
                jwt::JwtError::JwksUnavailable => {
                    ApiError::new(ErrorCode::Unavailable, e.to_string())
                        .with_retry_after(Duration::from_secs(5))
                }
                other => ApiError::new(ErrorCode::Unauthenticated, other.to_string()),
            })?;
        let tenant = TenantId::parse(&claims.tenant).map_err(|_| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "the token's tenant claim is not a tenant id",
            )
        })?;
        if let Some(allowed) = self.issuer_tenants.get(&claims.issuer)
            && !allowed.contains(&tenant)
        {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "the bearer token's issuer may not speak for that tenant",
            ));
        }
        let state = self.tenant_state(&tenant).await?;
        if !state.active {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "the token's tenant is suspended",
            ));
        }
        Ok(Authenticated {
            principal: Principal::Tenant {
                tenant: tenant.clone(),
                roles: Roles::of(claims.roles.iter().copied()),
                subject: format!("jwt:{}#{}", claims.issuer, claims.subject),
            },
            quota: Some(Quota {
                tenant,
                per_minute: state.requests_per_minute,
                seen: state.seen,
            }),
            key_id: None,
        })
    }

    async fn tenant_state(&self, tenant: &TenantId) -> Result<TenantState, ApiError> {
        let now = Instant::now();
        if let Some(hit) = self.tenants.get(tenant, now) {
            return Ok(hit);
        }
        let answer = self
            .backends
            .registry
            .clone()
            .get_tenant(pb::GetTenantRequest {
                tenant_id: tenant.to_string(),
            })
            .await;
        let record = match answer {
            Ok(r) => r.into_inner().tenant.ok_or_else(|| {
                tracing::error!("GetTenant answered without the tenant");
                ApiError::internal()
            })?,
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "the token's tenant does not exist",
                ));
            }
            Err(status) => return Err(backend_failure(&status)),
        };
        let state = TenantState {
            active: record.status != pb::TenantStatus::Suspended as i32,
            requests_per_minute: record.quotas.map_or(0, |q| q.requests_per_minute),
            seen: now,
        };
        if self.cacheable(None, Some(tenant), Instant::now()) {
            self.tenants
                .insert(tenant.clone(), state.clone(), now, None);
        }
        Ok(state)
    }
}
