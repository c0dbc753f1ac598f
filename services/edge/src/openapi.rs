//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::OpenApi;

use crate::{dto, routes};

/// Every route and schema of the edge.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Locksmith",
        description = "Multi-tenant credential platform: the HTTP edge. Errors are RFC 9457 problem+json."
    ),
    paths(
        routes::ops::health,
        routes::ops::ready,
        routes::ops::openapi,
        routes::tenants::create,
        routes::tenants::list,
        routes::tenants::get,
        routes::tenants::patch,
        routes::tenants::delete,
        routes::tenants::status,
        routes::members::create_org,
        routes::members::list_orgs,
        routes::members::get_org,
        routes::members::patch_org,
        routes::members::delete_org,
        routes::members::create_bot,
        routes::members::list_bots,
        routes::members::get_bot,
        routes::members::patch_bot,
        routes::members::delete_bot,
        routes::members::create_user,
        routes::members::list_users,
        routes::members::get_user,
        routes::members::patch_user,
        routes::members::delete_user,
    ),
    components(schemas(
        dto::TenantView,
        dto::CreateTenant,
        dto::PatchTenant,
        dto::TenantList,
        dto::TenantStatusView,
        dto::TenantStatus,
        dto::Quotas,
        dto::MemberView,
        dto::CreateMember,
        dto::PatchMember,
        dto::MemberList,
        dto::HealthView,
        locksmith_errors::Problem,
        locksmith_errors::FieldViolation,
    ))
)]
pub struct ApiDoc;
