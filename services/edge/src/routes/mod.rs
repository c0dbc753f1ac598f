//! The edge's routes, one module per resource family.

pub mod api_keys;
pub mod members;
pub mod ops;
pub mod tenants;

use locksmith_errors::ApiError;

use crate::problem::Failure;

/// A backend answered OK but left out the resource: a bug in that service.
pub(crate) fn missing(what: &str) -> Failure {
    tracing::error!(what, "backend response lacked its resource");
    Failure(ApiError::internal())
}
