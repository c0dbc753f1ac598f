//! Tenants: `POST /tenants`, `GET /admin/tenants`, `GET|PATCH|DELETE /tenants/{tenant_id}`,
//! `GET /tenants/{tenant_id}/status`.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use locksmith_auth::Access;
use locksmith_proto::registry::v1 as pb;

use super::missing;
use crate::{
    AppState,
    auth::Caller,
    dto::{
        CreateTenant, DeleteQuery, PageQuery, PatchTenant, TenantList, TenantStatusView, TenantView,
    },
    extract::{ApiJson, ApiPath, ApiQuery},
    problem::Failure,
};

/// What a domain must be (the domain's rule, as the registry says it).
const DOMAIN_RULE: &str = "must be a DNS name: dot-separated labels of letters, digits and '-'";

/// Create a tenant.
#[utoipa::path(post, path = "/tenants", operation_id = "create_tenant", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantView, description = "Created"),
              (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json"),
              (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json", description = "The id is taken"),
              (status = 413, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<impl IntoResponse, Failure> {
    caller.require_operator()?;
    super::not_blank("domain", body.domain.as_deref(), DOMAIN_RULE)?;
    let request = caller.request(pb::CreateTenantRequest {
        tenant: Some(body.into_pb()),
    });
    let tenant = state
        .backends
        .registry
        .clone()
        .create_tenant(request)
        .await?
        .into_inner()
        .tenant;
    let view = TenantView::from(tenant.ok_or_else(|| missing("tenant"))?);
    let location = format!("/tenants/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        ApiJson(view),
    ))
}

/// List tenants a page at a time.
#[utoipa::path(get, path = "/admin/tenants", operation_id = "list_tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = TenantList),
              (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<TenantList>, Failure> {
    caller.require_operator()?;
    let request = caller.request(pb::ListTenantsRequest {
        page_size: q.page_size.unwrap_or_default(),
        page_token: q.page_token.unwrap_or_default(),
    });
    let page = state
        .backends
        .registry
        .clone()
        .list_tenants(request)
        .await?
        .into_inner();
    Ok(ApiJson(TenantList {
        tenants: page.tenants.into_iter().map(TenantView::from).collect(),
        next_page_token: Some(page.next_page_token).filter(|t| !t.is_empty()),
    }))
}

async fn fetch(
    state: &AppState,
    caller: &Caller,
    tenant_id: String,
) -> Result<TenantView, Failure> {
    caller.authorize(&tenant_id, Access::Read)?;
    let tenant = state
        .backends
        .registry
        .clone()
        .get_tenant(caller.request(pb::GetTenantRequest { tenant_id }))
        .await?
        .into_inner()
        .tenant;
    Ok(TenantView::from(tenant.ok_or_else(|| missing("tenant"))?))
}

/// Get a tenant.
#[utoipa::path(get, path = "/tenants/{tenant_id}", operation_id = "get_tenant", tag = "tenants", params(("tenant_id" = String, Path)),
    responses((status = 200, body = TenantView),
              (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json"),
              (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<ApiJson<TenantView>, Failure> {
    Ok(ApiJson(fetch(&state, &caller, tenant_id).await?))
}

/// A tenant's status: whether it is served, its integrations and quotas.
#[utoipa::path(get, path = "/tenants/{tenant_id}/status", operation_id = "get_tenant_status", tag = "tenants", params(("tenant_id" = String, Path)),
    responses((status = 200, body = TenantStatusView),
              (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<ApiJson<TenantStatusView>, Failure> {
    Ok(ApiJson(fetch(&state, &caller, tenant_id).await?.into()))
}

/// Change some of a tenant's fields, if `version` is current.
#[utoipa::path(patch, path = "/tenants/{tenant_id}", operation_id = "patch_tenant", tag = "tenants", params(("tenant_id" = String, Path)), request_body = PatchTenant,
    responses((status = 200, body = TenantView),
              (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json"),
              (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json"),
              (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json", description = "Stale version")))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchTenant>,
) -> Result<ApiJson<TenantView>, Failure> {
    caller.authorize(&tenant_id, Access::Admin)?;
    super::not_blank(
        "domain",
        body.domain.as_ref().and_then(|d| d.as_deref()),
        DOMAIN_RULE,
    )?;
    if body.status.is_some() || body.quotas.is_some() {
        // A tenant may not lift its own suspension or quotas.
        caller.require_operator()?;
    }
    let tenant = state
        .backends
        .registry
        .clone()
        .update_tenant(caller.request(body.into_pb(tenant_id.clone())))
        .await?
        .into_inner()
        .tenant;
    if let Ok(id) = locksmith_domain::TenantId::parse(&tenant_id) {
        // Its status or quota may have changed: apply it here at once.
        state.auth.forget_tenant(&id);
    }
    Ok(ApiJson(TenantView::from(
        tenant.ok_or_else(|| missing("tenant"))?,
    )))
}

/// Delete a tenant with its orgs, bots and users.
#[utoipa::path(delete, path = "/tenants/{tenant_id}", operation_id = "delete_tenant", tag = "tenants", params(("tenant_id" = String, Path), DeleteQuery),
    responses((status = 204, description = "Deleted"),
              (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json"),
              (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json", description = "Stale version")))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, Failure> {
    caller.require_operator()?;
    let request = caller.request(pb::DeleteTenantRequest {
        tenant_id: tenant_id.clone(),
        version: q.version.unwrap_or_default(),
    });
    state
        .backends
        .registry
        .clone()
        .delete_tenant(request)
        .await?;
    if let Ok(id) = locksmith_domain::TenantId::parse(&tenant_id) {
        state.auth.forget_tenant(&id);
    }
    Ok(StatusCode::NO_CONTENT)
}
