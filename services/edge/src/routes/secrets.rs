//! Secrets at every scope, over the credential store:
//! `GET …/secrets` (names only), `GET|PUT|DELETE …/secrets/{name}` and
//! `GET …/resolve/{name}`, where `…` is `/system` (no resolve: nothing is
//! above it), `/tenants/{tenant_id}`, `…/orgs/{org_id}`,
//! `…/orgs/{org_id}/bots/{bot_id}` or `…/orgs/{org_id}/users/{user_id}`.
//!
//! Every scope's routes do the same thing, so each operation is written once
//! over the [`SecretTarget`] read from the path, and [`scope_routes!`] stamps
//! out the documented handler of each route.
//!
//! The edge authorizes first (a tenant principal reaches only its tenant and
//! sees another's as absent; the system scope is for operators), then the
//! credential store checks again with the forwarded principal and audits.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use locksmith_auth::Access;
use locksmith_domain::{
    Scope,
    secrets::{SecretName, SecretRef},
};
use locksmith_errors::ApiError;
use locksmith_proto::{credstore::v1 as pb, registry::v1 as registry_pb};

use super::missing;
use crate::{
    AppState,
    auth::Caller,
    dto::{PageQuery, PutSecret, SecretList, SecretVersionQuery, SecretView, SecretWritten},
    extract::{ApiJson, secret_path::SecretTarget},
    problem::Failure,
};

/// What the `name` path parameter is.
pub(crate) const NAME_PARAM: &str = "The secret's name at its scope. A name of several segments \
    (`api-keys/openai`) is written as that many path segments; `%2F` is refused.";

/// Checks that the caller may act on `scope` with `access`.
fn authorize(caller: &Caller, scope: &Scope, access: Access) -> Result<(), Failure> {
    match scope.tenant() {
        Some(tenant) => caller.authorize(tenant.as_str(), access),
        // The suite's own credentials: operators only, over HTTP.
        None => caller.require_operator(),
    }
}

fn route_mismatch() -> Failure {
    tracing::error!("a secret handler is routed to a path of another kind");
    Failure(ApiError::internal())
}

fn secret_of(target: SecretTarget) -> Result<SecretRef, Failure> {
    match target {
        SecretTarget::Secret(s) => Ok(s),
        _ => Err(route_mismatch()),
    }
}

