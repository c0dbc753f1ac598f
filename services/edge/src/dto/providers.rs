//! The JSON shapes of a tenant's custom providers and their conversions to
//! and from the broker's messages. The broker holds a definition as a JSON
//! string (exactly as sent); over HTTP it is a JSON object, serialized for
//! the broker and parsed back when answering.

use std::fmt;

use locksmith_proto::broker::v1 as pb;
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{MAX_VERSION, de as edge_de, rfc3339};
use crate::{
    extract::{FromQuery, QueryParams},
    problem::GIVEN_TWICE,
};

/// Body of `POST /tenants/{tenant_id}/providers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// The provider's id: what connections, `/oauth/authorize/{integration}`
    /// and the callback name. Not an id of the shipped catalog.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$", max_length = 63)]
    pub integration: String,
    /// The provider's catalog entry: an object with the fields of one
    /// `[providers.<id>]` table of the shipped catalog (`display_name`,
    /// `auth_mode`, `authorization_url`, `token_url`, `revocation_url`,
    /// `client_auth`, `token_request_format`, `pkce`, `default_scopes`,
    /// `token_response`, `inputs`, `api`, …), validated by the catalog's
    /// rules; every URL it names must pass the egress policy. Bad fields are
    /// named under `definition.` (`definition.token_url`).
    #[serde(deserialize_with = "definition")]
    #[schema(value_type = Object)]
    pub definition: Map<String, Value>,
}

/// Body of `PUT /tenants/{tenant_id}/providers/{integration}`: replaces the
/// definition, check-and-set on its version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    /// The new catalog entry, checked as on create.
    #[serde(deserialize_with = "definition")]
    #[schema(value_type = Object)]
    pub definition: Map<String, Value>,
    /// The version this change is based on (required, 1 or more); another
    /// current version answers 409 and changes nothing.
    #[serde(deserialize_with = "edge_de::version")]
    #[schema(minimum = 1)]
    pub expected_version: u64,
}

/// A tenant's custom provider.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    /// Its resource name (`tenants/acme/providers/crm`).
    pub name: String,
    /// The provider's id (`crm`).
    pub integration: String,
    /// The catalog entry, exactly as last sent.
    #[schema(value_type = Object)]
    pub definition: Map<String, Value>,
    /// The definition's version (1 on create); send it back on PUT.
    pub version: u64,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When its definition last changed (RFC 3339).
    pub updated_at: String,
}

impl ProviderView {
    /// The view of the broker's provider; `None` when the broker answered a
    /// name or definition it cannot have stored (a bug there).
    pub fn from_pb(p: pb::CustomProvider) -> Option<Self> {
        let integration = p.name.rsplit_once("/providers/")?.1.to_owned();
        let definition = match serde_json::from_str::<Value>(&p.definition).ok()? {
            Value::Object(map) => map,
            _ => return None,
        };
        Some(Self {
            name: p.name,
            integration,
            definition,
            version: p.version,
            created_at: rfc3339(p.create_time),
            updated_at: rfc3339(p.update_time),
        })
    }
}

/// A page of a tenant's custom providers, by integration.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderList {
    /// The providers.
    pub providers: Vec<ProviderView>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_page_token: Option<String>,
}

/// Optional check-and-set condition of deleting a custom provider.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProviderDeleteQuery {
    /// Delete only if the provider is at this version (1 or more); absent:
    /// whatever its version.
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub expected_version: Option<u64>,
}

impl FromQuery for ProviderDeleteQuery {
    const PARAMETERS: &'static [&'static str] = &["expected_version"];

    fn from_query(params: &QueryParams) -> Result<Self, Vec<locksmith_errors::FieldViolation>> {
        // The broker reads 0 as "no condition"; a caller who writes one
        // means a condition, so it is refused rather than dropped.
        let expected_version = params
            .whole_number("expected_version", 1, MAX_VERSION)
            .map_err(|e| vec![e])?;
        Ok(Self { expected_version })
    }
}

