//! The JSON shapes of the OAuth and integration routes and their conversions
//! to and from the broker's messages. Credential values (API keys,
//! passwords, tokens) are held in [`SecretValue`] from the body parser to
//! the gRPC request and are never answered: a connection's view carries
//! metadata only, because the broker's `Connection` has nothing else.

use std::collections::{BTreeMap, HashMap};

use locksmith_proto::broker::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{SecretValue, de, rfc3339};

/// Body of `POST /oauth/authorize/{integration}`: who the connection will
/// belong to and what to ask the provider for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    /// The tenant the connection belongs to (or whose member it is).
    pub tenant_id: String,
    /// An org of the tenant, to connect the org (or, with `bot_id` or
    /// `user_id`, one of its members).
    #[serde(default)]
    pub org_id: Option<String>,
    /// A bot of the org (needs `org_id`; not with `user_id`).
    #[serde(default)]
    pub bot_id: Option<String>,
    /// A user of the org (needs `org_id`; not with `bot_id`).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Scopes to ask for; absent or empty means the catalog's defaults.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Where the callback sends the browser when the flow ends; must be on
    /// the tenant's allow-list. Absent: the callback answers JSON.
    #[serde(default)]
    pub return_url: Option<String>,
    /// Per-connection inputs the integration declares (Microsoft `tenant`).
    #[serde(default, deserialize_with = "de::present_unique_map")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub inputs: Option<HashMap<String, String>>,
}

/// Answer of `POST /oauth/authorize/{integration}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Authorization {
    /// The provider's authorization URL to send the user's browser to.
    pub authorization_url: String,
    /// The state in that URL: single use, for correlation only.
    pub state: String,
    /// When the state stops being accepted (RFC 3339).
    pub expires_at: String,
}

impl From<pb::StartAuthorizationResponse> for Authorization {
    fn from(r: pb::StartAuthorizationResponse) -> Self {
        Self {
            authorization_url: r.authorization_url,
            state: r.state,
            expires_at: rfc3339(r.expire_time),
        }
    }
}

/// A connection: metadata, never token values.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    /// The connection's resource name (`tenants/acme/integrations/github`).
    pub name: String,
    /// The integration (`github`).
    pub integration: String,
    /// `oauth2_code`, `oauth2_client_credentials`, `api_key` or `basic`.
    pub auth_mode: String,
    /// `active`, `needs_reauth` or `refresh_failing`.
    pub status: String,
    /// Scopes granted (else as requested).
    pub scopes: Vec<String>,
    /// When the access token expires (RFC 3339); absent if it does not.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_at: Option<String>,
    /// Provider metadata the catalog keeps (`workspace_id`, `instance_url`).
    pub metadata: BTreeMap<String, String>,
    /// When the connection was created (RFC 3339).
    pub created_at: String,
    /// When its tokens last changed (RFC 3339).
    pub updated_at: String,
    /// Whether a refresh token is held (its value is never shown).
    pub has_refresh_token: bool,
}

fn auth_mode(mode: pb::AuthMode) -> &'static str {
    match mode {
        pb::AuthMode::Oauth2Code => "oauth2_code",
        pb::AuthMode::Oauth2ClientCredentials => "oauth2_client_credentials",
        pb::AuthMode::ApiKey => "api_key",
        pb::AuthMode::Basic => "basic",
        pb::AuthMode::Unspecified => "unspecified",
    }
}

fn status(status: pb::ConnectionStatus) -> &'static str {
    match status {
        pb::ConnectionStatus::Active => "active",
        pb::ConnectionStatus::NeedsReauth => "needs_reauth",
        pb::ConnectionStatus::RefreshFailing => "refresh_failing",
        pb::ConnectionStatus::Unspecified => "unspecified",
    }
}

impl From<pb::Connection> for ConnectionView {
    fn from(c: pb::Connection) -> Self {
        Self {
            auth_mode: auth_mode(c.auth_mode()).to_owned(),
            status: status(c.status()).to_owned(),
            name: c.name,
            integration: c.integration,
            scopes: c.scopes,
            expires_at: c.expire_time.map(|t| rfc3339(Some(t))),
            metadata: c.metadata.into_iter().collect(),
            created_at: rfc3339(c.create_time),
            updated_at: rfc3339(c.update_time),
            has_refresh_token: c.has_refresh_token,
        }
    }
}

/// A page of an owner's connections, by integration.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    /// The connections (metadata only).
    pub connections: Vec<ConnectionView>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_page_token: Option<String>,
}

/// Answer of deleting a connection whose provider was asked to revoke it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    /// Whether the provider confirmed the revocation (the stored
    /// credentials are erased either way).
    pub revoked_at_provider: bool,
}

