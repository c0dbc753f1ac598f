//! Connections to integrations at every owner scope, over the OAuth broker:
//! `GET …/integrations`,
//! `POST|GET|DELETE …/integrations/{integration}/credentials` and
//! `POST …/integrations/{integration}/refresh`, where `…` is
//! `/tenants/{tenant_id}`, `…/orgs/{org_id}`, `…/orgs/{org_id}/bots/{bot_id}`
//! or `…/orgs/{org_id}/users/{user_id}`; the connection's name is the
//! owner's followed by `/integrations/{integration}`
//! (`tenants/acme/orgs/sales/bots/helper/integrations/slack`).
//!
//! Every scope's routes do the same thing, so each operation is written
//! once over the [`ConnectionPath`] read from the path (its ids checked by
//! [`ApiPath`], each named as the caller sent it), and [`scope_routes!`]
//! stamps out the documented handlers of each scope.
//!
//! The edge authorizes first (another tenant answers as absent), then the
//! broker checks again with the forwarded principal. Token values never
//! reach the edge: the broker answers connections as metadata only, and
//! the edge may not call GetAccessToken (the broker's allow-list).

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use locksmith_auth::Access;
use locksmith_errors::ApiError;
use locksmith_proto::broker::v1 as pb;
use serde::Deserialize;

use super::{integrations::from_broker, missing};
use crate::{
    AppState,
    auth::Caller,
    dto::{ConnectionList, ConnectionView, PageQuery, Revoked, StoreCredentialsBody},
    extract::ApiJson,
    problem::Failure,
};

/// What the `integration` path parameter is.
pub(crate) const INTEGRATION_PARAM: &str =
    "The integration (`github`): a shipped catalog entry or one of the tenant's custom providers";

/// The path parameters of a connection route at any scope. [`ApiPath`]
/// has checked each id by its name before this is read.
///
/// [`ApiPath`]: crate::extract::ApiPath
#[derive(Debug, Deserialize)]
pub struct ConnectionPath {
    tenant_id: String,
    #[serde(default)]
    org_id: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    integration: Option<String>,
}

impl ConnectionPath {
    /// The owner's resource name: `tenants/{t}[/orgs/{o}[/bots/{b}|/users/{u}]]`.
    fn owner(&self) -> String {
        let mut owner = format!("tenants/{}", self.tenant_id);
        if let Some(org) = &self.org_id {
            owner.push_str(&format!("/orgs/{org}"));
            if let Some(bot) = &self.bot_id {
                owner.push_str(&format!("/bots/{bot}"));
            } else if let Some(user) = &self.user_id {
                owner.push_str(&format!("/users/{user}"));
            }
        }
        owner
    }

    /// The connection's resource name.
    fn connection(&self) -> Result<String, Failure> {
        let Some(integration) = &self.integration else {
            tracing::error!("a connection handler is routed to a path without an integration");
            return Err(Failure(ApiError::internal()));
        };
        Ok(format!("{}/integrations/{integration}", self.owner()))
    }
}

fn view(connection: Option<pb::Connection>) -> Result<ApiJson<ConnectionView>, Failure> {
    connection
        .map(|c| ApiJson(ConnectionView::from(c)))
        .ok_or_else(|| missing("connection"))
}

