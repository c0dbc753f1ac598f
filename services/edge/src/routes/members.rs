//! Orgs inside a tenant, and the bots and users inside an org:
//! `/tenants/{tenant_id}/orgs[/{org_id}]`,
//! `/tenants/{tenant_id}/orgs/{org_id}/bots[/{bot_id}]`,
//! `/tenants/{tenant_id}/orgs/{org_id}/users[/{user_id}]`.
//!
//! The three kinds share one shape, so each operation is written once over
//! [`MemberKind`] and the handlers only name the kind and the path.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use locksmith_auth::Access;
use locksmith_domain::MemberKind;
use locksmith_errors::ApiError;
use locksmith_proto::registry::v1 as pb;

use super::missing;
use crate::{
    AppState,
    auth::Caller,
    dto::{
        CreateMember, CreateUser, DeleteQuery, MemberList, MemberView, PageQuery, PatchMember,
        PatchUser,
    },
    extract::{ApiJson, ApiPath, ApiQuery},
    problem::Failure,
};

/// Where a member lives: its tenant, its org (the org itself for orgs), its id.
struct At {
    tenant: String,
    org: String,
    id: String,
}

/// What an email must be (the domain's rule, as the registry says it).
const EMAIL_RULE: &str = "must be an email address (local@domain)";

fn no_email(kind: MemberKind, email: bool) -> Result<(), Failure> {
    if email && kind != MemberKind::User {
        return Err(Failure(ApiError::invalid_field(
            "email",
            format!("a {} has no email", kind.as_str()),
        )));
    }
    Ok(())
}

fn location(view: &MemberView, kind: MemberKind) -> String {
    match kind {
        MemberKind::Org => format!("/tenants/{}/orgs/{}", view.tenant_id, view.id),
        _ => format!(
            "/tenants/{}/orgs/{}/{}/{}",
            view.tenant_id,
            view.org_id,
            kind.plural(),
            view.id
        ),
    }
}

async fn create(
    state: AppState,
    caller: Caller,
    kind: MemberKind,
    at: At,
    body: CreateMember,
) -> Result<impl IntoResponse, Failure> {
    caller.authorize(&at.tenant, Access::Write)?;
    no_email(kind, body.email.is_some())?;
    super::not_blank("email", body.email.as_deref(), EMAIL_RULE)?;
    let mut registry = state.backends.registry.clone();
    let view: Option<MemberView> = match kind {
        MemberKind::Org => {
            let org = pb::Org {
                tenant_id: at.tenant,
                id: body.id,
                display_name: body.display_name,
                labels: body.labels,
                ..Default::default()
            };
            registry
                .create_org(caller.request(pb::CreateOrgRequest { org: Some(org) }))
                .await?
                .into_inner()
                .org
                .map(Into::into)
        }
        MemberKind::Bot => {
            let bot = pb::Bot {
                tenant_id: at.tenant,
                org_id: at.org,
                id: body.id,
                display_name: body.display_name,
                labels: body.labels,
                ..Default::default()
            };
            registry
                .create_bot(caller.request(pb::CreateBotRequest { bot: Some(bot) }))
                .await?
                .into_inner()
                .bot
                .map(Into::into)
        }
        MemberKind::User => {
            let user = pb::User {
                tenant_id: at.tenant,
                org_id: at.org,
                id: body.id,
                display_name: body.display_name,
                email: body.email.unwrap_or_default(),
                labels: body.labels,
                ..Default::default()
            };
            registry
                .create_user(caller.request(pb::CreateUserRequest { user: Some(user) }))
                .await?
                .into_inner()
                .user
                .map(Into::into)
        }
    };
    let view = view.ok_or_else(|| missing(kind.as_str()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location(&view, kind))],
        ApiJson(view),
    ))
}

