//! Debug for the messages that carry a credential (`build.rs` skips the
//! derived one): every field but the secret ones. Secret field maps show
//! their field names only, sorted, so a log line says what was touched
//! without saying what it holds.

use std::{collections::HashMap, fmt};

use crate::{
    broker::v1::{
        ApiKeyCredentials, BasicCredentials, CompleteAuthorizationRequest, GetAccessTokenResponse,
        ImportedTokens, StartAuthorizationResponse,
    },
    credstore::v1::{Connection, PutConnectionRequest, PutSecretRequest, Secret},
    registry::v1::{CreateApiKeyResponse, VerifyApiKeyRequest},
};

impl fmt::Debug for VerifyApiKeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyApiKeyRequest")
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl fmt::Debug for CreateApiKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateApiKeyResponse")
            .field("api_key", &self.api_key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// A secret's fields as `{"name": [redacted], …}`, sorted by name.
struct RedactedFields<'a>(&'a HashMap<String, String>);

impl fmt::Debug for RedactedFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_map()
            .entries(names.into_iter().map(|n| (n, "[redacted]")))
            .finish()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("create_time", &self.create_time)
            .field("fields", &RedactedFields(&self.fields))
            .finish()
    }
}

impl fmt::Debug for PutSecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutSecretRequest")
            .field("name", &self.name)
            .field("fields", &RedactedFields(&self.fields))
            .field("expected_version", &self.expected_version)
            .field("unconditional", &self.unconditional)
            .finish()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("update_time", &self.update_time)
            .field("fields", &RedactedFields(&self.fields))
            .finish()
    }
}

impl fmt::Debug for PutConnectionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutConnectionRequest")
            .field("name", &self.name)
            .field("fields", &RedactedFields(&self.fields))
            .field("expected_version", &self.expected_version)
            .finish()
    }
}

impl fmt::Debug for ApiKeyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyCredentials")
            .field("key", &"[redacted]")
            .finish()
    }
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl fmt::Debug for ImportedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedTokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &if self.refresh_token.is_empty() {
                    ""
                } else {
                    "[redacted]"
                },
            )
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The authorization code and the state are bearer values until the flow
/// completes: together they could finish it.
impl fmt::Debug for CompleteAuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompleteAuthorizationRequest")
            .field("integration", &self.integration)
            .field("state", &"[redacted]")
            .field(
                "code",
                &if self.code.is_empty() {
                    ""
                } else {
                    "[redacted]"
                },
            )
            .field("error", &self.error)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// The state is a bearer value until the flow completes, in its own field
/// and in the URL's query; the URL is shown up to its query.
impl fmt::Debug for StartAuthorizationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self
            .authorization_url
            .split_once('?')
            .map_or(self.authorization_url.as_str(), |(base, _)| base);
        f.debug_struct("StartAuthorizationResponse")
            .field("authorization_url", &format_args!("{url}?[redacted]"))
            .field("state", &"[redacted]")
            .field("expire_time", &self.expire_time)
            .finish()
    }
}

impl fmt::Debug for GetAccessTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetAccessTokenResponse")
            .field("credential", &"[redacted]")
            .field("expire_time", &self.expire_time)
            .field("version", &self.version)
            .field("api", &self.api)
            .finish()
    }
}

/// A header: its name, never its value (it may be a caller's credential).
impl fmt::Debug for crate::proxy::v1::Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("name", &self.name)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// Proxied messages: the head (header values redacted), the body's length.
macro_rules! body_redacted {
    ($($message:ident),+) => {$(
        impl fmt::Debug for crate::proxy::v1::$message {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($message))
                    .field("head", &self.head)
                    .field("body_len", &self.body.len())
                    .finish()
            }
        }
    )+};
}
body_redacted!(
    CallRequest,
    CallResponse,
    StreamCallRequest,
    StreamCallResponse
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credstore::v1::{GetConnectionResponse, GetSecretResponse, ResolveSecretResponse};

    #[test]
    fn keys_never_reach_debug_output() {
        let key = "lsk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let verify = VerifyApiKeyRequest { secret: key.into() };
        let created = CreateApiKeyResponse {
            api_key: None,
            secret: key.into(),
        };
        for text in [format!("{verify:?}"), format!("{created:?}")] {
            assert!(!text.contains("AAAA"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }

    #[test]
    fn broker_credentials_never_reach_debug_output() {
        use crate::broker::v1::{StoreCredentialsRequest, store_credentials_request::Credentials};
        let secret = "tok-SECRET".to_owned();
        let messages = [
            format!(
                "{:?}",
                StoreCredentialsRequest {
                    name: "tenants/a/integrations/github".into(),
                    credentials: Some(Credentials::Tokens(ImportedTokens {
                        access_token: secret.clone(),
                        refresh_token: secret.clone(),
                        expires_in: 60,
                        scopes: vec![],
                    })),
                    inputs: Default::default(),
                }
            ),
            format!(
                "{:?}",
                ApiKeyCredentials {
                    key: secret.clone()
                }
            ),
            format!(
                "{:?}",
                CompleteAuthorizationRequest {
                    integration: "github".into(),
                    state: secret.clone(),
                    code: secret.clone(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                StartAuthorizationResponse {
                    authorization_url: format!("https://p.example/auth?state={secret}&x=1"),
                    state: secret.clone(),
                    expire_time: None,
                }
            ),
            format!(
                "{:?}",
                BasicCredentials {
                    username: "u".into(),
                    password: secret.clone(),
                }
            ),
            format!(
                "{:?}",
                GetAccessTokenResponse {
                    credential: secret.clone(),
                    expire_time: None,
                    version: 1,
                    api: None,
                }
            ),
        ];
        for text in messages {
            assert!(!text.contains("SECRET"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }

    #[test]
    fn secret_values_never_reach_debug_output() {
        let fields: HashMap<String, String> = [("api-key".to_owned(), "sk-live-SECRET".to_owned())]
            .into_iter()
            .collect();
        let secret = Secret {
            name: "system/secrets/llm".into(),
            version: 2,
            create_time: None,
            fields: fields.clone(),
        };
        let put = PutSecretRequest {
            name: "system/secrets/llm".into(),
            fields,
            expected_version: 1,
            unconditional: false,
        };
        // Messages wrapping a Secret use its Debug through the derived one.
        let got = GetSecretResponse {
            secret: Some(secret.clone()),
        };
        let resolved = ResolveSecretResponse {
            secret: Some(secret.clone()),
            answering_scope: "system".into(),
        };
        let connection = Connection {
            name: "tenants/a/integrations/github".into(),
            version: 1,
            update_time: None,
            fields: secret.fields.clone(),
        };
        let put_connection = PutConnectionRequest {
            name: connection.name.clone(),
            fields: secret.fields.clone(),
            expected_version: 0,
        };
        let got_connection = GetConnectionResponse {
            connection: Some(connection.clone()),
        };
        for text in [
            format!("{secret:?}"),
            format!("{put:?}"),
            format!("{got:?}"),
            format!("{resolved:?}"),
            format!("{connection:?}"),
            format!("{put_connection:?}"),
            format!("{got_connection:?}"),
        ] {
            assert!(!text.contains("SECRET"), "{text}");
            assert!(text.contains("api-key"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }
}
