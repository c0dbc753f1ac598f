//! `ANY /proxy/{integration}/{path}`: a call to an integration's API made
//! by the token proxy with the connection's credential; the caller never
//! holds a token.
//!
//! The connection is the caller's tenant's, unless headers name another
//! owner inside it (`Locksmith-Owner: orgs/sales/bots/helper`) or the
//! connection itself (`Locksmith-Connection: tenants/acme/orgs/sales/integrations/slack`);
//! another tenant's answers 404, exactly as an absent one. The path is
//! passed on exactly as it was sent (percent-encoding kept) and checked by
//! the proxy's SSRF guard. Bodies stream both ways (StreamCall), so a large
//! upload or download holds a chunk at a time.

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::Response,
};
use futures::{StreamExt, stream};
use locksmith_auth::{Access, Denied};
use locksmith_domain::ConnectionRef;
use locksmith_errors::{ApiError, ErrorCode};
use locksmith_proto::proxy::v1 as pb;
use tonic_types::StatusExt as _;

use crate::{
    AppState,
    auth::Caller,
    problem::{self, Failure},
};

/// Names the owner whose connection to use, inside the caller's tenant.
pub const OWNER_HEADER: &str = "locksmith-owner";
/// Names the connection to use, by resource name.
pub const CONNECTION_HEADER: &str = "locksmith-connection";

/// Request headers the proxy never needs: the edge's own credentials and
/// the selection headers above (the proxy drops hop-by-hop ones itself).
const NOT_FORWARDED: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-length",
    "traceparent",
    "tracestate",
    OWNER_HEADER,
    CONNECTION_HEADER,
];

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Failure> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Failure(problem::invalid_field(
            name_of(name),
            problem::GIVEN_TWICE,
        )));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| Failure(problem::invalid_field(name_of(name), "must be ASCII text")))
}

/// How the problem names a selection header.
fn name_of(header: &str) -> &'static str {
    if header == OWNER_HEADER {
        "Locksmith-Owner"
    } else {
        "Locksmith-Connection"
    }
}

/// The connection the call uses, authorized for `access`.
fn connection(
    caller: &Caller,
    integration: &str,
    headers: &HeaderMap,
    access: Access,
) -> Result<String, Failure> {
    let named = header_text(headers, CONNECTION_HEADER)?;
    let owner = header_text(headers, OWNER_HEADER)?;
    let name = match (named, owner) {
        (Some(_), Some(_)) => {
            return Err(Failure(problem::invalid_field(
                "Locksmith-Owner",
                "cannot be given with Locksmith-Connection",
            )));
        }
        (Some(name), None) => name.to_owned(),
        (None, owner) => {
            let owner = match (owner, caller.0.tenant()) {
                (Some(full), _) if full.starts_with("tenants/") => full.to_owned(),
                (Some(relative), Some(tenant)) => format!("tenants/{tenant}/{relative}"),
                (None, Some(tenant)) => format!("tenants/{tenant}"),
                (_, None) => {
                    return Err(Failure(problem::invalid_field(
                        "Locksmith-Owner",
                        "is required for callers of no single tenant (operators): tenants/{t}[/orgs/{o}…]",
                    )));
                }
            };
            format!("{owner}/integrations/{integration}")
        }
    };
    let at = ConnectionRef::parse(&name).map_err(|_| {
        let field = if named.is_some() { "Locksmith-Connection" } else { "Locksmith-Owner" };
        Failure(problem::invalid_field(
            field,
            "must name an owner: tenants/{t}, orgs/{o}, orgs/{o}/bots/{b} or orgs/{o}/users/{u} (or a connection's resource name)",
        ))
    })?;
    if at.integration.as_str() != integration {
        return Err(Failure(problem::invalid_field(
            "Locksmith-Connection",
            "must be a connection of the integration in the path",
        )));
    }
    let Some(tenant) = at.scope.tenant() else {
        return Err(Failure(ApiError::not_found("connection not found")));
    };
    caller
        .0
        .authorize(tenant, access)
        .map_err(|denied| match denied {
            Denied::Invisible => Failure(ApiError::not_found("connection not found")),
            Denied::Forbidden { needs } => Failure(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("this call needs {needs}"),
            )),
        })?;
    Ok(at.resource_name())
}

/// The path under the API and its query, exactly as sent: everything
/// after `/proxy/{integration}` (percent-encoding kept, for the proxy's
/// SSRF guard to judge).
fn api_path(request: &Request) -> String {
    // The raw path: `/proxy/<integration, as sent>/<rest>`.
    let path = request.uri().path();
    let after = path.strip_prefix("/proxy/").unwrap_or_default();
    let rest = after.find('/').map_or("/", |at| &after[at..]);
    match request.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    }
}

/// The proxy's field names in the HTTP API's terms.
fn proxy_field(field: &str) -> String {
    match field {
        "head.path" => "path".to_owned(),
        "head.method" => "method".to_owned(),
        "head.headers" => "headers".to_owned(),
        "head.connection" => "Locksmith-Connection".to_owned(),
        other => problem::http_field(other),
    }
}

/// A proxy status as the caller sees it. Unlike other backends, the
/// proxy's PERMISSION_DENIED is the caller's business (the API's address is
/// refused by the egress policy, the tenant is suspended), not a
/// disagreement with the edge's own check.
fn from_proxy(status: tonic::Status) -> Failure {
    let api = ApiError::from_status(&status);
    let ours = status
        .get_error_details()
        .error_info()
        .is_some_and(|i| i.domain == locksmith_errors::ERROR_DOMAIN);
    if ours && api.code == ErrorCode::PermissionDenied {
        return Failure(api);
    }
    Failure::from_status_naming(status, proxy_field)
}

