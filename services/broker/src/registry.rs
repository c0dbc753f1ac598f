//! The broker's client of the tenant registry, over mTLS gRPC with the
//! broker's certificate (the registry lets the broker read): whether a
//! connection's owner exists, and the tenants a page at a time.
//!
//! # Public API (stable)
//!
//! ```text
//! RegistryClient::new(Channel) -> Self
//! RegistryClient::connect_lazy(url: &str, server_name: &str, tls: &TlsMaterial)
//!     -> Result<Self, BrokerError>
//! require_owner(&self, principal: &Principal, owner: &Scope) -> Result<(), BrokerError>
//!     // OwnerNotFound (the registry's words), TenantSuspended, Unavailable
//! list_tenants(&self, principal: &Principal, page_size: i32, page_token: &str)
//!     -> Result<TenantPage { tenants: Vec<TenantId>, next_page_token: String }, BrokerError>
//! ```
//!
//! The caller's principal is forwarded, so the registry confines the call
//! to the caller's tenant again (and lists tenants to operators only).

use locksmith_auth::Principal;
use locksmith_domain::{Scope, TenantId};
use locksmith_errors::{ApiError, ErrorCode};
use locksmith_proto::registry::v1::{
    self as pb, tenant_registry_service_client::TenantRegistryServiceClient,
};
use locksmith_tls::TlsMaterial;
use tonic::transport::{Channel, Endpoint};

use crate::error::{BrokerError, RETRY_AFTER};

/// The registry as the broker uses it. Cheap to clone (one channel).
#[derive(Clone, Debug)]
pub struct RegistryClient {
    inner: TenantRegistryServiceClient<Channel>,
}

/// One page of tenants, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantPage {
    /// The tenants' ids, ordered by id.
    pub tenants: Vec<TenantId>,
    /// Empty on the last page.
    pub next_page_token: String,
}

fn request<T>(message: T, principal: &Principal) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    locksmith_auth::forward(&mut request, principal);
    request
}

/// Reads a registry answer: its NOT_FOUND names the missing tenant or
/// member in its own words (kept); a bad page token is the caller's; an
/// outage is retryable; anything else is ours to log.
fn from_registry(status: &tonic::Status) -> BrokerError {
    let api = ApiError::from_status(status);
    match api.code {
        ErrorCode::NotFound => BrokerError::OwnerNotFound(api.detail),
        ErrorCode::PermissionDenied => BrokerError::PermissionDenied {
            needs: api
                .detail
                .strip_prefix("this call needs ")
                .unwrap_or("another role")
                .to_owned(),
        },
        ErrorCode::InvalidArgument => match api.violations.first() {
            Some(v) => BrokerError::InvalidArgument {
                field: v.field.clone(),
                reason: v.description.clone(),
            },
            None => BrokerError::Internal(format!("registry refused an argument: {api}")),
        },
        ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::RateLimited => {
            BrokerError::Unavailable {
                what: "the registry",
                retry_after: api.retry_after.unwrap_or(RETRY_AFTER),
            }
        }
        _ => BrokerError::Internal(format!("registry answered {api}")),
    }
}

