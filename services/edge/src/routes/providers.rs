//! A tenant's custom providers (catalog entries of its own, for providers
//! the catalog does not ship), over the OAuth broker:
//! `POST|GET /tenants/{tenant_id}/providers` and
//! `GET|PUT|DELETE /tenants/{tenant_id}/providers/{integration}`.
//!
//! Reading needs the read role, changing the tenant's admin role (a
//! provider decides where the tenant's tokens are sent). The edge
//! authorizes first (another tenant's providers answer 404 exactly as
//! absent ones), then the broker checks again, validates the definition by
//! the catalog's rules and checks every URL it names against the egress
//! policy, naming a bad field under `definition.` as the caller sent it.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use locksmith_auth::Access;
use locksmith_domain::IntegrationId;
use locksmith_proto::{broker::v1 as pb, registry::v1 as registry_pb};

use super::{integrations::from_broker, missing};
use crate::{
    AppState,
    auth::Caller,
    dto::{
        CreateProvider, PageQuery, ProviderDeleteQuery, ProviderList, ProviderView, UpdateProvider,
        definition_text,
    },
    extract::{ApiJson, ApiPath, ApiQuery},
    problem::{self, Failure},
};

fn provider_name(tenant: &str, integration: &str) -> String {
    format!("tenants/{tenant}/providers/{integration}")
}

fn view(provider: Option<pb::CustomProvider>) -> Result<ProviderView, Failure> {
    provider
        .and_then(ProviderView::from_pb)
        .ok_or_else(|| missing("custom provider"))
}

/// Create a custom provider: a catalog entry of the tenant's own, validated
/// like a shipped one; every URL it names must pass the egress policy (no
/// internal address, nor the suite's own services). Needs the admin role.
#[utoipa::path(post, path = "/tenants/{tenant_id}/providers", operation_id = "create_custom_provider", tag = "integrations",
    params(("tenant_id" = String, Path)),
    request_body = CreateProvider,
    responses((status = 201, body = ProviderView, description = "Created (version 1)",
               headers(("Location" = String, description = "The provider's path"))),
              (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The tenant has a provider by that id, or the shipped catalog does")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateProvider>,
) -> Result<Response, Failure> {
    caller.authorize(&tenant_id, Access::Admin)?;
    // Checked here so a bad id is named as the body's field.
    if let Err(e) = IntegrationId::parse(&body.integration) {
        return Err(Failure(problem::invalid_field(
            "integration",
            &e.to_string(),
        )));
    }
    // The broker keeps providers by tenant id without asking the registry:
    // an operator's create for a tenant nobody made is refused here, as
    // absent (the registry's NOT_FOUND names the tenant).
    state
        .backends
        .registry
        .clone()
        .get_tenant(caller.request(registry_pb::GetTenantRequest {
            tenant_id: tenant_id.clone(),
        }))
        .await?;
    let answer = state
        .backends
        .broker
        .clone()
        .create_custom_provider(caller.request(pb::CreateCustomProviderRequest {
            name: provider_name(&tenant_id, &body.integration),
            definition: definition_text(&body.definition),
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    let provider = view(answer.provider)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/{}", provider.name))],
        ApiJson(provider),
    )
        .into_response())
}

/// List the tenant's custom providers, by integration.
#[utoipa::path(get, path = "/tenants/{tenant_id}/providers", operation_id = "list_custom_providers", tag = "integrations",
    params(("tenant_id" = String, Path), PageQuery),
    responses((status = 200, body = ProviderList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<ProviderList>, Failure> {
    caller.authorize(&tenant_id, Access::Read)?;
    let answer = state
        .backends
        .broker
        .clone()
        .list_custom_providers(caller.request(pb::ListCustomProvidersRequest {
            parent: format!("tenants/{tenant_id}"),
            page_size: q.page_size.unwrap_or_default(),
            page_token: q.page_token.unwrap_or_default(),
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    let providers = answer
        .providers
        .into_iter()
        .map(|p| view(Some(p)))
        .collect::<Result<_, _>>()?;
    Ok(ApiJson(ProviderList {
        providers,
        next_page_token: Some(answer.next_page_token).filter(|t| !t.is_empty()),
    }))
}

/// Show a custom provider with its definition.
#[utoipa::path(get, path = "/tenants/{tenant_id}/providers/{integration}", operation_id = "get_custom_provider", tag = "integrations",
    params(("tenant_id" = String, Path), ("integration" = String, Path, description = "The provider's id")),
    responses((status = 200, body = ProviderView)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant_id, integration)): ApiPath<(String, String)>,
) -> Result<ApiJson<ProviderView>, Failure> {
    caller.authorize(&tenant_id, Access::Read)?;
    let answer = state
        .backends
        .broker
        .clone()
        .get_custom_provider(caller.request(pb::GetCustomProviderRequest {
            name: provider_name(&tenant_id, &integration),
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    Ok(ApiJson(view(answer.provider)?))
}

/// Replace a custom provider's definition, check-and-set on its version
/// (checked as on create). Needs the admin role.
#[utoipa::path(put, path = "/tenants/{tenant_id}/providers/{integration}", operation_id = "update_custom_provider", tag = "integrations",
    params(("tenant_id" = String, Path), ("integration" = String, Path, description = "The provider's id")),
    request_body = UpdateProvider,
    responses((status = 200, body = ProviderView)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant_id, integration)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<UpdateProvider>,
) -> Result<ApiJson<ProviderView>, Failure> {
    caller.authorize(&tenant_id, Access::Admin)?;
    let answer = state
        .backends
        .broker
        .clone()
        .update_custom_provider(caller.request(pb::UpdateCustomProviderRequest {
            name: provider_name(&tenant_id, &integration),
            definition: definition_text(&body.definition),
            expected_version: body.expected_version,
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    Ok(ApiJson(view(answer.provider)?))
}

/// Delete a custom provider (`?expected_version=`: only at that version).
/// Connections made with it stop working until it is created again. Needs
/// the admin role.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/providers/{integration}", operation_id = "delete_custom_provider", tag = "integrations",
    params(("tenant_id" = String, Path), ("integration" = String, Path, description = "The provider's id"), ProviderDeleteQuery),
    responses((status = 204, description = "Deleted"),
              (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The provider is not at `expected_version`")))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant_id, integration)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ProviderDeleteQuery>,
) -> Result<StatusCode, Failure> {
    caller.authorize(&tenant_id, Access::Admin)?;
    state
        .backends
        .broker
        .clone()
        .delete_custom_provider(caller.request(pb::DeleteCustomProviderRequest {
            name: provider_name(&tenant_id, &integration),
            expected_version: q.expected_version.unwrap_or_default(),
        }))
        .await
        .map_err(from_broker)?;
    Ok(StatusCode::NO_CONTENT)
}
