//! Cursor pagination (AIP-158): `page_size` plus an opaque `page_token`.
//!
//! A token names the listing it belongs to and the last id served, so a
//! token from one listing is refused on another, and pages stay stable while
//! records are added or removed elsewhere in the list.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::{RegistryError, invalid};

/// Page size when the caller names none.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page served.
pub const MAX_PAGE_SIZE: usize = 1000;

const TOKEN_VERSION: &str = "v1";

/// A validated page request.
#[derive(Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// How many records.
    pub size: usize,
    /// Resume after this id.
    pub after: Option<String>,
}

impl PageRequest {
    /// Checks `page_size` and decodes `page_token` for the listing `listing`
    /// (e.g. `tenants/acme/orgs`).
    pub fn parse(page_size: i32, page_token: &str, listing: &str) -> Result<Self, RegistryError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => usize::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_PAGE_SIZE)
                .ok_or_else(|| {
                    invalid(
                        "page_size",
                        format!("must be between 0 and {MAX_PAGE_SIZE}"),
                    )
                })?,
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode(page_token, listing)?)
        };
        Ok(Self { size, after })
    }
}

/// The token that resumes `listing` after `last_id`.
pub fn next_page_token(listing: &str, last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_VERSION}\n{listing}\n{last_id}"))
}

fn decode(token: &str, listing: &str) -> Result<String, RegistryError> {
    let bad = || invalid("page_token", "is not a token issued for this listing");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(TOKEN_VERSION), Some(l), Some(last)) if l == listing && !last.is_empty() => {
            Ok(last.to_owned())
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_within_their_listing_only() {
        let token = next_page_token("tenants", "acme");
        let page = PageRequest::parse(10, &token, "tenants").unwrap();
        assert_eq!(page.after.as_deref(), Some("acme"));
        assert!(PageRequest::parse(10, &token, "tenants/x/orgs").is_err());
        assert!(PageRequest::parse(10, "garbage!", "tenants").is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(
            PageRequest::parse(0, "", "t").unwrap().size,
            DEFAULT_PAGE_SIZE
        );
        assert!(PageRequest::parse(-1, "", "t").is_err());
        assert!(PageRequest::parse(1001, "", "t").is_err());
        assert_eq!(PageRequest::parse(1000, "", "t").unwrap().size, 1000);
    }
}
