//! Secrets as callers hold them (zeroized maps of fields) and as they are
//! stored (one JSON document of sealed fields per secret).

use std::{collections::BTreeMap, fmt};

use locksmith_crypto::{Aad, KeyRing, KeyVersion, Owner, Sealed};
use locksmith_domain::secrets::SecretRef;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroize;

use crate::CredError;

/// A secret's fields: name → value. Values are zeroized on drop and never
/// printed; `Debug` shows the field names only.
#[derive(Clone, Default)]
pub struct SecretFields(BTreeMap<String, SecretString>);

impl SecretFields {
    /// No fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<SecretString>) {
        self.0.insert(name.into(), value.into());
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.0.get(name)
    }

    /// The field names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Every field, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<SecretString>> FromIterator<(K, V)> for SecretFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// One version of a secret, as read.
#[derive(Debug)]
pub struct Secret {
    /// Where it lives. For [`crate::CredStore::resolve`], the scope here is
    /// the scope that answered.
    pub secret_ref: SecretRef,
    /// The version read (from the store's metadata).
    pub version: u64,
    /// When that version was written.
    pub created: OffsetDateTime,
    /// Its fields, decrypted.
    pub fields: SecretFields,
}

/// A plain copy of the fields for the catalogue's validator, which takes
/// `String`s; the copies are zeroized when it is dropped.
pub(crate) struct PlainFields(pub(crate) BTreeMap<String, String>);

impl PlainFields {
    pub(crate) fn of(fields: &SecretFields) -> Self {
        Self(
            fields
                .iter()
                .map(|(k, v)| (k.to_owned(), v.expose_secret().to_owned()))
                .collect(),
        )
    }
}

impl Drop for PlainFields {
    fn drop(&mut self) {
        self.0.values_mut().for_each(Zeroize::zeroize);
    }
}

/// The stored document: every field sealed under the owner's current key,
/// bound to owner, storage path and field name. The version is not in it:
/// the store's metadata keeps that.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    fields: BTreeMap<String, String>,
}

/// Seals `fields` into a document body for `path`.
pub(crate) fn seal_body(
    ring: &KeyRing,
    owner: &Owner,
    path: &str,
    fields: &SecretFields,
) -> Result<Vec<u8>, CredError> {
    let mut sealed = BTreeMap::new();
    for (name, value) in fields.iter() {
        let aad = Aad::new(owner.clone(), path, name);
        let text = ring.seal(&aad, value.expose_secret().as_bytes())?;
        sealed.insert(name.to_owned(), text.into_string());
    }
    serde_json::to_vec(&Body { fields: sealed })
        .map_err(|e| CredError::Internal(format!("cannot encode {path}: {e}")))
}

/// The oldest key version any field of a document body is sealed with
/// (`None`: no fields), read from the sealed texts without decrypting.
pub(crate) fn oldest_key_version(path: &str, body: &[u8]) -> Result<Option<KeyVersion>, CredError> {
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| CredError::Internal(format!("document {path} is corrupt: {e}")))?;
    let mut oldest = None;
    for (name, text) in body.fields {
        let sealed = Sealed::parse(text)
            .map_err(|e| CredError::Internal(format!("{path} field {name}: {e}")))?;
        let v = sealed.key_version();
        oldest = Some(oldest.map_or(v, |o: KeyVersion| o.min(v)));
    }
    Ok(oldest)
}

/// Opens a document body read from `path`. Anything that does not parse or
/// decrypt (moved, tampered, sealed under a shredded key) is internal.
pub(crate) fn open_body(
    ring: &KeyRing,
    owner: &Owner,
    path: &str,
    body: &[u8],
) -> Result<SecretFields, CredError> {
    // serde_json errors name positions and expected types, never the input.
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| CredError::Internal(format!("document {path} is corrupt: {e}")))?;
    let mut fields = SecretFields::new();
    for (name, text) in body.fields {
        let sealed = Sealed::parse(text)
            .map_err(|e| CredError::Internal(format!("{path} field {name}: {e}")))?;
        let aad = Aad::new(owner.clone(), path, name.as_str());
        let plain = ring
            .open(&aad, &sealed)
            .map_err(|e| CredError::Internal(format!("{path} field {name}: {e}")))?;
        // Borrow the zeroizing buffer as text and copy it once into the
        // secret box, so no unzeroized intermediate String is left behind.
        let text = std::str::from_utf8(&plain).map_err(|_| {
            CredError::Internal(format!("{path} field {name}: plaintext is not UTF-8"))
        })?;
        fields.insert(name, SecretString::from(text));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_field_names_only() {
        let fields: SecretFields = [("api-key", "sk-live-123"), ("model", "gpt")]
            .into_iter()
            .collect();
        assert_eq!(format!("{fields:?}"), r#"{"api-key", "model"}"#);
        assert_eq!(fields.len(), 2);
        assert_eq!(
            fields.get("api-key").map(|v| v.expose_secret()),
            Some("sk-live-123")
        );
    }
}