async fn list(
    state: AppState,
    caller: Caller,
    target: SecretTarget,
    q: PageQuery,
) -> Result<ApiJson<SecretList>, Failure> {
    let SecretTarget::List(scope) = target else {
        return Err(route_mismatch());
    };
    authorize(&caller, &scope, Access::Read)?;
    let parent = scope.storage_path();
    let answer = state
        .backends
        .credstore
        .clone()
        .list_secrets(caller.request(pb::ListSecretsRequest {
            parent: parent.clone(),
            page_size: q.page_size.unwrap_or_default(),
            page_token: q.page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    let prefix = format!("{parent}/secrets/");
    let names = answer
        .names
        .iter()
        .map(|n| {
            n.strip_prefix(&prefix)
                .filter(|name| SecretName::parse(name, &scope).is_ok())
                .map(str::to_owned)
                .ok_or_else(|| missing("secret name of its scope"))
        })
        .collect::<Result<_, _>>()?;
    Ok(ApiJson(SecretList {
        names,
        next_page_token: Some(answer.next_page_token).filter(|t| !t.is_empty()),
    }))
}

async fn get(
    state: AppState,
    caller: Caller,
    target: SecretTarget,
    q: SecretVersionQuery,
) -> Result<ApiJson<SecretView>, Failure> {
    let secret = secret_of(target)?;
    authorize(&caller, &secret.scope, Access::Read)?;
    let answer = state
        .backends
        .credstore
        .clone()
        .get_secret(caller.request(pb::GetSecretRequest {
            name: secret.resource_name(),
            version: q.version.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    let view = answer
        .secret
        .and_then(SecretView::from_pb)
        .ok_or_else(|| missing("secret"))?;
    Ok(ApiJson(view))
}

/// A write at an org, bot or user scope needs that member to exist: the
/// credential store knows tenants (by their keys) but not the registry's
/// members, so without this a secret could be stored for a bot nobody
/// created, and be found by whoever creates it later. The registry's own
/// NOT_FOUND (naming the member) is the answer.
async fn require_member(state: &AppState, caller: &Caller, scope: &Scope) -> Result<(), Failure> {
    let mut registry = state.backends.registry.clone();
    match scope {
        Scope::Org { tenant, org } => {
            registry
                .get_org(caller.request(registry_pb::GetOrgRequest {
                    tenant_id: tenant.to_string(),
                    org_id: org.to_string(),
                }))
                .await?;
        }
        Scope::Bot { tenant, org, bot } => {
            registry
                .get_bot(caller.request(registry_pb::GetBotRequest {
                    tenant_id: tenant.to_string(),
                    org_id: org.to_string(),
                    bot_id: bot.to_string(),
                }))
                .await?;
        }
        Scope::User { tenant, org, user } => {
            registry
                .get_user(caller.request(registry_pb::GetUserRequest {
                    tenant_id: tenant.to_string(),
                    org_id: org.to_string(),
                    user_id: user.to_string(),
                }))
                .await?;
        }
        Scope::System | Scope::Tenant(_) => {}
    }
    Ok(())
}

async fn put(
    state: AppState,
    caller: Caller,
    target: SecretTarget,
    body: PutSecret,
) -> Result<Response, Failure> {
    let secret = secret_of(target)?;
    authorize(&caller, &secret.scope, Access::Write)?;
    require_member(&state, &caller, &secret.scope).await?;
    let resource = secret.resource_name();
    let answer = state
        .backends
        .credstore
        .clone()
        .put_secret(caller.request(body.into_request(resource.clone())))
        .await?
        .into_inner();
    let written = SecretWritten {
        name: secret.name.as_str().to_owned(),
        scope: secret.scope.storage_path(),
        version: answer.version,
    };
    // The resource name is the secret's path under the edge's root.
    Ok(if written.version == 1 {
        (
            StatusCode::CREATED,
            [(header::LOCATION, format!("/{resource}"))],
            ApiJson(written),
        )
            .into_response()
    } else {
        ApiJson(written).into_response()
    })
}

async fn delete(
    state: AppState,
    caller: Caller,
    target: SecretTarget,
    q: SecretVersionQuery,
) -> Result<StatusCode, Failure> {
    let secret = secret_of(target)?;
    authorize(&caller, &secret.scope, Access::Write)?;
    state
        .backends
        .credstore
        .clone()
        .delete_secret(caller.request(pb::DeleteSecretRequest {
            name: secret.resource_name(),
            versions: q.version.into_iter().collect(),
        }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn resolve(
    state: AppState,
    caller: Caller,
    target: SecretTarget,
) -> Result<ApiJson<SecretView>, Failure> {
    let SecretTarget::Resolve(secret) = target else {
        return Err(route_mismatch());
    };
    authorize(&caller, &secret.scope, Access::Read)?;
    let answer = state
        .backends
        .credstore
        .clone()
        .resolve_secret(caller.request(pb::ResolveSecretRequest {
            name: secret.resource_name(),
        }))
        .await?
        .into_inner();
    let view = answer
        .secret
        .and_then(SecretView::from_pb)
        .ok_or_else(|| missing("resolved secret"))?;
    Ok(ApiJson(view))
}

/// The documented handlers of one scope's secret routes, in a module of
/// their own: `$list` and `$item` are the routes' paths, `$params` the path
/// parameters before the name, `$id` the operation ids' scope word.
macro_rules! scope_routes {
    (
        $module:ident, tag = $tag:literal, list = $list:literal, item = $item:literal,
        params = [$($param:literal),*],
        ids = [$list_id:literal, $get_id:literal, $put_id:literal, $delete_id:literal]
    ) => {
        #[doc = concat!("Secret routes under `", $list, "`.")]
        pub mod $module {
            use axum::{extract::State, http::StatusCode, response::Response};

            use super::NAME_PARAM;
            use crate::{
                AppState,
                auth::Caller,
                dto::{PageQuery, PutSecret, SecretList, SecretVersionQuery, SecretView, SecretWritten},
                extract::{ApiJson, ApiQuery, secret_path::SecretTarget},
                problem::Failure,
            };

            /// List the names of the scope's own secrets (never values).
            #[utoipa::path(get, path = $list, operation_id = $list_id, tag = $tag,
                params($(($param = String, Path),)* PageQuery),
                responses((status = 200, body = SecretList)))]
            pub async fn list(
                State(s): State<AppState>,
                caller: Caller,
                target: SecretTarget,
                ApiQuery(q): ApiQuery<PageQuery>,
            ) -> Result<ApiJson<SecretList>, Failure> {
                super::list(s, caller, target, q).await
            }

            /// Read a secret: its latest version, or `?version=`.
            #[utoipa::path(get, path = $item, operation_id = $get_id, tag = $tag,
                params($(($param = String, Path),)* ("name" = String, Path, description = NAME_PARAM), SecretVersionQuery),
                responses((status = 200, body = SecretView)))]
            pub async fn get(
                State(s): State<AppState>,
                caller: Caller,
                target: SecretTarget,
                ApiQuery(q): ApiQuery<SecretVersionQuery>,
            ) -> Result<ApiJson<SecretView>, Failure> {
                super::get(s, caller, target, q).await
            }

            /// Write a new version of a secret (check-and-set with `expected_version`).
            #[utoipa::path(put, path = $item, operation_id = $put_id, tag = $tag,
                params($(($param = String, Path),)* ("name" = String, Path, description = NAME_PARAM)),
                request_body = PutSecret,
                responses((status = 200, body = SecretWritten, description = "A new version of an existing secret"),
                          (status = 201, body = SecretWritten, description = "The secret's first version",
                           headers(("Location" = String, description = "The secret's path")))))]
            pub async fn put(
                State(s): State<AppState>,
                caller: Caller,
                target: SecretTarget,
                ApiJson(body): ApiJson<PutSecret>,
            ) -> Result<Response, Failure> {
                super::put(s, caller, target, body).await
            }

            /// Soft-delete a secret's latest version, or `?version=`.
            #[utoipa::path(delete, path = $item, operation_id = $delete_id, tag = $tag,
                params($(($param = String, Path),)* ("name" = String, Path, description = NAME_PARAM), SecretVersionQuery),
                responses((status = 204, description = "Deleted")))]
            pub async fn delete(
                State(s): State<AppState>,
                caller: Caller,
                target: SecretTarget,
                ApiQuery(q): ApiQuery<SecretVersionQuery>,
            ) -> Result<StatusCode, Failure> {
                super::delete(s, caller, target, q).await
            }
        }
    };
}

/// The documented resolve handler of one scope.
macro_rules! resolve_route {
    ($name:ident, tag = $tag:literal, path = $path:literal, params = [$($param:literal),*], id = $id:literal) => {
        /// Resolve a name from this scope upwards (bot or user, org, tenant,
        /// system): the first secret found, and the scope that answered it.
        #[utoipa::path(get, path = $path, operation_id = $id, tag = $tag,
            params($(($param = String, Path),)* ("name" = String, Path, description = NAME_PARAM)),
            responses((status = 200, body = SecretView)))]
        pub async fn $name(
            State(s): State<AppState>,
            caller: Caller,
            target: SecretTarget,
        ) -> Result<ApiJson<SecretView>, Failure> {
            resolve(s, caller, target).await
        }
    };
}

