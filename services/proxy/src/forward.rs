//! One proxied call, from a checked request to the API's response head:
//! authorize, count against the tenant's rate, get the connection's
//! credential, build the URL under the API's base, inject, send through the
//! egress guard; retry what may be retried; on a 401 refresh once and retry
//! once. The body is the caller's to read ([`Answer::body`]).

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, Method, StatusCode, header};
use locksmith_auth::{Access as Role, Denied, Principal};
use locksmith_domain::ConnectionRef;
use locksmith_egress::{EgressClient, EgressRequest, EgressStream, ErrorKind, StreamLimits};
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use crate::{
    access::{Access, AccessCache},
    error::ProxyError,
    headers::{self, Placement},
    limits::TenantLimits,
    target::ApiPath,
};

/// A streamed request body.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A request body: whole (it can be sent again: retries and the 401 retry
/// apply) or streamed (sent once).
pub enum Body {
    /// The whole body, possibly empty.
    Full(Bytes),
    /// A body larger than the replay buffer, sent as it arrives.
    Stream(BodyStream),
}

/// `[upstream]` and `[retry]`: bounds on calls to APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// From sending one attempt to its response head.
    pub head_timeout: Duration,
    /// Between two chunks of a response body: an API that stalls longer
    /// ends the call with a timeout.
    pub idle_timeout: Duration,
    /// A whole unary call; a streamed call until its response head.
    pub total_timeout: Duration,
    /// The longest response body streamed back (`u64::MAX`: no cap).
    pub max_response_bytes: u64,
    /// The largest body a unary call carries each way.
    pub max_unary_bytes: u64,
    /// A streamed request body up to this size is buffered, so that it can
    /// be sent again (retries, the 401 retry); a longer one is streamed once.
    pub replay_buffer_bytes: usize,
    /// Attempts per call for retryable answers (1: no retry).
    pub max_attempts: u32,
    /// First backoff when the API sends no `Retry-After`; doubled per retry.
    pub backoff_base: Duration,
    /// Longest `Retry-After` honoured: an API asking for more gets its
    /// answer passed back instead of a wait.
    pub max_retry_after: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(60),
            max_response_bytes: u64::MAX,
            max_unary_bytes: 4 * 1024 * 1024,
            replay_buffer_bytes: 1024 * 1024,
            max_attempts: 3,
            backoff_base: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// A call, checked (see [`crate::grpc`] for the wire side).
pub struct Call {
    /// Who it is for.
    pub principal: Principal,
    /// Which connection.
    pub connection: ConnectionRef,
    /// The method (never CONNECT or TRACE).
    pub method: Method,
    /// The path under the API's base.
    pub path: ApiPath,
    /// The caller's headers, already filtered for upstream.
    pub headers: HeaderMap,
    /// The body.
    pub body: Body,
}

/// The API's answer.
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers, filtered for the caller.
    pub headers: HeaderMap,
    /// The body, to be read chunk by chunk.
    pub body: EgressStream,
    /// Attempts made.
    pub attempts: u32,
    /// Whether the credential was refreshed after a 401.
    pub refreshed: bool,
}

/// What a proxy replica holds.
pub struct Forwarder {
    egress: EgressClient,
    access: AccessCache,
    limits: TenantLimits,
    config: UpstreamConfig,
}

