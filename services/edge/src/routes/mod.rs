//! The edge's routes, one module per resource family.

pub mod admin_health;
pub mod api_keys;
pub mod connections;
pub mod integrations;
pub mod members;
pub mod ops;
pub mod providers;
pub mod proxy;
pub mod secrets;
pub mod tenants;

use locksmith_errors::ApiError;

use crate::problem::Failure;

/// A backend answered OK but left out the resource: a bug in that service.
pub(crate) fn missing(what: &str) -> Failure {
    tracing::error!(what, "backend response lacked its resource");
    Failure(ApiError::internal())
}

/// An empty string would reach the registry as "not set"; the caller sent a
/// value, so it is refused like any other bad value of `field`.
pub(crate) fn not_blank(field: &str, value: Option<&str>, must: &str) -> Result<(), Failure> {
    if value == Some("") {
        return Err(Failure(crate::problem::invalid_field(field, must)));
    }
    Ok(())
}
