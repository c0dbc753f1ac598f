//! OAuth flows over the broker: `POST /oauth/authorize/{integration}`
//! (start a flow) and `GET /oauth/callback/{integration}` (the provider's
//! redirect; anonymous, trusted only through the single-use state), and the
//! broker's field names in the HTTP API's terms for every broker route
//! (connections: `connections.rs`; custom providers: `providers.rs`).
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
    dto::{Authorization, AuthorizeBody, ConnectionView},
    extract::{ApiJson, ApiPath},
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
        "definition",
        "expected_version",
    ];
    if field == "name" {
        // A connection's name is built from the path; its integration is
        // the part the edge does not check against the catalog.
        "integration".to_owned()
    } else if CREDENTIALS.iter().any(|p| field.starts_with(p)) {
        format!("credentials.{field}")
    } else if SAME.contains(&field)
        || field.starts_with("inputs.")
        || field.starts_with("scopes[")
        || field.starts_with("definition.")
    {
        field.to_owned()
    } else {
        problem::http_field(field)
    }
}

pub(crate) fn from_broker(status: tonic::Status) -> Failure {
    Failure::from_status_naming(status, broker_field)
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

/// The code a refused flow sends the browser back with (`error=<code>`):
/// one of a fixed few, never the provider's text.
fn flow_error_code(error: &pb::FlowError) -> Option<&'static str> {
    match error.code() {
        pb::FlowErrorCode::AccessDenied => Some("access_denied"),
        pb::FlowErrorCode::ProviderError => Some("provider_error"),
        pb::FlowErrorCode::ExchangeFailed => Some("exchange_failed"),
        pb::FlowErrorCode::Unspecified => None,
    }
}

/// Where the browser goes at the end of a flow with a return URL: the
/// connection's name, or the flow's error code, added to its query.
fn return_location(answer: &pb::CompleteAuthorizationResponse) -> Result<HeaderValue, Failure> {
    let location = match (&answer.connection, &answer.error) {
        (Some(connection), None) => with_query(&answer.return_url, "connection", &connection.name)?,
        (None, Some(error)) => {
            let code = flow_error_code(error).ok_or_else(|| missing("flow error code"))?;
            with_query(&answer.return_url, "error", code)?
        }
        _ => return Err(missing("connection or flow error")),
    };
    HeaderValue::from_str(&location).map_err(|_| {
        tracing::error!("a return URL is not a header value");
        Failure(ApiError::internal())
    })
}

/// The provider's redirect at the end of a flow. Anonymous: trusted only
/// through the single-use `state` (a tenant credential, if one is sent,
/// confines the state to that tenant). Sends the browser to the flow's
/// return URL with `?connection=<name>`, or answers the connection. A flow
/// the provider ended with an error, or whose code it refused, goes back to
/// its return URL with `?error=<code>` (`access_denied`, `provider_error`,
/// `exchange_failed`), or is a 422 without one; nothing is stored. A state
/// that is not valid is never redirected: 400.
#[utoipa::path(get, path = "/oauth/callback/{integration}", operation_id = "complete_authorization", tag = "integrations",
    params(("integration" = String, Path, description = "The integration the flow was started for"),
           ("state" = String, Query, description = "The state the flow was started with"),
           ("code" = Option<String>, Query, description = "The authorization code"),
           ("error" = Option<String>, Query, description = "The provider's error code (`access_denied`)"),
           ("error_description" = Option<String>, Query, description = "The provider's text; never stored or repeated")),
    responses((status = 200, body = ConnectionView, description = "The connection, when the flow has no return URL"),
              (status = 303, description = "To the flow's return URL, with `connection=<name>` added to its query, \
                   or `error=<code>` (`access_denied`, `provider_error`, `exchange_failed`) when the provider \
                   ended the flow or refused the code (nothing is stored)",
               headers(("Location" = String, description = "The return URL"))),
              (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "An unknown, expired or used state, another integration's, or no code"),
              (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The integration is no longer offered"),
              (status = 422, body = locksmith_errors::Problem, content_type = "application/problem+json",
               description = "The provider refused the flow (`access_denied`) or the code, and the flow has no \
                   return URL; nothing is stored"),
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
    // The answer names a connection or ends a flow: no cache may keep or
    // replay it.
    let no_store = (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if answer.return_url.is_empty() {
        // The broker answers a refused flow without a return URL as an error.
        let connection = answer.connection.ok_or_else(|| missing("connection"))?;
        return Ok(([no_store], ApiJson(ConnectionView::from(connection))).into_response());
    }
    let location = return_location(&answer)?;
    Ok((
        StatusCode::SEE_OTHER,
        [no_store, (header::LOCATION, location)],
    )
        .into_response())
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
        assert_eq!(broker_field("definition.token_url"), "definition.token_url");
        assert_eq!(broker_field("expected_version"), "expected_version");
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
    fn a_refused_flow_goes_back_with_its_code_only() {
        let refused = |code: pb::FlowErrorCode| pb::CompleteAuthorizationResponse {
            connection: None,
            return_url: "https://app.example/done?x=1".into(),
            error: Some(pb::FlowError { code: code.into() }),
        };
        for (code, expected) in [
            (pb::FlowErrorCode::AccessDenied, "access_denied"),
            (pb::FlowErrorCode::ProviderError, "provider_error"),
            (pb::FlowErrorCode::ExchangeFailed, "exchange_failed"),
        ] {
            assert_eq!(
                return_location(&refused(code)).unwrap(),
                format!("https://app.example/done?x=1&error={expected}").as_str()
            );
        }
        assert!(return_location(&refused(pb::FlowErrorCode::Unspecified)).is_err());
        let neither = pb::CompleteAuthorizationResponse {
            return_url: "https://app.example/done".into(),
            ..Default::default()
        };
        assert!(return_location(&neither).is_err());
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
