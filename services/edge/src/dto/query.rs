//! Query parameters of the list and delete routes.

use locksmith_errors::FieldViolation;
use utoipa::IntoParams;

use crate::extract::{FromQuery, QueryParams};

/// Largest page the registry serves (its `MAX_PAGE_SIZE`); checked here too
/// so the caller hears the range in the query parameter's own terms.
const MAX_PAGE_SIZE: u64 = 1000;

/// Pagination query parameters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 1000; default 50.
    pub page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl FromQuery for PageQuery {
    const PARAMETERS: &'static [&'static str] = &["page_size", "page_token"];

    fn from_query(params: &QueryParams) -> Result<Self, Vec<FieldViolation>> {
        let page_size = params
            .whole_number("page_size", 1, MAX_PAGE_SIZE)
            .map_err(|e| vec![e])?;
        Ok(PageQuery {
            page_size,
            page_token: params.text("page_token").map(str::to_owned),
        })
    }
}

/// Optional check-and-set condition of a DELETE.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Delete only if the resource is at this version (1 or more).
    pub version: Option<u64>,
}

impl FromQuery for DeleteQuery {
    const PARAMETERS: &'static [&'static str] = &["version"];

    fn from_query(params: &QueryParams) -> Result<Self, Vec<FieldViolation>> {
        // The registry reads a version of 0 as "no condition"; a caller who
        // writes one means a condition, so it is refused rather than dropped.
        let version = params
            .whole_number("version", 1, MAX_VERSION)
            .map_err(|e| vec![e])?;
        Ok(DeleteQuery { version })
    }
}

/// Largest version a query names: JSON Schema's `int64`, as the published
/// document says (no store gets near it).
pub const MAX_VERSION: u64 = i64::MAX as u64;

/// Which version of a secret a read or delete is about.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecretVersionQuery {
    /// The version (1 or more); absent: the latest.
    pub version: Option<u64>,
}

impl FromQuery for SecretVersionQuery {
    const PARAMETERS: &'static [&'static str] = &["version"];

    fn from_query(params: &QueryParams) -> Result<Self, Vec<FieldViolation>> {
        let version = params
            .whole_number("version", 1, MAX_VERSION)
            .map_err(|e| vec![e])?;
        Ok(SecretVersionQuery { version })
    }
}
