//! Per-tenant rate limits at the proxy, as at the edge: the tenant's
//! `requests_per_minute` from the registry (read at most every `quota_ttl`,
//! single flight per tenant), GCRA per replica (`locksmith-limits`). A
//! suspended tenant's calls are refused. Tenant workloads reach the proxy
//! without passing the edge, so the proxy cannot rely on the edge's check.

use std::{
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use locksmith_domain::TenantId;
use locksmith_limits::RateLimits;
use locksmith_proto::registry::v1::{
    self as pb, tenant_registry_service_client::TenantRegistryServiceClient,
};
use locksmith_tls::TlsMaterial;
use tonic::transport::{Channel, Endpoint};

use crate::{error::ProxyError, flight::Slots};

/// `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// The rate for tenants whose quota is 0.
    pub default_requests_per_minute: NonZeroU32,
    /// How long a tenant's quota and status are trusted before re-reading.
    pub quota_ttl: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            default_requests_per_minute: NonZeroU32::MIN.saturating_add(5999),
            quota_ttl: Duration::from_secs(30),
        }
    }
}

/// What the proxy needs to know of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Its quota (0: the default).
    pub requests_per_minute: u32,
    /// Whether its callers are served.
    pub active: bool,
    /// When this was read.
    pub read_at: Instant,
}

/// Where tenant policies come from.
pub trait PolicySource: Send + Sync {
    /// The tenant's policy now.
    fn policy<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<TenantPolicy, ProxyError>> + Send + 'a>>;
}

/// The registry as the policy source.
#[derive(Clone)]
pub struct RegistrySource {
    client: TenantRegistryServiceClient<Channel>,
}

impl RegistrySource {
    /// A client of the registry at `url`; connects on first use.
    pub fn connect_lazy(
        url: &str,
        server_name: &str,
        tls: &TlsMaterial,
    ) -> Result<Self, ProxyError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ProxyError::Internal(format!("registry URL: {e}")))?
            .tls_config(tls.client_tls(server_name))
            .map_err(|e| ProxyError::Internal(format!("registry TLS: {e}")))?
            .connect_lazy();
        Ok(Self {
            client: TenantRegistryServiceClient::new(channel),
        })
    }
}

impl PolicySource for RegistrySource {
    fn policy<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<TenantPolicy, ProxyError>> + Send + 'a>> {
        Box::pin(async move {
            // The proxy asks as itself: quotas are the deployment's, not
            // the caller's to see.
            let answer = self
                .client
                .clone()
                .get_tenant(pb::GetTenantRequest {
                    tenant_id: tenant.to_string(),
                })
                .await
                .map_err(|status| ProxyError::from_peer("the registry", &status))?
                .into_inner();
            let tenant = answer
                .tenant
                .ok_or_else(|| ProxyError::Internal("the registry answered no tenant".into()))?;
            Ok(TenantPolicy {
                requests_per_minute: tenant.quotas.map_or(0, |q| q.requests_per_minute),
                active: tenant.status != pb::TenantStatus::Suspended as i32,
                read_at: Instant::now(),
            })
        })
    }
}

/// Every tenant's limit on this replica.
pub struct TenantLimits {
    source: Arc<dyn PolicySource>,
    config: LimitsConfig,
    policies: Slots<TenantId, TenantPolicy>,
    rates: RateLimits,
}

impl TenantLimits {
    /// Limits read from `source`.
    pub fn new(source: Arc<dyn PolicySource>, config: LimitsConfig) -> Self {
        Self {
            source,
            config,
            policies: Slots::new(100_000),
            rates: RateLimits::new(config.default_requests_per_minute),
        }
    }

    /// Counts one call of `tenant`: refused when the tenant is suspended or
    /// over its rate.
    pub async fn admit(&self, tenant: &TenantId) -> Result<(), ProxyError> {
        let ttl = self.config.quota_ttl;
        let policy = self
            .policies
            .slot(tenant)
            .get_or_refill(|p| p.read_at.elapsed() < ttl, || self.source.policy(tenant))
            .await
            .map_err(|e| match e {
                // The tenant is gone: its connections are too.
                ProxyError::NotFound(_) => ProxyError::NotFound("connection"),
                other => other,
            })?;
        if !policy.active {
            return Err(ProxyError::PermissionDenied {
                needs: "an active tenant (this one is suspended)".into(),
            });
        }
        let decision = self
            .rates
            .check(tenant, policy.requests_per_minute, policy.read_at);
        match decision.retry_after {
            None => Ok(()),
            Some(retry_after) => Err(ProxyError::RateLimited { retry_after }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(TenantPolicy);

    impl PolicySource for Fixed {
        fn policy<'a>(
            &'a self,
            _: &'a TenantId,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<TenantPolicy, ProxyError>> + Send + 'a>>
        {
            let p = self.0;
            Box::pin(async move { Ok(p) })
        }
    }

    #[tokio::test]
    async fn a_tenant_over_its_quota_waits_and_a_suspended_one_is_refused() {
        let acme = TenantId::parse("acme").unwrap();
        let limits = TenantLimits::new(
            Arc::new(Fixed(TenantPolicy {
                requests_per_minute: 2,
                active: true,
                read_at: Instant::now(),
            })),
            LimitsConfig::default(),
        );
        limits.admit(&acme).await.unwrap();
        limits.admit(&acme).await.unwrap();
        let Err(ProxyError::RateLimited { retry_after }) = limits.admit(&acme).await else {
            panic!("the third call in a minute is refused");
        };
        assert!(retry_after > Duration::from_secs(20) && retry_after <= Duration::from_secs(30));

        let suspended = TenantLimits::new(
            Arc::new(Fixed(TenantPolicy {
                requests_per_minute: 0,
                active: false,
                read_at: Instant::now(),
            })),
            LimitsConfig::default(),
        );
        assert!(matches!(
            suspended.admit(&acme).await,
            Err(ProxyError::PermissionDenied { .. })
        ));
    }
}