/// The definition as the broker takes it: the object's JSON text.
pub fn definition_text(definition: &Map<String, Value>) -> String {
    // A map of JSON values always serializes.
    serde_json::to_string(definition).unwrap_or_default()
}

/// A definition: a JSON object in which no object, at any depth, names a
/// key twice (serde_json would keep the last silently; which was meant is a
/// guess the edge does not make).
fn definition<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    d.deserialize_map(UniqueObject)
}

/// A JSON value whose objects name each key once.
struct UniqueJson;

impl<'de> DeserializeSeed<'de> for UniqueJson {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(AnyJson)
    }
}

/// Any JSON value, its objects read by [`UniqueObject`].
struct AnyJson;

impl<'de> Visitor<'de> for AnyJson {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(UniqueJson)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        UniqueObject.visit_map(map).map(Value::Object)
    }
}

/// A JSON object that names each key once, its values checked alike.
struct UniqueObject;

impl<'de> Visitor<'de> for UniqueObject {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                // Failing inside the value puts the key in the error's path
                // (`definition.token_url`), where the caller looks for it.
                map.next_value_seed(GivenTwice)?;
                return Err(de::Error::custom(GIVEN_TWICE));
            }
            let value = map.next_value_seed(UniqueJson)?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// A value refused unread: its key was seen before.
struct GivenTwice;

impl<'de> DeserializeSeed<'de> for GivenTwice {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(GIVEN_TWICE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error's JSON path and serde's message, or the value.
    fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, (String, String)> {
        let mut de = serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| (e.path().to_string(), e.inner().to_string()))
    }

    #[test]
    fn a_definition_is_an_object_with_each_key_once_at_every_depth() {
        let body: CreateProvider = parse_json(
            br#"{"integration":"crm","definition":{"a":[1,{"b":null}],"c":{"d":true}}}"#,
        )
        .unwrap();
        assert_eq!(
            definition_text(&body.definition),
            r#"{"a":[1,{"b":null}],"c":{"d":true}}"#
        );
        for (body, field) in [
            (
                r#"{"integration":"crm","definition":{"token_url":"a","token_url":"b"}}"#,
                "definition.token_url",
            ),
            (
                r#"{"integration":"crm","definition":{"api":{"x":1,"x":2}}}"#,
                "definition.api.x",
            ),
            (
                r#"{"integration":"crm","definition":{"l":[{"y":1,"y":1}]}}"#,
                "definition.l[0].y",
            ),
        ] {
            let (path, message) = parse_json::<CreateProvider>(body.as_bytes()).unwrap_err();
            assert_eq!(path, field, "{body}");
            assert!(message.starts_with(GIVEN_TWICE), "{body}: {message}");
        }
        let (path, message) =
            parse_json::<CreateProvider>(br#"{"integration":"crm","definition":"{}"}"#)
                .unwrap_err();
        assert_eq!(path, "definition");
        assert!(message.contains("expected a map"), "{message}");
        let (path, _) =
            parse_json::<UpdateProvider>(br#"{"definition":{},"expected_version":0}"#).unwrap_err();
        assert_eq!(path, "expected_version");
        let (_, message) = parse_json::<UpdateProvider>(br#"{"definition":{}}"#).unwrap_err();
        assert!(
            message.starts_with("missing field `expected_version`"),
            "{message}"
        );
    }

    #[test]
    fn the_brokers_provider_is_answered_with_its_definition_as_an_object() {
        let view = ProviderView::from_pb(pb::CustomProvider {
            name: "tenants/acme/providers/crm".into(),
            definition: r#"{"display_name":"CRM"}"#.into(),
            version: 2,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(view.integration, "crm");
        assert_eq!(view.definition["display_name"], "CRM");
        assert!(
            ProviderView::from_pb(pb::CustomProvider {
                name: "tenants/acme/providers/crm".into(),
                definition: "[1]".into(),
                ..Default::default()
            })
            .is_none()
        );
    }
}