scope_routes!(
    system,
    tag = "secrets",
    list = "/system/secrets",
    item = "/system/secrets/{name}",
    params = [],
    ids = [
        "list_system_secrets",
        "get_system_secret",
        "put_system_secret",
        "delete_system_secret"
    ]
);
scope_routes!(
    tenant,
    tag = "secrets",
    list = "/tenants/{tenant_id}/secrets",
    item = "/tenants/{tenant_id}/secrets/{name}",
    params = ["tenant_id"],
    ids = [
        "list_tenant_secrets",
        "get_tenant_secret",
        "put_tenant_secret",
        "delete_tenant_secret"
    ]
);
scope_routes!(
    org,
    tag = "secrets",
    list = "/tenants/{tenant_id}/orgs/{org_id}/secrets",
    item = "/tenants/{tenant_id}/orgs/{org_id}/secrets/{name}",
    params = ["tenant_id", "org_id"],
    ids = [
        "list_org_secrets",
        "get_org_secret",
        "put_org_secret",
        "delete_org_secret"
    ]
);
scope_routes!(
    bot,
    tag = "secrets",
    list = "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}/secrets",
    item = "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}/secrets/{name}",
    params = ["tenant_id", "org_id", "bot_id"],
    ids = [
        "list_bot_secrets",
        "get_bot_secret",
        "put_bot_secret",
        "delete_bot_secret"
    ]
);
scope_routes!(
    user,
    tag = "secrets",
    list = "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}/secrets",
    item = "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}/secrets/{name}",
    params = ["tenant_id", "org_id", "user_id"],
    ids = [
        "list_user_secrets",
        "get_user_secret",
        "put_user_secret",
        "delete_user_secret"
    ]
);

resolve_route!(
    resolve_tenant,
    tag = "secrets",
    path = "/tenants/{tenant_id}/resolve/{name}",
    params = ["tenant_id"],
    id = "resolve_tenant_secret"
);
resolve_route!(
    resolve_org,
    tag = "secrets",
    path = "/tenants/{tenant_id}/orgs/{org_id}/resolve/{name}",
    params = ["tenant_id", "org_id"],
    id = "resolve_org_secret"
);
resolve_route!(
    resolve_bot,
    tag = "secrets",
    path = "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}/resolve/{name}",
    params = ["tenant_id", "org_id", "bot_id"],
    id = "resolve_bot_secret"
);
resolve_route!(
    resolve_user,
    tag = "secrets",
    path = "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}/resolve/{name}",
    params = ["tenant_id", "org_id", "user_id"],
    id = "resolve_user_secret"
);
