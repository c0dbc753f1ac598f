//! The flows' domain types: what the gRPC layer converts to and from.

use std::collections::BTreeMap;

use locksmith_domain::ConnectionRef;
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::{
    catalog::AuthMode,
    error::BrokerError,
    record::{ConnectionState, Status},
    state::State,
};

/// A connection as callers see it: metadata, never token values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    /// Its resource name.
    pub name: String,
    /// The integration.
    pub integration: String,
    /// How it authenticates.
    pub auth_mode: AuthMode,
    /// Where it stands.
    pub status: Status,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// When the access token expires.
    pub expires_at: Option<OffsetDateTime>,
    /// Provider metadata kept.
    pub metadata: BTreeMap<String, String>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Tokens last changed.
    pub updated_at: OffsetDateTime,
    /// Whether a refresh token is held.
    pub has_refresh_token: bool,
}

impl ConnectionView {
    /// The view of a stored connection at `at`.
    pub fn of(at: &ConnectionRef, state: &ConnectionState) -> Self {
        Self {
            name: at.resource_name(),
            integration: state.integration.to_string(),
            auth_mode: state.auth_mode,
            status: state.status,
            scopes: state.scopes.clone(),
            expires_at: state.expires_at,
            metadata: state.metadata.clone(),
            created_at: state.created_at,
            updated_at: state.updated_at,
            has_refresh_token: state.refresh_token.is_some(),
        }
    }
}

/// StartAuthorization's arguments.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    /// Owner resource name (`tenants/acme/orgs/sales`).
    pub owner: String,
    /// Integration id.
    pub integration: String,
    /// Scopes; empty: the catalog's defaults.
    pub scopes: Vec<String>,
    /// Return URL; empty: JSON.
    pub return_url: String,
    /// Per-connection inputs.
    pub inputs: BTreeMap<String, String>,
}

/// StartAuthorization's answer. The state is secret until the user uses it.
pub struct Started {
    /// The provider URL to send the user to.
    pub authorization_url: String,
    /// The state in it.
    pub state: State,
    /// When the state stops being accepted.
    pub expires_at: OffsetDateTime,
}

/// CompleteAuthorization's arguments: the provider's redirect.
pub struct CompleteRequest {
    /// The integration in the callback path.
    pub integration: String,
    /// `state`.
    pub state: String,
    /// `code` (secret).
    pub code: SecretString,
    /// The provider's `error`, if any.
    pub error: String,
    /// The redirect URI the callback was served at.
    pub redirect_uri: String,
}

/// CompleteAuthorization's answer.
#[derive(Debug)]
pub enum Completed {
    /// The flow stored a connection.
    Connected {
        /// The connection created or replaced.
        connection: ConnectionView,
        /// Where to send the browser; `None`: JSON.
        return_url: Option<String>,
    },
    /// The flow ended without a connection (nothing stored) and was started
    /// with a return URL, so the browser goes back there with `error`. A
    /// flow without one answers its refusal as an error instead.
    Refused {
        /// Why, as a fixed code.
        error: FlowError,
        /// The flow's return URL.
        return_url: String,
    },
}

impl Completed {
    /// A flow that ends without a connection: [`Completed::Refused`] when it
    /// has a return URL, else `refusal` as the call's error.
    pub(crate) fn refused(
        return_url: Option<String>,
        error: FlowError,
        refusal: BrokerError,
    ) -> Result<Self, BrokerError> {
        match return_url {
            Some(return_url) => Ok(Self::Refused { error, return_url }),
            None => Err(refusal),
        }
    }
}

/// Why a flow ended without a connection, as the browser may be told: a
/// fixed code, never the provider's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowError {
    /// The provider's `error=access_denied` (the user declined).
    AccessDenied,
    /// Another error the provider reported on the redirect.
    ProviderError,
    /// The provider refused to exchange the code for tokens.
    ExchangeFailed,
}

impl FlowError {
    /// The provider's `error` parameter as one of these.
    pub(crate) fn of_provider(code: &str) -> Self {
        if code == "access_denied" {
            Self::AccessDenied
        } else {
            Self::ProviderError
        }
    }

    /// The code the browser is sent (`error=<code>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::ProviderError => "provider_error",
            Self::ExchangeFailed => "exchange_failed",
        }
    }
}

/// What StoreCredentials stores.
pub enum Credentials {
    /// An API key.
    ApiKey(SecretString),
    /// A user name and password.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// Tokens obtained elsewhere.
    Tokens {
        /// Access token.
        access_token: SecretString,
        /// Refresh token, if any.
        refresh_token: Option<SecretString>,
        /// Seconds to expiry; 0: the catalog's assumption.
        expires_in: u32,
        /// Scopes they carry.
        scopes: Vec<String>,
    },
    /// A client-credentials connection (tokens fetched on demand).
    ClientCredentials {
        /// Scopes to ask for; empty: the catalog's defaults.
        scopes: Vec<String>,
    },
}

impl Credentials {
    /// The auth mode these credentials are for, and their wire name.
    pub(crate) fn mode(&self) -> (AuthMode, &'static str) {
        match self {
            Self::ApiKey(_) => (AuthMode::ApiKey, "api_key"),
            Self::Basic { .. } => (AuthMode::Basic, "basic"),
            Self::Tokens { .. } => (AuthMode::OAuth2AuthorizationCode, "tokens"),
            Self::ClientCredentials { .. } => {
                (AuthMode::OAuth2ClientCredentials, "client_credentials")
            }
        }
    }
}

/// The credentials message that fits `mode`, for error messages.
pub(crate) fn expected_credentials(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::ApiKey => "api_key",
        AuthMode::Basic => "basic",
        AuthMode::OAuth2AuthorizationCode => "tokens (or authorize it)",
        AuthMode::OAuth2ClientCredentials => "client_credentials",
    }
}

/// One page of connections.
#[derive(Debug)]
pub struct ConnectionList {
    /// By integration.
    pub connections: Vec<ConnectionView>,
    /// Empty on the last page.
    pub next_page_token: String,
}
