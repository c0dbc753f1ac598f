//! Connection health per tenant (seed 001): `GET /admin/health/tenants`,
//! an operator route over the OAuth broker's ListTenantHealth.

use axum::extract::State;
use locksmith_proto::broker::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::missing;
use crate::{
    AppState,
    auth::Caller,
    dto::PageQuery,
    extract::{ApiJson, ApiQuery},
    problem::Failure,
};

/// One tenant's connections, at every owner under it (the tenant, its orgs,
/// bots and users), counted by health. Each connection is counted once:
/// the four counts add up to `total`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantHealth {
    /// The tenant's id.
    pub tenant_id: String,
    /// Active connections that are not expiring soon.
    pub active: u32,
    /// Active OAuth authorization-code connections that stop working
    /// without a new authorization: the access token expires within 24 hours
    /// (or has expired) and no refresh token is held to renew it. One with a
    /// refresh token is renewed on its next use and is not counted here.
    pub expiring_soon: u32,
    /// The provider refused the refresh token: the user must authorize again.
    pub needs_reauth: u32,
    /// Refreshes fail for a transient reason (retried with backoff).
    pub refresh_failing: u32,
    /// All of the tenant's connections.
    pub total: u32,
}

/// A page of tenants' connection health, by tenant id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantHealthList {
    /// The tenants of this page, each with its counts (all 0 when it has no
    /// connection).
    pub tenants: Vec<TenantHealth>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_page_token: Option<String>,
}

fn tenant_health(t: pb::TenantHealth) -> Result<TenantHealth, Failure> {
    let Some(id) = t.tenant.strip_prefix("tenants/") else {
        return Err(missing("tenant name"));
    };
    Ok(TenantHealth {
        tenant_id: id.to_owned(),
        active: t.active,
        expiring_soon: t.expiring_soon,
        needs_reauth: t.needs_reauth,
        refresh_failing: t.refresh_failing,
        total: t
            .active
            .saturating_add(t.expiring_soon)
            .saturating_add(t.needs_reauth)
            .saturating_add(t.refresh_failing),
    })
}

/// Each tenant's connections by health (active, expiring soon, needs
/// re-authorization, refresh failing), a page of tenants at a time by
/// tenant id. Operators only. Pages hold at most 100 tenants (a larger
/// `page_size` is served as 100; none means 50), since every connection of
/// each is read to be counted.
#[utoipa::path(get, path = "/admin/health/tenants", operation_id = "list_tenant_health", tag = "integrations", params(PageQuery),
    responses((status = 200, body = TenantHealthList),
              (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "A bad `page_size` or `page_token`"),
              (status = 403, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "Not an operator admin key")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<TenantHealthList>, Failure> {
    caller.require_operator()?;
    let answer = state
        .backends
        .broker
        .clone()
        .list_tenant_health(caller.request(pb::ListTenantHealthRequest {
            page_size: q.page_size.unwrap_or_default(),
            page_token: q.page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    Ok(ApiJson(TenantHealthList {
        tenants: answer
            .tenants
            .into_iter()
            .map(tenant_health)
            .collect::<Result<_, _>>()?,
        next_page_token: Some(answer.next_page_token).filter(|t| !t.is_empty()),
    }))
}