impl RegistryClient {
    /// A client over `channel` (built with the broker's certificate).
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: TenantRegistryServiceClient::new(channel),
        }
    }

    /// A client of the registry at `url` (`https://host:port`), verified as
    /// `server_name`, presenting `tls`'s certificate. Connects on first use,
    /// so the broker starts while the registry is down.
    pub fn connect_lazy(
        url: &str,
        server_name: &str,
        tls: &TlsMaterial,
    ) -> Result<Self, BrokerError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| BrokerError::Internal(format!("registry URL: {e}")))?
            .tls_config(tls.client_tls(server_name))
            .map_err(|e| BrokerError::Internal(format!("registry TLS: {e}")))?
            .connect_lazy();
        Ok(Self::new(channel))
    }

    /// Whether `owner` may hold a new connection, in one registry call: an
    /// org, bot or user must exist (its org and tenant too, which the
    /// registry checks on the way); a tenant must exist and be active.
    /// [`BrokerError::OwnerNotFound`] names what is missing.
    pub async fn require_owner(
        &self,
        principal: &Principal,
        owner: &Scope,
    ) -> Result<(), BrokerError> {
        let mut client = self.inner.clone();
        let answer = match owner {
            Scope::System => return Ok(()),
            Scope::Tenant(tenant) => {
                let message = pb::GetTenantRequest {
                    tenant_id: tenant.to_string(),
                };
                let got = client
                    .get_tenant(request(message, principal))
                    .await
                    .map_err(|s| from_registry(&s))?
                    .into_inner()
                    .tenant
                    .ok_or_else(|| BrokerError::Internal("GetTenant answered no tenant".into()))?;
                if got.status() != pb::TenantStatus::Active {
                    return Err(BrokerError::TenantSuspended {
                        tenant: tenant.to_string(),
                    });
                }
                Ok(())
            }
            Scope::Org { tenant, org } => client
                .get_org(request(
                    pb::GetOrgRequest {
                        tenant_id: tenant.to_string(),
                        org_id: org.to_string(),
                    },
                    principal,
                ))
                .await
                .map(drop),
            Scope::Bot { tenant, org, bot } => client
                .get_bot(request(
                    pb::GetBotRequest {
                        tenant_id: tenant.to_string(),
                        org_id: org.to_string(),
                        bot_id: bot.to_string(),
                    },
                    principal,
                ))
                .await
                .map(drop),
            Scope::User { tenant, org, user } => client
                .get_user(request(
                    pb::GetUserRequest {
                        tenant_id: tenant.to_string(),
                        org_id: org.to_string(),
                        user_id: user.to_string(),
                    },
                    principal,
                ))
                .await
                .map(drop),
        };
        answer.map_err(|s| from_registry(&s))
    }

    /// One page of tenants, by id (operators only: the registry checks the
    /// forwarded principal). `page_token` is the registry's, passed through.
    pub async fn list_tenants(
        &self,
        principal: &Principal,
        page_size: i32,
        page_token: &str,
    ) -> Result<TenantPage, BrokerError> {
        let message = pb::ListTenantsRequest {
            page_size,
            page_token: page_token.to_owned(),
        };
        let answer = self
            .inner
            .clone()
            .list_tenants(request(message, principal))
            .await
            .map_err(|s| from_registry(&s))?
            .into_inner();
        let tenants = answer
            .tenants
            .iter()
            .map(|t| {
                TenantId::parse(&t.id).map_err(|_| {
                    BrokerError::Internal("ListTenants answered a malformed tenant id".into())
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TenantPage {
            tenants,
            next_page_token: answer.next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn registry_answers_are_read_back_in_the_brokers_terms() {
        let absent = tonic::Status::from(ApiError::not_found(
            "bot 'ghost' of org 'sales' in tenant 'acme' does not exist",
        ));
        match from_registry(&absent) {
            BrokerError::OwnerNotFound(detail) => assert_eq!(
                detail,
                "bot 'ghost' of org 'sales' in tenant 'acme' does not exist"
            ),
            other => panic!("{other:?}"),
        }
        let token = tonic::Status::from(ApiError::invalid_field("page_token", "is not a token"));
        match from_registry(&token) {
            BrokerError::InvalidArgument { field, .. } => assert_eq!(field, "page_token"),
            other => panic!("{other:?}"),
        }
        let down = tonic::Status::from(
            ApiError::new(ErrorCode::Unavailable, "storage")
                .with_retry_after(Duration::from_secs(4)),
        );
        match from_registry(&down) {
            BrokerError::Unavailable { what, retry_after } => {
                assert_eq!(
                    (what, retry_after),
                    ("the registry", Duration::from_secs(4))
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            from_registry(&tonic::Status::unavailable("connection refused")).code(),
            ErrorCode::Unavailable
        );
        assert_eq!(
            from_registry(&tonic::Status::internal("db path /x")).code(),
            ErrorCode::Internal
        );
    }
}
