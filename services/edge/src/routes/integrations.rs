//! Connections to integrations, over the OAuth broker:
//! `POST /oauth/authorize/{integration}` (start a flow),
//! `GET /oauth/callback/{integration}` (the provider's redirect; anonymous,
//! trusted only through the single-use state), and a tenant's connections:
//! `GET /tenants/{tenant_id}/integrations`,
//! `POST|GET|DELETE /tenants/{tenant_id}/integrations/{integration}/credentials`,
//! `POST /tenants/{tenant_id}/integrations/{integration}/refresh`.
//!
//! The edge authorizes first (another tenant answers as absent), then the
//! broker checks again with the forwarded principal. Token values never
//! reach the edge: the broker answers connections as metadata only, and
//! the edge may not call GetAccessToken (the broker's allow-list).

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use locksmith_auth::Access;
use locksmith_domain::MemberId;
use locksmith_errors::{ApiError, ErrorCode, FieldViolation};
use locksmith_proto::broker::v1 as pb;

use super::missing;
use crate::{
    AppState,
    auth::Caller,
    dto::{
        Authorization, AuthorizeBody, ConnectionList, ConnectionView, PageQuery, Revoked,
        StoreCredentialsBody,
    },
    extract::{ApiJson, ApiPath, ApiQuery},
    problem::{self, Failure},
};

/// The broker's field names in the HTTP API's terms. The broker names its
/// request's fields; the caller sent a path, a query or a body.
fn broker_field(field: &str) -> String {
    const CREDENTIALS: &[&str] = &["api_key.", "basic.", "tokens.", "client_credentials."];
    const SAME: &[&str] = &[
        "integration",
        "state",
        "code",
        "error",
        "redirect_uri",
        "return_url",
        "inputs",
        "scopes",
        "credentials",
        "page_size",
        "page_token",
    ];
    if field == "name" {
        // A connection's name is built from the path; its integration is
        // the part the edge does not check against the catalog.
        "integration".to_owned()
    } else if CREDENTIALS.iter().any(|p| field.starts_with(p)) {
        format!("credentials.{field}")
    } else if SAME.contains(&field) || field.starts_with("inputs.") || field.starts_with("scopes[")
    {
        field.to_owned()
    } else {
        problem::http_field(field)
    }
}

fn from_broker(status: tonic::Status) -> Failure {
    Failure::from_status_naming(status, broker_field)
}

fn connection_name(tenant: &str, integration: &str) -> String {
    format!("tenants/{tenant}/integrations/{integration}")
}

fn view(connection: Option<pb::Connection>) -> Result<ApiJson<ConnectionView>, Failure> {
    connection
        .map(|c| ApiJson(ConnectionView::from(c)))
        .ok_or_else(|| missing("connection"))
}

/// The owner's resource name from the body's ids, each checked here so a
/// bad one is named as the caller sent it.
fn owner_of(body: &AuthorizeBody) -> Result<String, Failure> {
    let mut violations = Vec::new();
    let mut check = |field: &str, value: &Option<String>| {
        if let Some(v) = value
            && let Err(e) = MemberId::parse(v)
        {
            violations.push(FieldViolation {
                field: field.to_owned(),
                description: e.to_string(),
            });
        }
    };
    check("org_id", &body.org_id);
    check("bot_id", &body.bot_id);
    check("user_id", &body.user_id);
    if body.org_id.is_none() {
        for (field, value) in [("bot_id", &body.bot_id), ("user_id", &body.user_id)] {
            if value.is_some() {
                violations.push(FieldViolation {
                    field: field.to_owned(),
                    description: "needs org_id".to_owned(),
                });
            }
        }
    }
    if body.bot_id.is_some() && body.user_id.is_some() {
        violations.push(FieldViolation {
            field: "user_id".to_owned(),
            description: "cannot be given with bot_id".to_owned(),
        });
    }
    if !violations.is_empty() {
        return Err(Failure(problem::invalid(violations)));
    }
    let mut owner = format!("tenants/{}", body.tenant_id);
    if let Some(org) = &body.org_id {
        owner.push_str(&format!("/orgs/{org}"));
        if let Some(bot) = &body.bot_id {
            owner.push_str(&format!("/bots/{bot}"));
        } else if let Some(user) = &body.user_id {
            owner.push_str(&format!("/users/{user}"));
        }
    }
    Ok(owner)
}