/// An API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyBody {
    /// The key (never answered).
    #[schema(value_type = String)]
    pub key: SecretValue,
}

/// A user name and password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicBody {
    /// The user name.
    pub username: String,
    /// The password (never answered).
    #[schema(value_type = String)]
    pub password: SecretValue,
}

/// Tokens obtained elsewhere.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokensBody {
    /// The access token (never answered).
    #[schema(value_type = String)]
    pub access_token: SecretValue,
    /// The refresh token, if any (never answered).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub refresh_token: Option<SecretValue>,
    /// Seconds until the access token expires; absent: the catalog's assumption.
    #[serde(default, deserialize_with = "de::optional_whole_u32")]
    #[schema(minimum = 0, maximum = 4_294_967_295_u64)]
    pub expires_in: Option<u32>,
    /// Scopes the tokens carry.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// A client-credentials connection: tokens come from the provider with the
/// OAuth app's client id and secret, on demand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsBody {
    /// Scopes to ask for; absent or empty: the catalog's defaults.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// What to store, tagged by its kind (`{"api_key": {"key": "…"}}`); which
/// kind an integration takes is its auth mode in the catalog.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialsBody {
    /// An API key.
    ApiKey(ApiKeyBody),
    /// HTTP basic credentials.
    Basic(BasicBody),
    /// Imported tokens.
    Tokens(TokensBody),
    /// A client-credentials connection.
    ClientCredentials(ClientCredentialsBody),
}

/// Body of `POST …/integrations/{integration}/credentials`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreCredentialsBody {
    /// The credentials, tagged by kind.
    pub credentials: CredentialsBody,
    /// Per-connection inputs the integration declares.
    #[serde(default, deserialize_with = "de::present_unique_map")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub inputs: Option<HashMap<String, String>>,
}

impl StoreCredentialsBody {
    /// The broker's request for connection `name`. The values are copied
    /// into the request, the one place they travel on to.
    pub fn into_request(self, name: String) -> pb::StoreCredentialsRequest {
        use pb::store_credentials_request::Credentials as C;
        let credentials = match self.credentials {
            CredentialsBody::ApiKey(k) => C::ApiKey(pb::ApiKeyCredentials {
                key: k.key.expose().to_owned(),
            }),
            CredentialsBody::Basic(b) => C::Basic(pb::BasicCredentials {
                username: b.username,
                password: b.password.expose().to_owned(),
            }),
            CredentialsBody::Tokens(t) => C::Tokens(pb::ImportedTokens {
                access_token: t.access_token.expose().to_owned(),
                refresh_token: t
                    .refresh_token
                    .as_ref()
                    .map(|r| r.expose().to_owned())
                    .unwrap_or_default(),
                expires_in: t.expires_in.unwrap_or_default(),
                scopes: t.scopes.unwrap_or_default(),
            }),
            CredentialsBody::ClientCredentials(c) => C::ClientCredentials(pb::ClientCredentials {
                scopes: c.scopes.unwrap_or_default(),
            }),
        };
        pb::StoreCredentialsRequest {
            name,
            credentials: Some(credentials),
            inputs: self.inputs.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_values_never_show_in_debug() {
        let body: StoreCredentialsBody = serde_json::from_str(
            r#"{"credentials":{"tokens":{"access_token":"at-secret-1","refresh_token":"rt-secret-2"}}}"#,
        )
        .unwrap();
        let shown = format!("{body:?}");
        assert!(
            !shown.contains("at-secret-1") && !shown.contains("rt-secret-2"),
            "{shown}"
        );
        let request = body.into_request("tenants/a/integrations/x".into());
        let Some(pb::store_credentials_request::Credentials::Tokens(t)) = request.credentials
        else {
            panic!("tokens expected");
        };
        assert_eq!(
            (t.access_token.as_str(), t.refresh_token.as_str()),
            ("at-secret-1", "rt-secret-2")
        );
    }

    #[test]
    fn unknown_fields_and_repeated_inputs_are_refused() {
        for body in [
            r#"{"credentials":{"api_key":{"key":"k","extra":1}}}"#,
            r#"{"credentials":{"api_key":{"key":"k"}},"other":1}"#,
            r#"{"credentials":{"api_key":{"key":"k"}},"inputs":{"a":"1","a":"2"}}"#,
            r#"{"credentials":{"api_key":{"key":"k"},"basic":{"username":"u","password":"p"}}}"#,
        ] {
            assert!(
                serde_json::from_str::<StoreCredentialsBody>(body).is_err(),
                "{body}"
            );
        }
        assert!(
            serde_json::from_str::<AuthorizeBody>(
                r#"{"tenant_id":"a","inputs":{"t":"1","t":"2"}}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<AuthorizeBody>(r#"{"tenant_id":"a","x":1}"#).is_err());
    }
}
