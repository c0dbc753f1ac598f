//! The provider catalog as data (issue 12): which integrations exist and how
//! each is authorized, exchanged, refreshed, revoked and called.
//!
//! The shipped catalog is a TOML file (`deploy/catalog/providers.toml`)
//! loaded and validated at start; tenants' custom providers are the same
//! entries sent as JSON through the API and validated by the same code
//! ([`parse_custom_provider`]). A malformed entry is refused with every bad
//! field named: `providers.github.token_url: must be an https URL`.
//!
//! ```toml
//! version = 1
//!
//! [providers.notion]
//! display_name = "Notion"
//! auth_mode = "oauth2_authorization_code"
//! authorization_url = "https://api.notion.com/v1/oauth/authorize"
//! token_url = "https://api.notion.com/v1/oauth/token"
//! client_auth = "basic"
//! token_request_format = "json"
//! [providers.notion.token_response.metadata]
//! workspace_id = "workspace_id"
//! [providers.notion.api]
//! base_url = "https://api.notion.com/v1"
//! headers = { "Notion-Version" = "2022-06-28" }
//! ```
//!
//! - `raw`: the serde shapes (unknown fields refused).
//! - `validate`: raw → [`Provider`], all rules.
//! - `provider`: the validated types and the accessors the flows use
//!   ([`Provider::token_url`], [`Provider::authorization_request_url`], …).
//! - `template`, `pattern`: per-connection inputs and URL templates.
//! - `path`: dotted paths into token responses.
//! - [`response`]: reading a token endpoint's answer.

mod path;
mod pattern;
mod provider;
mod raw;
pub mod response;
mod template;
mod validate;

#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use locksmith_domain::{FieldError, IntegrationId, Invalid};

pub use path::FieldPath;
pub use pattern::{InputPattern, MAX_INPUT_LEN, PatternError};
pub use provider::{
    ApiSpec, AuthMode, AuthorizationRequest, BodyFormat, ClientAuth, CredentialPlacement,
    EndpointError, OAuth2Spec, Provider, ResponseFormat, Revocation, RevocationStyle,
    TokenResponseSpec,
};
pub use raw::RawProvider;
pub use response::{ExpirySource, ProviderError, TokenGrant, TokenResponseError, TokenSet};
pub use template::{ConnectionInputs, InputError, InputSpec, TemplateError, UrlTemplate};

/// The only catalog format version.
pub const CATALOG_VERSION: u32 = 1;

/// Largest catalog file or custom-provider body we read.
const MAX_CATALOG_BYTES: usize = 4 << 20;

/// One entry that failed validation, with every bad field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The entry's id (as written, even when the id itself is the problem).
    pub entry: String,
    /// Bad fields, named relative to the entry (`token_url`,
    /// `inputs.tenant.pattern`).
    pub errors: Vec<FieldError>,
}

impl EntryError {
    /// The violations with field names under `prefix` (`""` for a custom
    /// provider's request body, `providers.<id>.` for the catalog file), as
    /// the edge reports bad input.
    pub fn into_invalid(self, prefix: &str) -> Invalid {
        Invalid(
            self.errors
                .into_iter()
                .map(|e| FieldError::new(format!("{prefix}{}", e.field), e.message))
                .collect(),
        )
    }
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "providers.{}.{}: {}", self.entry, e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for EntryError {}

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Too big to be a catalog.
    #[error("the catalog is larger than {MAX_CATALOG_BYTES} bytes")]
    TooLarge,
    /// Not TOML, or the top level is wrong (`version` missing, unknown keys).
    #[error("the catalog is not a valid catalog file: {0}")]
    Syntax(String),
    /// A `version` we do not know.
    #[error("version: {0} is not supported (this build reads version {CATALOG_VERSION})")]
    Version(u32),
    /// One or more entries are malformed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Entries(Vec<EntryError>),
}

/// The validated provider catalog.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Shared: every connection's calls look their entry up.
    providers: BTreeMap<IntegrationId, Arc<Provider>>,
}

impl Catalog {
    /// Reads and validates the catalog file at `path`.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let bytes = std::fs::read(path).map_err(|source| CatalogError::Io {
            path: path.to_owned(),
            source,
        })?;
        if bytes.len() > MAX_CATALOG_BYTES {
            return Err(CatalogError::TooLarge);
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| CatalogError::Syntax("the file is not UTF-8".into()))?;
        Self::parse(&text)
    }

    /// Parses and validates catalog text. Every malformed entry is
    /// reported, not only the first.
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        if text.len() > MAX_CATALOG_BYTES {
            return Err(CatalogError::TooLarge);
        }
        let raw: raw::RawCatalog =
            toml::from_str(text).map_err(|e| CatalogError::Syntax(e.message().to_owned()))?;
        if raw.version != CATALOG_VERSION {
            return Err(CatalogError::Version(raw.version));
        }
        let mut providers = BTreeMap::new();
        let mut failures = Vec::new();
        for (id, value) in raw.providers {
            let entry = serde_path_to_error::deserialize::<_, RawProvider>(value)
                .map_err(|e| vec![serde_field_error(&e)])
                .and_then(|raw| validate::validate(&id, raw));
            match entry {
                Ok(p) => {
                    providers.insert(p.id.clone(), Arc::new(p));
                }
                Err(errors) => failures.push(EntryError { entry: id, errors }),
            }
        }
        if failures.is_empty() {
            Ok(Self { providers })
        } else {
            Err(CatalogError::Entries(failures))
        }
    }

    /// An entry by id.
    pub fn get(&self, id: &str) -> Option<&Arc<Provider>> {
        let id = IntegrationId::parse(id).ok()?;
        self.providers.get(&id)
    }

    /// Every entry, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values().map(Arc::as_ref)
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// Validates ONE entry on its own: the same rules as the catalog file.
/// `id` is the entry's id (a custom provider's, from the request path).
pub fn validate_provider(id: &str, raw: RawProvider) -> Result<Provider, EntryError> {
    validate::validate(id, raw).map_err(|errors| EntryError {
        entry: id.to_owned(),
        errors,
    })
}

/// A tenant's custom provider: one entry as a JSON object (the same fields
/// as a `[providers.<id>]` table), validated like a shipped one.
pub fn parse_custom_provider(id: &str, json: &[u8]) -> Result<Provider, EntryError> {
    let fail = |errors| EntryError {
        entry: id.to_owned(),
        errors,
    };
    if json.len() > MAX_CATALOG_BYTES {
        return Err(fail(vec![FieldError::new("", "the body is too large")]));
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let raw: RawProvider =
        serde_path_to_error::deserialize(&mut de).map_err(|e| fail(vec![serde_field_error(&e)]))?;
    de.end().map_err(|_| {
        fail(vec![FieldError::new(
            "",
            "trailing data after the JSON object",
        )])
    })?;
    validate_provider(id, raw)
}

/// Names the field a serde error is about: serde_path_to_error's path
/// already ends at the offending key (an unknown field included).
fn serde_field_error<E: fmt::Display>(e: &serde_path_to_error::Error<E>) -> FieldError {
    let path = e.path().to_string();
    let field = if path == "." { String::new() } else { path };
    let message = e.inner().to_string();
    // Keep serde's first sentence; "at line 3 column 5" is about the
    // document, and the field already says where.
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .trim()
        .to_owned();
    FieldError::new(field, message)
}