/// Calls the integration's API through the token proxy.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options),
    path = "/proxy/{integration}/{path}",
    operation_id = "proxy_call",
    tag = "proxy",
    params(
        ("integration" = String, Path, description = "The integration (`github`)"),
        ("path" = String, Path, description = "The path under the integration's API base URL, any number of segments; `..`, `//`, `\\`, `@`, encoded separators and control characters are refused"),
        ("Locksmith-Owner" = Option<String>, Header, description = "The owner whose connection to use, inside the caller's tenant (`orgs/sales/bots/helper`), or in full (`tenants/acme/orgs/sales`). Default: the caller's tenant"),
        ("Locksmith-Connection" = Option<String>, Header, description = "The connection to use, by resource name (`tenants/acme/integrations/github`); not with Locksmith-Owner"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "Passed to the API as is (any content type), streamed"),
    responses(
        (status = "default", description = "The API's answer, passed back with its status, headers (without Set-Cookie and hop-by-hop headers) and body, streamed"),
        (status = 400, body = locksmith_errors::Problem, content_type = "application/problem+json",
         description = "A path the SSRF guard refuses, or a bad Locksmith-Owner / Locksmith-Connection"),
        (status = 403, body = locksmith_errors::Problem, content_type = "application/problem+json",
         description = "The role is missing (writes need the write role), the API's address is refused by the egress policy, or the tenant is suspended"),
        (status = 404, body = locksmith_errors::Problem, content_type = "application/problem+json",
         description = "No such connection for the caller (another tenant's answers the same)"),
        (status = 422, body = locksmith_errors::Problem, content_type = "application/problem+json",
         description = "The connection needs re-authorization, or the integration declares no API"),
        (status = 502, body = locksmith_errors::Problem, content_type = "application/problem+json",
         description = "The API could not be reached, answered badly, or its response exceeds the proxy's cap"),
        (status = 504, body = locksmith_errors::Problem, content_type = "application/problem+json",
         description = "The API did not answer in time"),
    )
)]
pub async fn call(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(params): axum::extract::Path<Vec<(String, String)>>,
    request: Request,
) -> Result<Response, Failure> {
    // `{path}` and its twin `{path}/{*rest}` (see `openapi::WithSlashes`):
    // the path itself is read raw from the URI below.
    let integration = params
        .into_iter()
        .find_map(|(name, value)| (name == "integration").then_some(value))
        .unwrap_or_default();
    let method = request.method().clone();
    let access = if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Access::Read
    } else {
        Access::Write
    };
    let connection = connection(&caller, &integration, request.headers(), access)?;
    let path = api_path(&request);
    let headers = request
        .headers()
        .iter()
        .filter(|(name, _)| !NOT_FORWARDED.contains(&name.as_str()))
        .map(|(name, value)| pb::Header {
            name: name.as_str().to_owned(),
            value: Bytes::copy_from_slice(value.as_bytes()),
        })
        .collect();
    let head = pb::RequestHead {
        connection,
        method: method.as_str().to_owned(),
        path,
        headers,
    };
    let mut body = request.into_body().into_data_stream();
    // The first chunk travels with the head: a small body is one message.
    let first = match body.next().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(_)) => {
            return Err(Failure(problem::invalid_field(
                problem::BODY,
                "the request body could not be read",
            )));
        }
        None => Bytes::new(),
    };
    let first = pb::StreamCallRequest {
        head: Some(head),
        body: first,
    };
    // A body that fails mid-way must not reach the API truncated: a second
    // head aborts the call at the proxy (the proto's contract).
    let rest = stream::unfold(Some(body), |body| async move {
        let mut body = body?;
        match body.next().await? {
            Ok(chunk) => Some((
                pb::StreamCallRequest {
                    head: None,
                    body: chunk,
                },
                Some(body),
            )),
            Err(_) => Some((
                pb::StreamCallRequest {
                    head: Some(pb::RequestHead::default()),
                    body: Bytes::new(),
                },
                None,
            )),
        }
    });
    let outbound = stream::once(async { first }).chain(rest);
    let mut inbound = state
        .backends
        .proxy()
        .stream_call(caller.request(outbound))
        .await
        .map_err(from_proxy)?
        .into_inner();
    let first = inbound
        .message()
        .await
        .map_err(from_proxy)?
        .ok_or_else(|| {
            tracing::error!("the proxy answered no response head");
            Failure(ApiError::internal())
        })?;
    let Some(head) = first.head else {
        tracing::error!("the proxy's first message has no head");
        return Err(Failure(ApiError::internal()));
    };
    let status = u16::try_from(head.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| {
            tracing::error!(status = head.status, "the proxy answered a bad status");
            Failure(ApiError::internal())
        })?;
    let mut response = Response::builder().status(status);
    if let Some(out) = response.headers_mut() {
        for h in head.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(&h.value),
            ) {
                out.append(name, value);
            }
        }
        // The body is re-framed here; its length is the API's.
        out.remove(header::TRANSFER_ENCODING);
    }
    let first_chunk = first.body;
    let rest = stream::unfold(Some(inbound), |inbound| async move {
        let mut inbound = inbound?;
        match inbound.message().await {
            Ok(Some(message)) => Some((Ok(message.body), Some(inbound))),
            Ok(None) => None,
            // The head is out: the only way left to say "broken" is to end
            // the body with an error (the client sees it cut short).
            Err(status) => {
                tracing::warn!(code = ?status.code(), "proxied response ended with an error");
                Some((
                    Err(std::io::Error::other("the proxied response failed")),
                    None,
                ))
            }
        }
    });
    let body = stream::once(async move { Ok::<_, std::io::Error>(first_chunk) }).chain(rest);
    response.body(Body::from_stream(body)).map_err(|_| {
        tracing::error!("a proxied response could not be built");
        Failure(ApiError::internal())
    })
}