async fn list(
    state: AppState,
    caller: Caller,
    at: ConnectionPath,
    q: PageQuery,
) -> Result<ApiJson<ConnectionList>, Failure> {
    caller.authorize(&at.tenant_id, Access::Read)?;
    let answer = state
        .backends
        .broker
        .clone()
        .list_connections(caller.request(pb::ListConnectionsRequest {
            parent: at.owner(),
            page_size: q.page_size.unwrap_or_default(),
            page_token: q.page_token.unwrap_or_default(),
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    Ok(ApiJson(ConnectionList {
        connections: answer.connections.into_iter().map(Into::into).collect(),
        next_page_token: Some(answer.next_page_token).filter(|t| !t.is_empty()),
    }))
}

async fn store_credentials(
    state: AppState,
    caller: Caller,
    at: ConnectionPath,
    body: StoreCredentialsBody,
) -> Result<ApiJson<ConnectionView>, Failure> {
    caller.authorize(&at.tenant_id, Access::Write)?;
    let request = body.into_request(at.connection()?);
    let answer = state
        .backends
        .broker
        .clone()
        .store_credentials(caller.request(request))
        .await
        .map_err(from_broker)?
        .into_inner();
    view(answer.connection)
}

async fn get_credentials(
    state: AppState,
    caller: Caller,
    at: ConnectionPath,
) -> Result<ApiJson<ConnectionView>, Failure> {
    caller.authorize(&at.tenant_id, Access::Read)?;
    let answer = state
        .backends
        .broker
        .clone()
        .get_connection(caller.request(pb::GetConnectionRequest {
            name: at.connection()?,
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    view(answer.connection)
}

async fn delete_credentials(
    state: AppState,
    caller: Caller,
    at: ConnectionPath,
) -> Result<Response, Failure> {
    caller.authorize(&at.tenant_id, Access::Write)?;
    let answer = state
        .backends
        .broker
        .clone()
        .delete_connection(caller.request(pb::DeleteConnectionRequest {
            name: at.connection()?,
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    Ok(if answer.revoked_at_provider {
        ApiJson(Revoked {
            revoked_at_provider: true,
        })
        .into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn refresh(
    state: AppState,
    caller: Caller,
    at: ConnectionPath,
) -> Result<ApiJson<ConnectionView>, Failure> {
    caller.authorize(&at.tenant_id, Access::Write)?;
    let answer = state
        .backends
        .broker
        .clone()
        .refresh_connection(caller.request(pb::RefreshConnectionRequest {
            name: at.connection()?,
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    view(answer.connection)
}

/// The documented handlers of one scope's connection routes, in a module
/// of their own: `$list`, `$item` and `$refresh` are the routes' paths,
/// `$params` the path parameters before the integration, `ids` the
/// operation ids.
macro_rules! scope_routes {
    (
        $module:ident, owner = $owner:literal,
        list = $list:literal, item = $item:literal, refresh = $refresh:literal,
        params = [$($param:literal),*],
        ids = [$list_id:literal, $store_id:literal, $get_id:literal, $delete_id:literal, $refresh_id:literal]
    ) => {
        #[doc = concat!("Connection routes of ", $owner, ", under `", $list, "`.")]
        pub mod $module {
            use axum::{extract::State, response::Response};

            use super::{ConnectionPath, INTEGRATION_PARAM};
            use crate::{
                AppState,
                auth::Caller,
                dto::{ConnectionList, ConnectionView, PageQuery, Revoked, StoreCredentialsBody},
                extract::{ApiJson, ApiPath, ApiQuery},
                problem::Failure,
            };

            /// List the owner's own connections (metadata only), by integration.
            #[utoipa::path(get, path = $list, operation_id = $list_id, tag = "integrations",
                params($(($param = String, Path),)* PageQuery),
                responses((status = 200, body = ConnectionList)))]
            pub async fn list(
                State(s): State<AppState>,
                caller: Caller,
                ApiPath(at): ApiPath<ConnectionPath>,
                ApiQuery(q): ApiQuery<PageQuery>,
            ) -> Result<ApiJson<ConnectionList>, Failure> {
                super::list(s, caller, at, q).await
            }

            /// Store credentials without a flow: an API key, a user name and password,
            /// imported tokens, or a client-credentials connection. Replaces the
            /// connection's credentials; the values are never answered.
            #[utoipa::path(post, path = $item, operation_id = $store_id, tag = "integrations",
                params($(($param = String, Path),)* ("integration" = String, Path, description = INTEGRATION_PARAM)),
                request_body = StoreCredentialsBody,
                responses((status = 200, body = ConnectionView),
                          (status = 422, body = locksmith_errors::Problem, content_type = "application/problem+json",
                           description = "The provider refused the client credentials")))]
            pub async fn store_credentials(
                State(s): State<AppState>,
                caller: Caller,
                ApiPath(at): ApiPath<ConnectionPath>,
                ApiJson(body): ApiJson<StoreCredentialsBody>,
            ) -> Result<ApiJson<ConnectionView>, Failure> {
                super::store_credentials(s, caller, at, body).await
            }

            /// Show a connection: metadata, never token values.
            #[utoipa::path(get, path = $item, operation_id = $get_id, tag = "integrations",
                params($(($param = String, Path),)* ("integration" = String, Path, description = INTEGRATION_PARAM)),
                responses((status = 200, body = ConnectionView)))]
            pub async fn get_credentials(
                State(s): State<AppState>,
                caller: Caller,
                ApiPath(at): ApiPath<ConnectionPath>,
            ) -> Result<ApiJson<ConnectionView>, Failure> {
                super::get_credentials(s, caller, at).await
            }

            /// Revoke a connection's tokens at the provider (when it offers
            /// revocation) and erase the stored credentials.
            #[utoipa::path(delete, path = $item, operation_id = $delete_id, tag = "integrations",
                params($(($param = String, Path),)* ("integration" = String, Path, description = INTEGRATION_PARAM)),
                responses((status = 200, body = Revoked, description = "Erased; the provider confirmed the revocation"),
                          (status = 204, description = "Erased; the provider offers no revocation or did not confirm it")))]
            pub async fn delete_credentials(
                State(s): State<AppState>,
                caller: Caller,
                ApiPath(at): ApiPath<ConnectionPath>,
            ) -> Result<Response, Failure> {
                super::delete_credentials(s, caller, at).await
            }

            /// Refresh a connection's tokens now (one refresh at a time across every
            /// broker replica); answers the connection after it.
            #[utoipa::path(post, path = $refresh, operation_id = $refresh_id, tag = "integrations",
                params($(($param = String, Path),)* ("integration" = String, Path, description = INTEGRATION_PARAM)),
                responses((status = 200, body = ConnectionView),
                          (status = 422, body = locksmith_errors::Problem, content_type = "application/problem+json",
                           description = "The provider refused the refresh (the connection needs \
                               re-authorization), or the connection has nothing to refresh")))]
            pub async fn refresh(
                State(s): State<AppState>,
                caller: Caller,
                ApiPath(at): ApiPath<ConnectionPath>,
            ) -> Result<ApiJson<ConnectionView>, Failure> {
                super::refresh(s, caller, at).await
            }
        }
    };
}

scope_routes!(
    tenant,
    owner = "the tenant",
    list = "/tenants/{tenant_id}/integrations",
    item = "/tenants/{tenant_id}/integrations/{integration}/credentials",
    refresh = "/tenants/{tenant_id}/integrations/{integration}/refresh",
    params = ["tenant_id"],
    ids = [
        "list_connections",
        "store_credentials",
        "get_connection",
        "delete_connection",
        "refresh_connection"
    ]
);
scope_routes!(
    org,
    owner = "an org",
    list = "/tenants/{tenant_id}/orgs/{org_id}/integrations",
    item = "/tenants/{tenant_id}/orgs/{org_id}/integrations/{integration}/credentials",
    refresh = "/tenants/{tenant_id}/orgs/{org_id}/integrations/{integration}/refresh",
    params = ["tenant_id", "org_id"],
    ids = [
        "list_org_connections",
        "store_org_credentials",
        "get_org_connection",
        "delete_org_connection",
        "refresh_org_connection"
    ]
);
scope_routes!(
    bot,
    owner = "a bot",
    list = "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}/integrations",
    item =
        "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}/integrations/{integration}/credentials",
    refresh = "/tenants/{tenant_id}/orgs/{org_id}/bots/{bot_id}/integrations/{integration}/refresh",
    params = ["tenant_id", "org_id", "bot_id"],
    ids = [
        "list_bot_connections",
        "store_bot_credentials",
        "get_bot_connection",
        "delete_bot_connection",
        "refresh_bot_connection"
    ]
);
scope_routes!(
    user,
    owner = "a user",
    list = "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}/integrations",
    item =
        "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}/integrations/{integration}/credentials",
    refresh =
        "/tenants/{tenant_id}/orgs/{org_id}/users/{user_id}/integrations/{integration}/refresh",
    params = ["tenant_id", "org_id", "user_id"],
    ids = [
        "list_user_connections",
        "store_user_credentials",
        "get_user_connection",
        "delete_user_connection",
        "refresh_user_connection"
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    fn path(org: Option<&str>, bot: Option<&str>, user: Option<&str>) -> ConnectionPath {
        ConnectionPath {
            tenant_id: "acme".into(),
            org_id: org.map(Into::into),
            bot_id: bot.map(Into::into),
            user_id: user.map(Into::into),
            integration: Some("slack".into()),
        }
    }

    #[test]
    fn each_scope_names_its_connections_under_its_owner() {
        assert_eq!(
            path(None, None, None).connection().unwrap(),
            "tenants/acme/integrations/slack"
        );
        assert_eq!(
            path(Some("sales"), None, None).connection().unwrap(),
            "tenants/acme/orgs/sales/integrations/slack"
        );
        assert_eq!(
            path(Some("sales"), Some("helper"), None)
                .connection()
                .unwrap(),
            "tenants/acme/orgs/sales/bots/helper/integrations/slack"
        );
        assert_eq!(
            path(Some("sales"), None, Some("u1")).owner(),
            "tenants/acme/orgs/sales/users/u1"
        );
        let mut no_integration = path(None, None, None);
        no_integration.integration = None;
        assert!(no_integration.connection().is_err());
    }
}
