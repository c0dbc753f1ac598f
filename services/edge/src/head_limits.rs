//! Limits on a request's head (its target and its header section), checked
//! before the router runs, and the problem bodies of errors the edge answers
//! at connection level, where no request id, span or route exists yet.
//!
//! hyper's own head limits are far looser (a 64 KiB target, about 400 KiB of
//! buffered head, 100 headers): [`HeadLimits`] enforces the edge's tighter
//! ones with the same statuses, 414 and 431. What hyper still rejects itself
//! gets the same kind of body from `listener::io`.

use axum::{
    body::Body,
    http::{HeaderValue, Request, Response, header},
};
use locksmith_errors::{ApiError, ErrorCode, PROBLEM_CONTENT_TYPE};

use crate::{config::Limits, request_id::X_REQUEST_ID};

/// Bytes a header costs besides its name and value: `": "` and CRLF.
const HEADER_FRAMING: usize = 4;

/// The edge's limits on a request head.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadLimits {
    max_uri_bytes: usize,
    max_header_bytes: usize,
}

impl HeadLimits {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            max_uri_bytes: limits.max_uri_bytes,
            max_header_bytes: limits.max_header_bytes,
        }
    }

    /// Why `request` is refused, if it is. Allocates nothing when it is not:
    /// this runs on every request.
    pub(crate) fn check<B>(&self, request: &Request<B>) -> Option<ApiError> {
        // An HTTP/2 request or an absolute-form target may carry scheme and
        // authority too; only the path and query are the caller's to grow.
        let uri_len = request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if uri_len > self.max_uri_bytes {
            return Some(ApiError::new(
                ErrorCode::UriTooLong,
                format!(
                    "the request target is longer than the edge accepts ({} bytes)",
                    self.max_uri_bytes
                ),
            ));
        }
        let header_bytes = request.headers().iter().fold(0usize, |sum, (name, value)| {
            sum.saturating_add(name.as_str().len() + value.len() + HEADER_FRAMING)
        });
        if header_bytes > self.max_header_bytes {
            return Some(ApiError::new(
                ErrorCode::HeadersTooLarge,
                format!(
                    "the request headers are larger than the edge accepts ({} bytes)",
                    self.max_header_bytes
                ),
            ));
        }
        None
    }
}

/// A problem rendered outside the router.
pub(crate) struct Rendered {
    /// The fresh id the problem carries, also sent as `X-Request-Id`.
    pub(crate) request_id: String,
    /// The problem+json body.
    pub(crate) body: Vec<u8>,
}

/// Renders `error` for a request the router never saw. The id is always a
/// new one: the caller's `X-Request-Id`, if any, sits in the head being
/// refused. No `instance` either: the target is caller text, and may be the
/// very thing that is too long.
pub(crate) fn render(error: &ApiError) -> Rendered {
    let request_id = uuid::Uuid::new_v4().to_string();
    let problem = error.to_problem(None, Some(request_id.clone()), None);
    // A `Problem` is strings and numbers: serialising it cannot fail, but
    // an empty body is still a better answer than a panic.
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    Rendered { request_id, body }
}

/// The response for a head refused by [`HeadLimits::check`].
pub(crate) fn refusal(error: &ApiError) -> Response<Body> {
    let rendered = render(error);
    tracing::debug!(
        status = error.code.http_status().as_u16(),
        request_id = %rendered.request_id,
        "refused a request head over the edge's limits"
    );
    let mut response = Response::new(Body::from(rendered.body));
    *response.status_mut() = error.code.http_status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    if let Ok(id) = HeaderValue::from_str(&rendered.request_id) {
        headers.insert(X_REQUEST_ID.clone(), id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HeadLimits {
        HeadLimits {
            max_uri_bytes: 16,
            max_header_bytes: 32,
        }
    }

    #[test]
    fn target_and_headers_at_the_limit_pass_and_one_byte_more_fails() {
        let at = Request::get("/aaaaaaaaa?b=cde").body(()).unwrap();
        assert_eq!(at.uri().path_and_query().unwrap().as_str().len(), 16);
        assert_eq!(limits().check(&at), None);
        let over = Request::get("/aaaaaaaaa?b=cdef").body(()).unwrap();
        assert_eq!(
            limits().check(&over).map(|e| e.code),
            Some(ErrorCode::UriTooLong)
        );

        // 6 + 22 + 4 (framing) = 32 bytes.
        let at = Request::get("/")
            .header("x-name", "a".repeat(22))
            .body(())
            .unwrap();
        assert_eq!(limits().check(&at), None);
        let over = Request::get("/")
            .header("x-name", "a".repeat(23))
            .body(())
            .unwrap();
        assert_eq!(
            limits().check(&over).map(|e| e.code),
            Some(ErrorCode::HeadersTooLarge)
        );
    }

    #[test]
    fn a_refusal_is_problem_json_with_a_fresh_request_id() {
        let error = ApiError::new(ErrorCode::HeadersTooLarge, "too big");
        let response = refusal(&error);
        assert_eq!(response.status().as_u16(), 431);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
        let id = response.headers()[&X_REQUEST_ID].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok());
    }
}