/// Start an OAuth authorization-code flow: answers the provider URL to send
/// the user's browser to. Needs the write role on the owner's tenant.
#[utoipa::path(post, path = "/oauth/authorize/{integration}", operation_id = "start_authorization", tag = "integrations",
    params(("integration" = String, Path, description = "The integration (`github`)")),
    request_body = AuthorizeBody,
    responses((status = 200, body = Authorization),
              (status = 422, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The provider or its OAuth app cannot be used")))]
pub async fn authorize(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(integration): ApiPath<String>,
    ApiJson(body): ApiJson<AuthorizeBody>,
) -> Result<ApiJson<Authorization>, Failure> {
    caller.authorize(&body.tenant_id, Access::Write)?;
    let owner = owner_of(&body)?;
    let answer = state
        .backends
        .broker
        .clone()
        .start_authorization(caller.request(pb::StartAuthorizationRequest {
            owner,
            integration,
            scopes: body.scopes.unwrap_or_default(),
            return_url: body.return_url.unwrap_or_default(),
            inputs: body.inputs.unwrap_or_default(),
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    Ok(ApiJson(answer.into()))
}

/// The callback's query parameters; a provider's others (`iss`, `scope`,
/// `session_state`) are ignored, each of these may be given once.
#[derive(Default)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn callback_query(raw: Option<&str>) -> Result<CallbackQuery, Failure> {
    let mut q = CallbackQuery::default();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let slot = match name.as_ref() {
            "state" => &mut q.state,
            "code" => &mut q.code,
            "error" => &mut q.error,
            "error_description" => &mut q.error_description,
            _ => continue,
        };
        if slot.is_some() {
            return Err(Failure(problem::invalid_field(&name, problem::GIVEN_TWICE)));
        }
        *slot = Some(value.into_owned());
    }
    if q.state.as_deref().unwrap_or_default().is_empty() {
        return Err(Failure(problem::invalid_field("state", "is required")));
    }
    Ok(q)
}

/// `url` with `name=value` added to its query.
fn with_query(url: &str, name: &str, value: &str) -> Result<String, Failure> {
    let mut url = reqwest::Url::parse(url).map_err(|_| {
        tracing::error!("the broker answered a return URL that does not parse");
        Failure(ApiError::internal())
    })?;
    url.query_pairs_mut().append_pair(name, value);
    Ok(url.into())
}

/// The provider's redirect at the end of a flow. Anonymous: trusted only
/// through the single-use `state` (a tenant credential, if one is sent,
/// confines the state to that tenant). Sends the browser to the flow's
/// return URL with `?connection=<name>`, or answers the connection.
#[utoipa::path(get, path = "/oauth/callback/{integration}", operation_id = "complete_authorization", tag = "integrations",
    params(("integration" = String, Path, description = "The integration the flow was started for"),
           ("state" = String, Query, description = "The state the flow was started with"),
           ("code" = Option<String>, Query, description = "The authorization code"),
           ("error" = Option<String>, Query, description = "The provider's error code (`access_denied`)"),
           ("error_description" = Option<String>, Query, description = "The provider's text; never stored or repeated")),
    responses((status = 200, body = ConnectionView, description = "The connection, when the flow has no return URL"),
              (status = 303, description = "To the flow's return URL, with `connection=<name>` added to its query",
               headers(("Location" = String, description = "The return URL"))),
              (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "An unknown, expired or used state, another integration's, or no code"),
              (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The integration is no longer offered"),
              (status = 422, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The provider refused the flow (`access_denied`) or the code; nothing is stored"),
              (status = 500, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The edge or the broker failed"),
              (status = 503, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The broker, the credential store or the provider is unavailable, or the edge has no public_url"),
              (status = 504, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The request took too long")))]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(integration): ApiPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let q = callback_query(raw.as_deref())?;
    let Some(public_url) = state.public_url.as_deref() else {
        return Err(Failure(ApiError::new(
            ErrorCode::Unavailable,
            "the edge has no public_url configured, so it cannot complete OAuth flows",
        )));
    };
    let redirect_uri = format!("{public_url}/oauth/callback/{integration}");
    let mut request = tonic::Request::new(pb::CompleteAuthorizationRequest {
        integration,
        state: q.state.unwrap_or_default(),
        code: q.code.unwrap_or_default(),
        error: q.error.unwrap_or_default(),
        error_description: q.error_description.unwrap_or_default(),
        redirect_uri,
    });
    if let Some(principal) = state.auth.optional_principal(&headers).await {
        locksmith_auth::forward(&mut request, &principal);
    }
    let answer = state
        .backends
        .broker
        .clone()
        .complete_authorization(request)
        .await
        .map_err(from_broker)?
        .into_inner();
    let connection = answer.connection.ok_or_else(|| missing("connection"))?;
    // The answer names a connection: no cache may keep or replay it.
    let no_store = (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if answer.return_url.is_empty() {
        return Ok(([no_store], ApiJson(ConnectionView::from(connection))).into_response());
    }
    let location = with_query(&answer.return_url, "connection", &connection.name)?;
    let location = HeaderValue::from_str(&location).map_err(|_| {
        tracing::error!("a return URL is not a header value");
        Failure(ApiError::internal())
    })?;
    Ok((
        StatusCode::SEE_OTHER,
        [no_store, (header::LOCATION, location)],
    )
        .into_response())
}

/// List the tenant's own connections (metadata only), by integration.
#[utoipa::path(get, path = "/tenants/{tenant_id}/integrations", operation_id = "list_connections", tag = "integrations",
    params(("tenant_id" = String, Path), PageQuery),
    responses((status = 200, body = ConnectionList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<ConnectionList>, Failure> {
    caller.authorize(&tenant_id, Access::Read)?;
    let answer = state
        .backends
        .broker
        .clone()
        .list_connections(caller.request(pb::ListConnectionsRequest {
            parent: format!("tenants/{tenant_id}"),
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

/// Store credentials without a flow: an API key, a user name and password,
/// imported tokens, or a client-credentials connection. Replaces the
/// connection's credentials; the values are never answered.
#[utoipa::path(post, path = "/tenants/{tenant_id}/integrations/{integration}/credentials", operation_id = "store_credentials", tag = "integrations",
    params(("tenant_id" = String, Path), ("integration" = String, Path)),
    request_body = StoreCredentialsBody,
    responses((status = 200, body = ConnectionView),
              (status = 422, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The provider refused the client credentials")))]
pub async fn store_credentials(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant_id, integration)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<StoreCredentialsBody>,
) -> Result<ApiJson<ConnectionView>, Failure> {
    caller.authorize(&tenant_id, Access::Write)?;
    let request = body.into_request(connection_name(&tenant_id, &integration));
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

/// Show a connection: metadata, never token values.
#[utoipa::path(get, path = "/tenants/{tenant_id}/integrations/{integration}/credentials", operation_id = "get_connection", tag = "integrations",
    params(("tenant_id" = String, Path), ("integration" = String, Path)),
    responses((status = 200, body = ConnectionView)))]
pub async fn get_credentials(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant_id, integration)): ApiPath<(String, String)>,
) -> Result<ApiJson<ConnectionView>, Failure> {
    caller.authorize(&tenant_id, Access::Read)?;
    let answer = state
        .backends
        .broker
        .clone()
        .get_connection(caller.request(pb::GetConnectionRequest {
            name: connection_name(&tenant_id, &integration),
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    view(answer.connection)
}

/// Revoke a connection's tokens at the provider (when it offers revocation)
/// and erase the stored credentials.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/integrations/{integration}/credentials", operation_id = "delete_connection", tag = "integrations",
    params(("tenant_id" = String, Path), ("integration" = String, Path)),
    responses((status = 200, body = Revoked, description = "Erased; the provider confirmed the revocation"),
              (status = 204, description = "Erased; the provider offers no revocation or did not confirm it")))]
pub async fn delete_credentials(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant_id, integration)): ApiPath<(String, String)>,
) -> Result<Response, Failure> {
    caller.authorize(&tenant_id, Access::Write)?;
    let answer = state
        .backends
        .broker
        .clone()
        .delete_connection(caller.request(pb::DeleteConnectionRequest {
            name: connection_name(&tenant_id, &integration),
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

/// Refresh a connection's tokens now (one refresh at a time across every
/// broker replica); answers the connection after it.
#[utoipa::path(post, path = "/tenants/{tenant_id}/integrations/{integration}/refresh", operation_id = "refresh_connection", tag = "integrations",
    params(("tenant_id" = String, Path), ("integration" = String, Path)),
    responses((status = 200, body = ConnectionView),
              (status = 422, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The provider refused the refresh (the connection needs re-authorization), \
                   or the connection has nothing to refresh")))]
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant_id, integration)): ApiPath<(String, String)>,
) -> Result<ApiJson<ConnectionView>, Failure> {
    caller.authorize(&tenant_id, Access::Write)?;
    let answer = state
        .backends
        .broker
        .clone()
        .refresh_connection(caller.request(pb::RefreshConnectionRequest {
            name: connection_name(&tenant_id, &integration),
        }))
        .await
        .map_err(from_broker)?
        .into_inner();
    view(answer.connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_fields_are_named_as_the_caller_sent_them() {
        assert_eq!(broker_field("api_key.key"), "credentials.api_key.key");
        assert_eq!(
            broker_field("tokens.scopes[2]"),
            "credentials.tokens.scopes[2]"
        );
        assert_eq!(broker_field("name"), "integration");
        assert_eq!(broker_field("inputs.tenant"), "inputs.tenant");
        assert_eq!(broker_field("state"), "state");
        assert_eq!(broker_field("lease"), problem::BODY);
    }

    #[test]
    fn the_callback_takes_its_four_parameters_once_and_ignores_others() {
        let q = callback_query(Some(
            "state=s1&code=c1&iss=https%3A%2F%2Fx&scope=a+b&session_state=z",
        ))
        .unwrap();
        assert_eq!(
            (q.state.as_deref(), q.code.as_deref()),
            (Some("s1"), Some("c1"))
        );
        let Err(Failure(e)) = callback_query(Some("state=a&state=b")) else {
            panic!("a repeated state is refused");
        };
        assert_eq!(e.violations[0].field, "state");
        let Err(Failure(e)) = callback_query(Some("code=c")) else {
            panic!("a missing state is refused");
        };
        assert_eq!(e.violations[0].description, "is required");
    }

    #[test]
    fn the_connection_is_added_to_the_return_url_query() {
        assert_eq!(
            with_query(
                "https://app.example/done?x=1",
                "connection",
                "tenants/a/integrations/g"
            )
            .unwrap(),
            "https://app.example/done?x=1&connection=tenants%2Fa%2Fintegrations%2Fg"
        );
    }
}