async fn get(
    state: AppState,
    caller: Caller,
    kind: MemberKind,
    at: At,
) -> Result<ApiJson<MemberView>, Failure> {
    caller.authorize(&at.tenant, Access::Read)?;
    let mut registry = state.backends.registry.clone();
    let view: Option<MemberView> = match kind {
        MemberKind::Org => registry
            .get_org(caller.request(pb::GetOrgRequest {
                tenant_id: at.tenant,
                org_id: at.id,
            }))
            .await?
            .into_inner()
            .org
            .map(Into::into),
        MemberKind::Bot => registry
            .get_bot(caller.request(pb::GetBotRequest {
                tenant_id: at.tenant,
                org_id: at.org,
                bot_id: at.id,
            }))
            .await?
            .into_inner()
            .bot
            .map(Into::into),
        MemberKind::User => registry
            .get_user(caller.request(pb::GetUserRequest {
                tenant_id: at.tenant,
                org_id: at.org,
                user_id: at.id,
            }))
            .await?
            .into_inner()
            .user
            .map(Into::into),
    };
    Ok(ApiJson(view.ok_or_else(|| missing(kind.as_str()))?))
}

async fn patch(
    state: AppState,
    caller: Caller,
    kind: MemberKind,
    at: At,
    body: PatchMember,
) -> Result<ApiJson<MemberView>, Failure> {
    caller.authorize(&at.tenant, Access::Write)?;
    no_email(kind, body.email.is_some())?;
    super::not_blank(
        "email",
        body.email.as_ref().and_then(|e| e.as_deref()),
        EMAIL_RULE,
    )?;
    let (display_name, email, labels, version, mask) = body.into_parts();
    let update_mask = Some(mask);
    let mut registry = state.backends.registry.clone();
    let view: Option<MemberView> = match kind {
        MemberKind::Org => {
            let org = pb::Org {
                tenant_id: at.tenant,
                id: at.id,
                display_name,
                labels,
                version,
                ..Default::default()
            };
            registry
                .update_org(caller.request(pb::UpdateOrgRequest {
                    org: Some(org),
                    update_mask,
                }))
                .await?
                .into_inner()
                .org
                .map(Into::into)
        }
        MemberKind::Bot => {
            let bot = pb::Bot {
                tenant_id: at.tenant,
                org_id: at.org,
                id: at.id,
                display_name,
                labels,
                version,
                ..Default::default()
            };
            registry
                .update_bot(caller.request(pb::UpdateBotRequest {
                    bot: Some(bot),
                    update_mask,
                }))
                .await?
                .into_inner()
                .bot
                .map(Into::into)
        }
        MemberKind::User => {
            let user = pb::User {
                tenant_id: at.tenant,
                org_id: at.org,
                id: at.id,
                display_name,
                email,
                labels,
                version,
                ..Default::default()
            };
            registry
                .update_user(caller.request(pb::UpdateUserRequest {
                    user: Some(user),
                    update_mask,
                }))
                .await?
                .into_inner()
                .user
                .map(Into::into)
        }
    };
    Ok(ApiJson(view.ok_or_else(|| missing(kind.as_str()))?))
}

