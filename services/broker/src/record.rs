//! A connection as the broker keeps it: one connection record in the
//! credential store (`GetConnection`/`PutConnection`, sealed with the
//! owner's key, versioned with check-and-set), a flat map of fields.
//!
//! Every write of a record is conditional on the version read, so two
//! brokers never overwrite each other: the refresh protocol (design brief
//! §4) takes a *lease* in the record (`lease-holder`, `lease-until`) with one
//! conditional write, calls the provider, and writes the new tokens with the
//! next. Token values are [`SecretString`]s from the wire to the wire.
//!
//! Field names (all `[a-z0-9._-]`, as the store requires):
//!
//! | field | holds |
//! | --- | --- |
//! | `integration`, `auth-mode`, `status` | what and how; `active`, `needs_reauth`, `refresh_failing` |
//! | `access-token`, `refresh-token` | OAuth tokens |
//! | `api-key`, `username`, `password` | stored credentials (no flow) |
//! | `expires-at` | the access token's expiry, Unix seconds |
//! | `scopes` | granted scopes, space-separated |
//! | `meta.<name>`, `input.<name>` | provider metadata kept; per-connection inputs |
//! | `created-at`, `updated-at` | Unix seconds |
//! | `lease-holder`, `lease-until` | the refresh lease: which broker, until when (Unix ms) |
//! | `failures`, `retry-at` | transient refresh failures in a row; not before (Unix seconds) |

use std::collections::{BTreeMap, HashMap};

use locksmith_domain::IntegrationId;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::catalog::AuthMode;

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Usable.
    Active,
    /// The provider refused the refresh token: the user must authorize again.
    NeedsReauth,
    /// Refreshes fail for a transient reason; retried with backoff.
    RefreshFailing,
}

impl Status {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::NeedsReauth => "needs_reauth",
            Status::RefreshFailing => "refresh_failing",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Status::Active,
            "needs_reauth" => Status::NeedsReauth,
            "refresh_failing" => Status::RefreshFailing,
            _ => return None,
        })
    }
}

/// The refresh lease: one broker may call the provider for this connection
/// until `until`; everyone else waits for the record's next version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The holder's id (one per broker process).
    pub holder: String,
    /// When the lease lapses whether or not its holder finished.
    pub until: OffsetDateTime,
}

/// One connection, decoded from its record.
#[derive(Clone, Debug)]
pub struct ConnectionState {
    /// The integration it connects to.
    pub integration: IntegrationId,
    /// How it authenticates.
    pub auth_mode: AuthMode,
    /// Where it stands.
    pub status: Status,
    /// The OAuth access token.
    pub access_token: Option<SecretString>,
    /// The OAuth refresh token.
    pub refresh_token: Option<SecretString>,
    /// A stored API key.
    pub api_key: Option<SecretString>,
    /// A stored basic-auth user name.
    pub username: Option<String>,
    /// A stored basic-auth password.
    pub password: Option<SecretString>,
    /// When the access token expires, if it does.
    pub expires_at: Option<OffsetDateTime>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Provider metadata the catalog keeps (`workspace_id`).
    pub metadata: BTreeMap<String, String>,
    /// Per-connection inputs (`tenant` for Microsoft).
    pub inputs: BTreeMap<String, String>,
    /// When the connection was created.
    pub created_at: OffsetDateTime,
    /// When its credentials last changed.
    pub updated_at: OffsetDateTime,
    /// The refresh lease, if one was taken and not released.
    pub lease: Option<Lease>,
    /// Transient refresh failures in a row.
    pub failures: u32,
    /// No refresh before this (backoff after transient failures).
    pub retry_at: Option<OffsetDateTime>,
}

/// Why a stored record cannot be read as a connection (a bug or tampering:
/// the store sealed and authenticated whatever is there).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("connection record field {field}: {reason}")]
pub struct RecordError {
    /// The field.
    pub field: String,
    /// What is wrong (never the value).
    pub reason: &'static str,
}

fn auth_mode_str(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::OAuth2AuthorizationCode => "oauth2_authorization_code",
        AuthMode::OAuth2ClientCredentials => "oauth2_client_credentials",
        AuthMode::ApiKey => "api_key",
        AuthMode::Basic => "basic",
    }
}

