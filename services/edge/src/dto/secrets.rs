//! The JSON shapes of the secret routes and their conversions from the
//! credential store's messages. Field values are secrets: they are held in
//! [`SecretValue`] (zeroed on drop, never in `Debug`) from the body parser
//! to the gRPC request and from the gRPC answer to the response body.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
};

use locksmith_domain::secrets::SecretRef;
use locksmith_proto::credstore::v1 as pb;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::{de, rfc3339};

/// One field value of a secret.
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// Takes ownership of a value read from the credential store.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value, for the one request that carries it on.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Body of `PUT …/secrets/{name}`: the new version's fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// Field name → value, 1 to 64 fields. Known names (seed 000's
    /// catalogue, e.g. `email` of a bot) take only their own fields, each of
    /// its type (a port is a port, a URL a URL).
    #[serde(deserialize_with = "de::unique_map")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub fields: HashMap<String, SecretValue>,
    /// Check-and-set: the version this write is based on; 0 creates only
    /// (refused if the secret exists, even with every version deleted).
    /// Absent: written whatever the current version is.
    #[serde(default, deserialize_with = "de::optional_expected_version")]
    pub expected_version: Option<u64>,
}

impl PutSecret {
    /// The credential store's request for the secret at `name`.
    pub fn into_request(self, name: String) -> pb::PutSecretRequest {
        pb::PutSecretRequest {
            name,
            fields: self
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect(),
            expected_version: self.expected_version.unwrap_or_default(),
            unconditional: self.expected_version.is_none(),
        }
    }
}

/// A version of a secret, with its values.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    /// The secret's name at its scope (`api-keys/openai`).
    pub name: String,
    /// The scope that holds it, as a resource name (`system`,
    /// `tenants/acme/orgs/sales`). For a resolve: the scope that answered.
    pub scope: String,
    /// The version; versions start at 1.
    pub version: u64,
    /// When this version was written (RFC 3339).
    pub created_at: String,
    /// Field name → value.
    #[schema(value_type = BTreeMap<String, String>)]
    pub fields: BTreeMap<String, SecretValue>,
}

impl SecretView {
    /// The view of a secret the credential store answered; `None` if its
    /// name is not a resource name (the store's bug).
    pub fn from_pb(secret: pb::Secret) -> Option<Self> {
        let at = SecretRef::parse(&secret.name).ok()?;
        Some(Self {
            name: at.name.as_str().to_owned(),
            scope: at.scope.storage_path(),
            version: secret.version,
            created_at: rfc3339(secret.create_time),
            fields: secret
                .fields
                .into_iter()
                .map(|(k, v)| (k, SecretValue::new(v)))
                .collect(),
        })
    }
}

/// The version a write made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecretWritten {
    /// The secret's name at its scope.
    pub name: String,
    /// The scope that holds it, as a resource name.
    pub scope: String,
    /// The version written.
    pub version: u64,
}

/// A page of a scope's secret names; never values.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    /// The names of the scope's own secrets (`api-keys/openai`), sorted.
    /// Secrets of child scopes are not listed.
    pub names: Vec<String>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_show_in_debug() {
        let body: PutSecret =
            serde_json::from_str(r#"{"fields":{"api-key":"sk-live-123"},"expected_version":0}"#)
                .unwrap();
        assert!(!format!("{body:?}").contains("sk-live"));
        let request = body.into_request("tenants/a/secrets/llm".into());
        assert_eq!(request.fields["api-key"], "sk-live-123");
        assert_eq!(
            (request.expected_version, request.unconditional),
            (0, false)
        );
    }

    #[test]
    fn absent_expected_version_is_unconditional() {
        let body: PutSecret = serde_json::from_str(r#"{"fields":{"a":"b"}}"#).unwrap();
        let request = body.into_request("system/secrets/x".into());
        assert_eq!((request.expected_version, request.unconditional), (0, true));
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        assert!(serde_json::from_str::<PutSecret>(r#"{"fields":{"a":"1","a":"2"}}"#).is_err());
    }
}
