//! Field encryption: [`seal`] / [`open`] and the self-describing sealed text.
//!
//! Sealed text is `lsk1:` followed by unpadded base64url of
//! `key_version (u32 BE) || nonce (12) || ciphertext || tag (16)`. The prefix
//! versions the format itself; the key version tells a reader which data key
//! to use without trying them all.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::keys::{DataKey, KeyRing, aead_decrypt, aead_encrypt, push_field};
use crate::{CryptoError, KeyVersion, NONCE_LEN, Owner, TAG_LEN, os_random};

/// Prefix of every sealed value (format version 1).
pub const SEALED_PREFIX: &str = "lsk1:";

/// Domain separation: field associated data never equals key-wrapping
/// associated data, whatever the inputs.
const AAD_LABEL: &[u8] = b"locksmith/field/v1";

const VERSION_LEN: usize = 4;
const HEADER_LEN: usize = VERSION_LEN + NONCE_LEN;

/// Where a sealed value belongs: its owner, document path and field name.
/// The key version is added at seal/open time from the key used. A value only
/// opens with the same `Aad` it was sealed with.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Aad {
    owner: Owner,
    path: String,
    field: String,
}

impl Aad {
    /// Binding for `field` of the document at `path` (e.g.
    /// `tenants/acme/orgs/o/bots/b/secrets/token`, field `value`).
    pub fn new(owner: Owner, path: impl Into<String>, field: impl Into<String>) -> Self {
        Self {
            owner,
            path: path.into(),
            field: field.into(),
        }
    }

    /// The owner whose key must seal and open the value.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The document path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The field name.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The bytes GCM authenticates: label, then length-prefixed owner, path
    /// and field, then the key version.
    fn bytes(&self, version: KeyVersion) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.path.len() + self.field.len());
        out.extend_from_slice(AAD_LABEL);
        push_field(&mut out, &self.owner.aad_bytes());
        push_field(&mut out, self.path.as_bytes());
        push_field(&mut out, self.field.as_bytes());
        out.extend_from_slice(&version.get().to_be_bytes());
        out
    }
}

/// A sealed value as stored: `lsk1:` + base64url. Holds ciphertext only, so
/// `Debug`/`Display` are safe to log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sealed {
    text: String,
    version: KeyVersion,
}

impl Sealed {
    /// Checks that `text` is a well-formed sealed value (prefix, encoding,
    /// length, version); authenticity is only known on [`open`].
    pub fn parse(text: impl Into<String>) -> Result<Self, CryptoError> {
        let text = text.into();
        let raw = decode(&text)?;
        let version = version_of(&raw)?;
        Ok(Self { text, version })
    }

    /// The key version the value was sealed under.
    pub fn key_version(&self) -> KeyVersion {
        self.version
    }

    /// The text to store.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text to store, by value.
    pub fn into_string(self) -> String {
        self.text
    }
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    let body = text
        .strip_prefix(SEALED_PREFIX)
        .ok_or(CryptoError::Malformed {
            reason: "missing lsk1: prefix",
        })?;
    // The engine rejects padding and non-canonical trailing bits, so each
    // sealed value has exactly one text form.
    let raw = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| CryptoError::Malformed {
            reason: "not base64url",
        })?;
    if raw.len() < HEADER_LEN + TAG_LEN {
        return Err(CryptoError::Malformed {
            reason: "too short",
        });
    }
    Ok(raw)
}

fn version_of(raw: &[u8]) -> Result<KeyVersion, CryptoError> {
    let malformed = CryptoError::Malformed {
        reason: "bad key version",
    };
    let bytes: [u8; VERSION_LEN] = raw
        .get(..VERSION_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(CryptoError::Malformed {
            reason: "too short",
        })?;
    KeyVersion::new(u32::from_be_bytes(bytes)).ok_or(malformed)
}

/// Encrypts `plaintext` with `key` under a fresh random nonce, bound to `aad`
/// and the key's version. The key must belong to `aad`'s owner.
pub fn seal(key: &DataKey, aad: &Aad, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
    if key.owner() != aad.owner() {
        return Err(CryptoError::OwnerMismatch {
            expected: aad.owner().to_string(),
            key_owner: key.owner().to_string(),
        });
    }
    // Random 96-bit nonces: safe for far more than the values one key will
    // ever seal (the 2^32 birthday bound), and rotation resets the count.
    let mut nonce = [0u8; NONCE_LEN];
    os_random(&mut nonce)?;
    let version = key.version();
    let ciphertext = aead_encrypt(key.expose_secret(), &nonce, &aad.bytes(version), plaintext)?;
    let mut raw = Vec::with_capacity(HEADER_LEN + ciphertext.len());
    raw.extend_from_slice(&version.get().to_be_bytes());
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&ciphertext);
    let mut text = String::with_capacity(SEALED_PREFIX.len() + raw.len().div_ceil(3) * 4);
    text.push_str(SEALED_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&raw, &mut text);
    Ok(Sealed { text, version })
}

/// Decrypts `sealed` with the version of `ring` it names, checking it belongs
/// at `aad`. Wrong key, tampering or a moved value all give
/// [`CryptoError::Undecryptable`]; a version the ring lacks gives
/// [`CryptoError::UnknownKeyVersion`].
pub fn open(ring: &KeyRing, aad: &Aad, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if ring.owner() != aad.owner() {
        return Err(CryptoError::OwnerMismatch {
            expected: aad.owner().to_string(),
            key_owner: ring.owner().to_string(),
        });
    }
    // Re-decoded rather than cached at parse time, so `Sealed` stays a plain
    // string wrapper; the text was validated by `parse`/`seal` already.
    let raw = decode(&sealed.text)?;
    let version = version_of(&raw)?;
    let key = ring.get(version).ok_or_else(|| ring.unknown(version))?;
    let (header, ciphertext) = raw
        .split_at_checked(HEADER_LEN)
        .ok_or(CryptoError::Malformed {
            reason: "too short",
        })?;
    let nonce: [u8; NONCE_LEN] = header
        .get(VERSION_LEN..)
        .and_then(|n| n.try_into().ok())
        .ok_or(CryptoError::Malformed {
            reason: "too short",
        })?;
    aead_decrypt(key.expose_secret(), &nonce, &aad.bytes(version), ciphertext)
        .ok_or(CryptoError::Undecryptable)
}