async fn delete(
    state: AppState,
    caller: Caller,
    kind: MemberKind,
    at: At,
    q: DeleteQuery,
) -> Result<StatusCode, Failure> {
    caller.authorize(&at.tenant, Access::Write)?;
    let version = q.version.unwrap_or_default();
    let mut registry = state.backends.registry.clone();
    match kind {
        MemberKind::Org => {
            registry
                .delete_org(caller.request(pb::DeleteOrgRequest {
                    tenant_id: at.tenant,
                    org_id: at.id,
                    version,
                }))
                .await?;
        }
        MemberKind::Bot => {
            registry
                .delete_bot(caller.request(pb::DeleteBotRequest {
                    tenant_id: at.tenant,
                    org_id: at.org,
                    bot_id: at.id,
                    version,
                }))
                .await?;
        }
        MemberKind::User => {
            registry
                .delete_user(caller.request(pb::DeleteUserRequest {
                    tenant_id: at.tenant,
                    org_id: at.org,
                    user_id: at.id,
                    version,
                }))
                .await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn list(
    state: AppState,
    caller: Caller,
    kind: MemberKind,
    tenant: String,
    org: String,
    q: PageQuery,
) -> Result<ApiJson<MemberList>, Failure> {
    caller.authorize(&tenant, Access::Read)?;
    let page_size = q.page_size.unwrap_or_default();
    let page_token = q.page_token.unwrap_or_default();
    let mut registry = state.backends.registry.clone();
    let (items, next): (Vec<MemberView>, String) = match kind {
        MemberKind::Org => {
            let r = registry
                .list_orgs(caller.request(pb::ListOrgsRequest {
                    tenant_id: tenant,
                    page_size,
                    page_token,
                }))
                .await?
                .into_inner();
            (
                r.orgs.into_iter().map(Into::into).collect(),
                r.next_page_token,
            )
        }
        MemberKind::Bot => {
            let r = registry
                .list_bots(caller.request(pb::ListBotsRequest {
                    tenant_id: tenant,
                    org_id: org,
                    page_size,
                    page_token,
                }))
                .await?
                .into_inner();
            (
                r.bots.into_iter().map(Into::into).collect(),
                r.next_page_token,
            )
        }
        MemberKind::User => {
            let r = registry
                .list_users(caller.request(pb::ListUsersRequest {
                    tenant_id: tenant,
                    org_id: org,
                    page_size,
                    page_token,
                }))
                .await?
                .into_inner();
            (
                r.users.into_iter().map(Into::into).collect(),
                r.next_page_token,
            )
        }
    };
    Ok(ApiJson(MemberList {
        items,
        next_page_token: Some(next).filter(|t| !t.is_empty()),
    }))
}

// ---- handlers: one per route, so each has its own OpenAPI entry ----

const ORG: MemberKind = MemberKind::Org;
const BOT: MemberKind = MemberKind::Bot;
const USER: MemberKind = MemberKind::User;

/// Create an org in a tenant.
#[utoipa::path(post, path = "/tenants/{tenant_id}/orgs", tag = "orgs", params(("tenant_id" = String, Path)), request_body = CreateMember,
    responses((status = 201, body = MemberView), (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json"),
              (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json"), (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn create_org(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(b): ApiJson<CreateMember>,
) -> Result<impl IntoResponse, Failure> {
    create(
        s,
        caller,
        ORG,
        At {
            tenant,
            org: String::new(),
            id: String::new(),
        },
        b,
    )
    .await
}

/// List a tenant's orgs.
#[utoipa::path(get, path = "/tenants/{tenant_id}/orgs", tag = "orgs", params(("tenant_id" = String, Path), PageQuery),
    responses((status = 200, body = MemberList), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn list_orgs(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<MemberList>, Failure> {
    list(s, caller, ORG, tenant, String::new(), q).await
}

/// Get an org.
#[utoipa::path(get, path = "/tenants/{tenant_id}/orgs/{org_id}", tag = "orgs", params(("tenant_id" = String, Path), ("org_id" = String, Path)),
    responses((status = 200, body = MemberView), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn get_org(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org)): ApiPath<(String, String)>,
) -> Result<ApiJson<MemberView>, Failure> {
    get(
        s,
        caller,
        ORG,
        At {
            tenant,
            org: org.clone(),
            id: org,
        },
    )
    .await
}

/// Change an org, if `version` is current.
#[utoipa::path(patch, path = "/tenants/{tenant_id}/orgs/{org_id}", tag = "orgs", params(("tenant_id" = String, Path), ("org_id" = String, Path)), request_body = PatchMember,
    responses((status = 200, body = MemberView), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json"), (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn patch_org(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<PatchMember>,
) -> Result<ApiJson<MemberView>, Failure> {
    patch(
        s,
        caller,
        ORG,
        At {
            tenant,
            org: org.clone(),
            id: org,
        },
        b,
    )
    .await
}

/// Delete an org with its bots and users.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/orgs/{org_id}", tag = "orgs", params(("tenant_id" = String, Path), ("org_id" = String, Path), DeleteQuery),
    responses((status = 204), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json"), (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn delete_org(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, Failure> {
    delete(
        s,
        caller,
        ORG,
        At {
            tenant,
            org: org.clone(),
            id: org,
        },
        q,
    )
    .await
}

/// Create a bot in an org.
#[utoipa::path(post, path = "/tenants/{tenant_id}/orgs/{org_id}/bots", tag = "bots", params(("tenant_id" = String, Path), ("org_id" = String, Path)), request_body = CreateMember,
    responses((status = 201, body = MemberView), (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json"),
              (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json"), (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn create_bot(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<CreateMember>,
) -> Result<impl IntoResponse, Failure> {
    create(
        s,
        caller,
        BOT,
        At {
            tenant,
            org,
            id: String::new(),
        },
        b,
    )
    .await
}

/// List an org's bots.
#[utoipa::path(get, path = "/tenants/{tenant_id}/orgs/{org_id}/bots", tag = "bots", params(("tenant_id" = String, Path), ("org_id" = String, Path), PageQuery),
    responses((status = 200, body = MemberList), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn list_bots(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<MemberList>, Failure> {
    list(s, caller, BOT, tenant, org, q).await
}

/// Get a bot.
#[utoipa::path(get, path = "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}", tag = "bots",
    params(("tenant_id" = String, Path), ("org_id" = String, Path), ("bot_id" = String, Path)),
    responses((status = 200, body = MemberView), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn get_bot(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org, id)): ApiPath<(String, String, String)>,
) -> Result<ApiJson<MemberView>, Failure> {
    get(s, caller, BOT, At { tenant, org, id }).await
}

/// Change a bot, if `version` is current.
#[utoipa::path(patch, path = "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}", tag = "bots",
    params(("tenant_id" = String, Path), ("org_id" = String, Path), ("bot_id" = String, Path)), request_body = PatchMember,
    responses((status = 200, body = MemberView), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json"), (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn patch_bot(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org, id)): ApiPath<(String, String, String)>,
    ApiJson(b): ApiJson<PatchMember>,
) -> Result<ApiJson<MemberView>, Failure> {
    patch(s, caller, BOT, At { tenant, org, id }, b).await
}

/// Delete a bot.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}", tag = "bots",
    params(("tenant_id" = String, Path), ("org_id" = String, Path), ("bot_id" = String, Path), DeleteQuery),
    responses((status = 204), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn delete_bot(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org, id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, Failure> {
    delete(s, caller, BOT, At { tenant, org, id }, q).await
}

/// Create a user in an org.
#[utoipa::path(post, path = "/tenants/{tenant_id}/orgs/{org_id}/users", tag = "users", params(("tenant_id" = String, Path), ("org_id" = String, Path)), request_body = CreateUser,
    responses((status = 201, body = MemberView), (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json"),
              (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json"), (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn create_user(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<CreateUser>,
) -> Result<impl IntoResponse, Failure> {
    create(
        s,
        caller,
        USER,
        At {
            tenant,
            org,
            id: String::new(),
        },
        b.into(),
    )
    .await
}

/// List an org's users.
#[utoipa::path(get, path = "/tenants/{tenant_id}/orgs/{org_id}/users", tag = "users", params(("tenant_id" = String, Path), ("org_id" = String, Path), PageQuery),
    responses((status = 200, body = MemberList), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn list_users(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<MemberList>, Failure> {
    list(s, caller, USER, tenant, org, q).await
}

/// Get a user.
#[utoipa::path(get, path = "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = String, Path), ("org_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, body = MemberView), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn get_user(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org, id)): ApiPath<(String, String, String)>,
) -> Result<ApiJson<MemberView>, Failure> {
    get(s, caller, USER, At { tenant, org, id }).await
}

/// Change a user, if `version` is current.
#[utoipa::path(patch, path = "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = String, Path), ("org_id" = String, Path), ("user_id" = String, Path)), request_body = PatchUser,
    responses((status = 200, body = MemberView), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json"), (status = 409, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn patch_user(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org, id)): ApiPath<(String, String, String)>,
    ApiJson(b): ApiJson<PatchUser>,
) -> Result<ApiJson<MemberView>, Failure> {
    patch(s, caller, USER, At { tenant, org, id }, b.into()).await
}

/// Delete a user.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = String, Path), ("org_id" = String, Path), ("user_id" = String, Path), DeleteQuery),
    responses((status = 204), (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json")))]
pub async fn delete_user(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((tenant, org, id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, Failure> {
    delete(s, caller, USER, At { tenant, org, id }, q).await
}
