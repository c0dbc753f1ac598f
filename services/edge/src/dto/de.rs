//! Deserializers for what JSON and serde's derive leave unsaid: a key given
//! twice, a version of 0, an enum named in the caller's terms. Their errors
//! are whole sentences (listed in `extract::json_errors`), shown as written.

use std::{collections::HashMap, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, MapAccess, Unexpected, Visitor},
};

use super::{Quotas, TenantStatus};
use crate::problem::GIVEN_TWICE;

/// Said of a PATCH `version` of 0.
pub(crate) const VERSION_AT_LEAST_1: &str =
    "must be at least 1: the version this change is based on";

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(super) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A map of strings (settings, labels) whose keys are each given once.
/// serde_json keeps the last of duplicate keys; the edge refuses them.
pub(super) fn unique_map<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
    d: D,
) -> Result<HashMap<String, V>, D::Error> {
    d.deserialize_map(UniqueMap(PhantomData))
}

/// [`unique_map`] in a PATCH: absent is `None` (with `#[serde(default)]`);
/// `null` is refused, since it would change nothing.
pub(super) fn present_unique_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<HashMap<String, String>>, D::Error> {
    unique_map(d).map(Some)
}

/// A PATCH field that is absent (`None`, with `#[serde(default)]`) or a
/// value; `null` is refused, since it would change nothing. (Fields that
/// `null` clears use [`nullable`].)
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

struct UniqueMap<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMap<V> {
    type Value = HashMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                // Failing inside the value puts the key in the error's path
                // (`settings.a`), where the caller looks for it.
                map.next_value_seed(GivenTwice)?;
                return Err(de::Error::custom(GIVEN_TWICE));
            }
            let value = map.next_value::<V>()?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// A value that is refused unread: its key was seen before.
struct GivenTwice;

impl<'de> DeserializeSeed<'de> for GivenTwice {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(GIVEN_TWICE))
    }
}

/// The version a change is based on: versions start at 1, so 0 is a
/// mistake rather than "no condition".
pub(super) fn version<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_u64(VersionVisitor { zero: false })
}

/// A check-and-set condition where 0 means "create only": absent or `null`
/// is `None` (no condition).
pub(super) fn optional_expected_version<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(transparent)]
    struct Expected(#[serde(deserialize_with = "expected_version")] u64);
    Option::<Expected>::deserialize(d).map(|e| e.map(|e| e.0))
}

fn expected_version<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_u64(VersionVisitor { zero: true })
}

struct VersionVisitor {
    /// Whether 0 is a version here (a create-only condition).
    zero: bool,
}

impl Visitor<'_> for VersionVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a whole number from {} to {}",
            u64::from(!self.zero),
            u64::MAX
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if v == 0 && !self.zero {
            Err(E::custom(VERSION_AT_LEAST_1))
        } else {
            Ok(v)
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        match integral(v) {
            Some(v) => self.visit_u64(v),
            None => Err(E::invalid_value(Unexpected::Float(v), &self)),
        }
    }
}

/// JSON has one number type: `5.0` and `5e0` are the whole number 5 (as in
/// JSON Schema's `integer`), which serde would refuse for an integer field.
fn integral(v: f64) -> Option<u64> {
    // 2^53: beyond it not every whole number is a distinct f64.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    (v.fract() == 0.0 && (0.0..=EXACT).contains(&v)).then_some(v as u64)
}

/// A whole number that fits a `u32`, written as JSON writes numbers.
pub(crate) fn whole_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    d.deserialize_u64(WholeU32)
}

/// [`whole_u32`], absent or `null` being `None`.
pub(crate) fn optional_whole_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(transparent)]
    struct Whole(#[serde(deserialize_with = "whole_u32")] u32);
    Option::<Whole>::deserialize(d).map(|w| w.map(|w| w.0))
}

struct WholeU32;

impl Visitor<'_> for WholeU32 {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a whole number from 0 to {}", u32::MAX)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u32, E> {
        match integral(v) {
            Some(v) => self.visit_u64(v),
            None => Err(E::invalid_value(Unexpected::Float(v), &self)),
        }
    }
}

/// Status names as callers write them; serde's derive would say
/// `expected enum TenantStatus`, or treat a number as a syntax error.
impl<'de> Deserialize<'de> for TenantStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StatusVisitor)
    }
}

struct StatusVisitor;

impl Visitor<'_> for StatusVisitor {
    type Value = TenantStatus;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("one of active, suspended")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<TenantStatus, E> {
        match v {
            "active" => Ok(TenantStatus::Active),
            "suspended" => Ok(TenantStatus::Suspended),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// Quotas from a JSON object only: serde's derive would also fill a struct
/// from an array, by position (`"quotas": [1, 2]`).
impl<'de> Deserialize<'de> for Quotas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(QuotasVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotasFields {
    #[serde(default, deserialize_with = "whole_u32")]
    requests_per_minute: u32,
    #[serde(default, deserialize_with = "whole_u32")]
    max_connections: u32,
}

struct QuotasVisitor;

impl<'de> Visitor<'de> for QuotasVisitor {
    type Value = Quotas;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Quotas, A::Error> {
        let fields = QuotasFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Quotas {
            requests_per_minute: fields.requests_per_minute,
            max_connections: fields.max_connections,
        })
    }
}