/// Methods that may be sent twice (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// Answers worth another attempt of an idempotent call.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// `Retry-After` in seconds (an HTTP date is not honoured: the backoff
/// applies instead).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Forwarder {
    /// A forwarder calling APIs through `egress`.
    pub fn new(
        egress: EgressClient,
        access: AccessCache,
        limits: TenantLimits,
        config: UpstreamConfig,
    ) -> Self {
        Self {
            egress,
            access,
            limits,
            config,
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Whether `principal` may make `call`; another tenant's connection is
    /// NOT_FOUND, exactly as an absent one.
    pub fn authorize(
        principal: &Principal,
        connection: &ConnectionRef,
        method: &Method,
    ) -> Result<(), ProxyError> {
        if let Principal::Service { .. } = principal {
            return Err(ProxyError::PermissionDenied {
                needs: "a caller's principal (the proxy acts for tenants and operators)".into(),
            });
        }
        let Some(tenant) = connection.scope.tenant() else {
            return Err(ProxyError::NotFound("connection"));
        };
        let role = if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Role::Read
        } else {
            Role::Write
        };
        principal.authorize(tenant, role).map_err(|d| match d {
            Denied::Invisible => ProxyError::NotFound("connection"),
            Denied::Forbidden { needs } => ProxyError::PermissionDenied { needs },
        })
    }

    /// Sends `call` and answers once the API's response head has arrived.
    pub async fn forward(&self, call: Call, now: OffsetDateTime) -> Result<Answer, ProxyError> {
        Self::authorize(&call.principal, &call.connection, &call.method)?;
        if let Some(tenant) = call.connection.scope.tenant() {
            self.limits.admit(tenant).await?;
        }
        let name = call.connection.resource_name();
        let mut access = self.access.get(&call.principal, &name, now).await?;
        let replayable = matches!(call.body, Body::Full(_));
        let mut body = Some(call.body);
        let mut attempts = 0u32;
        let mut refreshed = false;
        loop {
            attempts += 1;
            let request = self.request(
                &call.method,
                &call.path,
                &call.headers,
                &access,
                take_body(&mut body),
            )?;
            let limits = StreamLimits {
                head_timeout: self.config.head_timeout,
                idle_timeout: self.config.idle_timeout,
                max_body_bytes: self.config.max_response_bytes,
            };
            let may_retry =
                replayable && idempotent(&call.method) && attempts < self.config.max_attempts;
            match self.egress.send_streaming(request, limits).await {
                Ok(response)
                    if response.status == StatusCode::UNAUTHORIZED && !refreshed && replayable =>
                {
                    // The credential was refused: once, a newer one.
                    drop(response);
                    refreshed = true;
                    access = self
                        .access
                        .after_refusal(&call.principal, &name, &access, now)
                        .await?;
                }
                Ok(response) if retryable(response.status) && may_retry => {
                    let wait = match retry_after(&response.headers) {
                        Some(asked) if asked > self.config.max_retry_after => {
                            return Ok(answer(response, attempts, refreshed));
                        }
                        Some(asked) => asked,
                        None => self.backoff(attempts),
                    };
                    drop(response);
                    tokio::time::sleep(wait).await;
                }
                Ok(response) => return Ok(answer(response, attempts, refreshed)),
                Err(e) if may_retry && e.kind() == ErrorKind::Unreachable => {
                    tracing::debug!(error = %e, attempts, "API unreachable; retrying");
                    tokio::time::sleep(self.backoff(attempts)).await;
                }
                Err(e) => return Err(ProxyError::egress(e)),
            }
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(6);
        self.config.backoff_base.saturating_mul(factor)
    }

    /// One attempt's request: the URL under the API's base (with the
    /// credential in the query if it goes there), the caller's headers, the
    /// API's default headers and the credential.
    fn request(
        &self,
        method: &Method,
        path: &ApiPath,
        caller_headers: &HeaderMap,
        access: &Access,
        body: Option<reqwest::Body>,
    ) -> Result<EgressRequest, ProxyError> {
        let mut url = path
            .join(&access.base_url, access.placement.query_parameter())
            .map_err(|e| ProxyError::path(&e))?;
        if let Placement::Query { name } = &access.placement {
            url.query_pairs_mut()
                .append_pair(name, access.credential.expose_secret());
        }
        let mut request = EgressRequest::new(method.clone(), url);
        let headers = request.headers_mut();
        headers.extend(caller_headers.clone());
        headers::inject(
            headers,
            &access.headers,
            &access.placement,
            &access.credential,
        )
        .map_err(|e| ProxyError::Internal(format!("{e}")))?;
        Ok(match body {
            Some(body) => request.body(body),
            None => request,
        })
    }
}

/// The body for the next attempt: a whole body again and again, a stream
/// once.
fn take_body(body: &mut Option<Body>) -> Option<reqwest::Body> {
    match body.take()? {
        Body::Full(bytes) => {
            let again = bytes.clone();
            *body = Some(Body::Full(bytes));
            (!again.is_empty()).then(|| reqwest::Body::from(again))
        }
        Body::Stream(stream) => Some(reqwest::Body::wrap_stream(stream)),
    }
}

fn answer(mut response: EgressStream, attempts: u32, refreshed: bool) -> Answer {
    let status = response.status;
    let headers = headers::downstream_response_headers(std::mem::take(&mut response.headers));
    Answer {
        status,
        headers,
        body: response,
        attempts,
        refreshed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_methods_read_and_other_tenants_are_absent() {
        let conn = ConnectionRef::parse("tenants/acme/integrations/github").unwrap();
        let reader = Principal::Tenant {
            tenant: locksmith_domain::TenantId::parse("acme").unwrap(),
            roles: locksmith_auth::Roles::of([locksmith_auth::Role::Read]),
            subject: "k".into(),
        };
        assert!(Forwarder::authorize(&reader, &conn, &Method::GET).is_ok());
        assert!(matches!(
            Forwarder::authorize(&reader, &conn, &Method::POST),
            Err(ProxyError::PermissionDenied { .. })
        ));
        let other = Principal::Workload {
            tenant: locksmith_domain::TenantId::parse("beta").unwrap(),
            name: "w".into(),
        };
        assert!(matches!(
            Forwarder::authorize(&other, &conn, &Method::GET),
            Err(ProxyError::NotFound("connection"))
        ));
        let service = Principal::Service {
            service: locksmith_tls::ServiceName::Edge,
        };
        assert!(matches!(
            Forwarder::authorize(&service, &conn, &Method::GET),
            Err(ProxyError::PermissionDenied { .. })
        ));
    }

    #[test]
    fn retry_after_takes_seconds() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(idempotent(&Method::PUT) && !idempotent(&Method::POST));
    }
}
