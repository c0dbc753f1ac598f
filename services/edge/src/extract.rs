//! Extractors whose rejections are problems naming what the caller sent:
//! JSON bodies (400/413/415) by JSON path, path segments and query strings
//! (400) by parameter name.

mod json_errors;
mod query;
pub mod secret_path;

use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, RawPathParams, Request,
        path::ErrorKind,
        rejection::{BytesRejection, PathRejection},
    },
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use locksmith_domain::{IntegrationId, MemberId, TenantId};
use locksmith_errors::{ApiError, ErrorCode, FieldViolation};
use serde::{Serialize, de::DeserializeOwned};

pub use self::query::{FromQuery, QueryParams};
use crate::problem::{self, Failure};

/// `Json<T>` in and out, with problem+json rejections.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        unencoded(req.headers())?;
        if !is_json(req.headers()) {
            return Err(Failure(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the request body must be JSON (Content-Type: application/json)",
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(unreadable)?;
        json_errors::parse(&bytes).map(ApiJson).map_err(Failure)
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Codings named in a refusal; any other is the caller's text and is not repeated.
const KNOWN_CODINGS: &[&str] = &[
    "gzip",
    "x-gzip",
    "deflate",
    "br",
    "zstd",
    "compress",
    "x-compress",
    "dcb",
    "dcz",
    "aes128gcm",
    "exi",
    "pack200-gzip",
];

/// The edge does not decompress bodies: one read as plain JSON would be
/// garbage at best, and inflating one would sidestep the body size limit.
fn unencoded(headers: &HeaderMap) -> Result<(), Failure> {
    let codings = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty());
    for coding in codings {
        if coding.eq_ignore_ascii_case("identity") {
            continue;
        }
        let coding = coding.to_ascii_lowercase();
        let name = if KNOWN_CODINGS.contains(&coding.as_str()) {
            coding.as_str()
        } else {
            "an unknown coding"
        };
        return Err(Failure(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "the request body is encoded ({name}); the edge reads only unencoded (identity) bodies"
            ),
        )));
    }
    Ok(())
}

/// `application/json` or any `application/*+json`, parameters aside.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

fn unreadable(rejection: BytesRejection) -> Failure {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Failure(ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than the edge accepts",
        ));
    }
    tracing::debug!(error = %rejection, "request body could not be read");
    Failure(problem::invalid_field(
        problem::BODY,
        "could not be read to its end",
    ))
}

/// Path parameters. Ids are checked here, by the parameter's name: the
/// registry would name the field of its own request (`id` on an update),
/// which the caller never sent.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(path_rejection)?;
        // Path succeeded, so the parameters decode; RawPathParams cannot fail here.
        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await {
            let violations: Vec<FieldViolation> =
                raw.iter().filter_map(|(n, v)| bad_id(n, v)).collect();
            if !violations.is_empty() {
                return Err(Failure(problem::invalid(violations)));
            }
        }
        Ok(ApiPath(value.0))
    }
}

/// Why path parameter `name` holding `value` is not an id, if it is not.
fn bad_id(name: &str, value: &str) -> Option<FieldViolation> {
    let error = match name {
        "tenant_id" => TenantId::parse(value).err(),
        "org_id" | "bot_id" | "user_id" => MemberId::parse(value).err(),
        "integration" => IntegrationId::parse(value).err(),
        _ => None,
    }?;
    Some(FieldViolation {
        field: name.to_owned(),
        description: error.to_string(),
    })
}

fn path_rejection(rejection: PathRejection) -> Failure {
    let PathRejection::FailedToDeserializePathParams(e) = &rejection else {
        tracing::error!(error = %rejection, "route has no path parameters");
        return Failure(ApiError::internal());
    };
    let (name, description) = match e.kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => (key.as_str(), "must be UTF-8 text"),
        ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::DeserializeError { key, .. } => {
            (key.as_str(), "is not valid here")
        }
        // The handler's parameter type does not fit its route: a bug.
        _ => {
            tracing::error!(error = %rejection, "path parameters do not fit the handler");
            return Failure(ApiError::internal());
        }
    };
    tracing::debug!(error = %rejection, "path parameter refused");
    Failure(problem::invalid_field(name, description))
}

/// Query parameters, read by `T`'s [`FromQuery`]: unknown, repeated and
/// malformed ones are each named in one 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: FromQuery> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        QueryParams::read::<T>(parts.uri.query().unwrap_or_default())
            .map(ApiQuery)
            .map_err(|violations| Failure(problem::invalid(violations)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(&headers(&[(header::CONTENT_TYPE, ok)])), "{ok}");
        }
        for bad in ["text/plain", "application/jsonx", "json", "text/json"] {
            assert!(!is_json(&headers(&[(header::CONTENT_TYPE, bad)])), "{bad}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn only_identity_passes_and_unknown_codings_are_not_repeated() {
        assert!(unencoded(&HeaderMap::new()).is_ok());
        assert!(unencoded(&headers(&[(header::CONTENT_ENCODING, "identity")])).is_ok());
        for (value, named) in [
            ("GZIP", "(gzip)"),
            ("identity, br", "(br)"),
            ("s3cr3t", "(an unknown coding)"),
        ] {
            let Err(Failure(err)) = unencoded(&headers(&[(header::CONTENT_ENCODING, value)]))
            else {
                panic!("{value} passed");
            };
            assert_eq!(err.code, ErrorCode::UnsupportedMediaType);
            assert!(err.detail.contains(named), "{}", err.detail);
        }
        let two = headers(&[
            (header::CONTENT_ENCODING, "identity"),
            (header::CONTENT_ENCODING, "zstd"),
        ]);
        assert!(unencoded(&two).is_err());
    }
}