fn parse_auth_mode(s: &str) -> Option<AuthMode> {
    Some(match s {
        "oauth2_authorization_code" => AuthMode::OAuth2AuthorizationCode,
        "oauth2_client_credentials" => AuthMode::OAuth2ClientCredentials,
        "api_key" => AuthMode::ApiKey,
        "basic" => AuthMode::Basic,
        _ => return None,
    })
}

impl ConnectionState {
    /// A new connection of `integration`, active, created at `now`.
    pub fn new(integration: IntegrationId, auth_mode: AuthMode, now: OffsetDateTime) -> Self {
        Self {
            integration,
            auth_mode,
            status: Status::Active,
            access_token: None,
            refresh_token: None,
            api_key: None,
            username: None,
            password: None,
            expires_at: None,
            scopes: Vec::new(),
            metadata: BTreeMap::new(),
            inputs: BTreeMap::new(),
            created_at: now,
            updated_at: now,
            lease: None,
            failures: 0,
            retry_at: None,
        }
    }

    /// Whether the access token is usable at `now` for at least `skew`.
    pub fn fresh_at(&self, now: OffsetDateTime, skew: time::Duration) -> bool {
        self.access_token.is_some() && self.expires_at.is_none_or(|at| now + skew < at)
    }

    /// Whether another holder's lease is still running at `now`.
    pub fn leased_by_other(&self, me: &str, now: OffsetDateTime) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.holder != me && l.until > now)
    }

    /// The record's fields, for `PutConnection`.
    pub fn to_fields(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let mut put = |k: &str, v: String| {
            out.insert(k.to_owned(), v);
        };
        put("integration", self.integration.as_str().to_owned());
        put("auth-mode", auth_mode_str(self.auth_mode).to_owned());
        put("status", self.status.as_str().to_owned());
        let secret = |v: &Option<SecretString>| v.as_ref().map(|s| s.expose_secret().to_owned());
        for (k, v) in [
            ("access-token", secret(&self.access_token)),
            ("refresh-token", secret(&self.refresh_token)),
            ("api-key", secret(&self.api_key)),
            ("password", secret(&self.password)),
            ("username", self.username.clone()),
            (
                "expires-at",
                self.expires_at.map(|t| t.unix_timestamp().to_string()),
            ),
            (
                "retry-at",
                self.retry_at.map(|t| t.unix_timestamp().to_string()),
            ),
        ] {
            if let Some(v) = v {
                put(k, v);
            }
        }
        if !self.scopes.is_empty() {
            put("scopes", self.scopes.join(" "));
        }
        for (k, v) in &self.metadata {
            put(&format!("meta.{k}"), v.clone());
        }
        for (k, v) in &self.inputs {
            put(&format!("input.{k}"), v.clone());
        }
        put("created-at", self.created_at.unix_timestamp().to_string());
        put("updated-at", self.updated_at.unix_timestamp().to_string());
        if let Some(lease) = &self.lease {
            put("lease-holder", lease.holder.clone());
            let ms = lease.until.unix_timestamp_nanos() / 1_000_000;
            put("lease-until", ms.to_string());
        }
        if self.failures > 0 {
            put("failures", self.failures.to_string());
        }
        out
    }

    /// Decodes a record's fields.
    pub fn from_fields(mut fields: HashMap<String, String>) -> Result<Self, RecordError> {
        let bad = |field: &str, reason| RecordError {
            field: field.to_owned(),
            reason,
        };
        let mut take = |k: &str| fields.remove(k);
        let integration = take("integration")
            .and_then(|v| IntegrationId::parse(&v).ok())
            .ok_or_else(|| bad("integration", "missing or not an integration id"))?;
        let auth_mode = take("auth-mode")
            .and_then(|v| parse_auth_mode(&v))
            .ok_or_else(|| bad("auth-mode", "missing or unknown"))?;
        let status = take("status")
            .and_then(|v| Status::parse(&v))
            .ok_or_else(|| bad("status", "missing or unknown"))?;
        let seconds =
            |field: &str, v: Option<String>| -> Result<Option<OffsetDateTime>, RecordError> {
                v.map(|v| {
                    v.parse::<i64>()
                        .ok()
                        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
                        .ok_or_else(|| bad(field, "not a Unix time"))
                })
                .transpose()
            };
        let expires_at = seconds("expires-at", take("expires-at"))?;
        let retry_at = seconds("retry-at", take("retry-at"))?;
        let created_at = seconds("created-at", take("created-at"))?
            .ok_or_else(|| bad("created-at", "missing"))?;
        let updated_at = seconds("updated-at", take("updated-at"))?
            .ok_or_else(|| bad("updated-at", "missing"))?;
        let lease = match (take("lease-holder"), take("lease-until")) {
            (Some(holder), Some(until)) => {
                let until = until
                    .parse::<i128>()
                    .ok()
                    .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
                    .ok_or_else(|| bad("lease-until", "not a Unix time in milliseconds"))?;
                Some(Lease { holder, until })
            }
            (None, None) => None,
            _ => return Err(bad("lease-holder", "a lease needs both holder and until")),
        };
        let failures = take("failures")
            .map(|v| v.parse::<u32>().map_err(|_| bad("failures", "not a count")))
            .transpose()?
            .unwrap_or(0);
        let secret = |v: Option<String>| v.map(SecretString::from);
        let access_token = secret(take("access-token"));
        let refresh_token = secret(take("refresh-token"));
        let api_key = secret(take("api-key"));
        let password = secret(take("password"));
        let username = take("username");
        let scopes = take("scopes")
            .map(|s| {
                s.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut metadata = BTreeMap::new();
        let mut inputs = BTreeMap::new();
        for (k, v) in fields {
            if let Some(name) = k.strip_prefix("meta.") {
                metadata.insert(name.to_owned(), v);
            } else if let Some(name) = k.strip_prefix("input.") {
                inputs.insert(name.to_owned(), v);
            } else {
                return Err(bad(&k, "not a field of a connection record"));
            }
        }
        Ok(Self {
            integration,
            auth_mode,
            status,
            access_token,
            refresh_token,
            api_key,
            username,
            password,
            expires_at,
            scopes,
            metadata,
            inputs,
            created_at,
            updated_at,
            lease,
            failures,
            retry_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(s).unwrap()
    }

    #[test]
    fn every_field_round_trips_and_unknown_ones_are_refused() {
        let mut c = ConnectionState::new(
            IntegrationId::parse("github").unwrap(),
            AuthMode::OAuth2AuthorizationCode,
            at(1_800_000_000),
        );
        c.access_token = Some("gho_a".into());
        c.refresh_token = Some("ghr_r".into());
        c.expires_at = Some(at(1_800_003_600));
        c.scopes = vec!["repo".into(), "read:user".into()];
        c.metadata.insert("workspace_id".into(), "w1".into());
        c.inputs.insert("tenant".into(), "common".into());
        c.lease = Some(Lease {
            holder: "broker-1".into(),
            until: OffsetDateTime::from_unix_timestamp_nanos(1_800_000_030_123_000_000).unwrap(),
        });
        c.failures = 2;
        c.status = Status::RefreshFailing;
        let fields = c.to_fields();
        let back = ConnectionState::from_fields(fields.clone()).unwrap();
        assert_eq!(back.to_fields(), fields);
        assert_eq!(back.refresh_token.unwrap().expose_secret(), "ghr_r");
        assert_eq!(back.lease, c.lease);
        assert!(!format!("{c:?}").contains("gho_a"));

        let mut extra = fields.clone();
        extra.insert("surprise".into(), "x".into());
        assert_eq!(
            ConnectionState::from_fields(extra).unwrap_err().field,
            "surprise"
        );
        let mut half_lease = fields;
        half_lease.remove("lease-until");
        assert!(ConnectionState::from_fields(half_lease).is_err());
    }

    #[test]
    fn freshness_and_leases_follow_the_clock_given() {
        let mut c = ConnectionState::new(
            IntegrationId::parse("github").unwrap(),
            AuthMode::OAuth2AuthorizationCode,
            at(0),
        );
        assert!(!c.fresh_at(at(0), time::Duration::ZERO), "no token yet");
        c.access_token = Some("t".into());
        c.expires_at = Some(at(100));
        assert!(c.fresh_at(at(50), time::Duration::seconds(30)));
        assert!(!c.fresh_at(at(80), time::Duration::seconds(30)));
        c.lease = Some(Lease {
            holder: "other".into(),
            until: at(60),
        });
        assert!(c.leased_by_other("me", at(59)));
        assert!(!c.leased_by_other("me", at(60)));
        assert!(!c.leased_by_other("other", at(59)));
    }
}
