//! The key material: how a key looks, how it is made, and how it is checked.
//!
//! A key is `lsk_<key_id>_<secret>`: a fixed prefix so scanners and people
//! recognise it, 8 random bytes of id in hex (the lookup handle, not secret),
//! and 32 random bytes of secret in base64url. The registry stores only
//! HMAC-SHA256(pepper, key). Keys are 256-bit random, so a fast keyed hash is
//! right: a password hash would only slow every cache miss at the edge, and
//! the pepper (a file, not in the database) means a stolen database alone
//! cannot even test guesses.

use std::{io::Write, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::{hmac, rand::SecureRandom};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "lsk_";
const KEY_ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
const PEPPER_BYTES: usize = 32;

/// Why key material could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The system's random source failed.
    #[error("the system random source failed")]
    Random,
    /// The pepper file could not be read or written.
    #[error("pepper file {path}: {reason}")]
    PepperFile {
        /// The file.
        path: String,
        /// What went wrong, without the file's contents.
        reason: String,
    },
}

/// Hashes and checks keys with the deployment's pepper. Every registry
/// replica must hold the same pepper.
pub struct KeyHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, SecretError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    ring::rand::SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| SecretError::Random)?;
    Ok(bytes)
}

impl KeyHasher {
    /// A hasher with a fresh random pepper (tests, single-process runs).
    pub fn random() -> Result<Self, SecretError> {
        let pepper = random_bytes::<PEPPER_BYTES>()?;
        Ok(Self::from_pepper(pepper.as_ref()))
    }

    fn from_pepper(pepper: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, pepper),
        }
    }

    /// Loads the pepper from `path`, creating it (mode 0600) with a random
    /// pepper if it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let err = |reason: String| SecretError::PepperFile {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                if bytes.len() != PEPPER_BYTES {
                    return Err(err(format!("must hold exactly {PEPPER_BYTES} bytes")));
                }
                Ok(Self::from_pepper(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pepper = random_bytes::<PEPPER_BYTES>()?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
                file.write_all(pepper.as_ref())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| err(e.to_string()))?;
                Ok(Self::from_pepper(pepper.as_ref()))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// The stored form of `key`: hex of its HMAC.
    pub fn hash(&self, key: &str) -> String {
        let tag = hmac::sign(&self.key, key.as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `key` is the key whose stored hash is `stored_hex`, in
    /// constant time.
    pub fn matches(&self, key: &str, stored_hex: &str) -> bool {
        match decode_hex(stored_hex) {
            Some(tag) => hmac::verify(&self.key, key.as_bytes(), &tag).is_ok(),
            None => false,
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// A freshly made key: its id and the whole key, shown once.
pub struct NewKey {
    /// The lookup id (not secret).
    pub key_id: String,
    /// `lsk_<key_id>_<secret>`.
    pub secret: SecretString,
}

/// Makes a new random key.
pub fn new_key() -> Result<NewKey, SecretError> {
    let id = random_bytes::<KEY_ID_BYTES>()?;
    let key_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = random_bytes::<SECRET_BYTES>()?;
    let whole = format!(
        "{KEY_PREFIX}{key_id}_{}",
        URL_SAFE_NO_PAD.encode(secret.as_ref())
    );
    Ok(NewKey {
        key_id,
        secret: SecretString::from(whole),
    })
}

/// The key id of a presented key, if it has the shape of one of ours.
pub fn key_id_of(presented: &SecretString) -> Option<&str> {
    let rest = presented.expose_secret().strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == KEY_ID_BYTES * 2
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    // 32 bytes in unpadded base64url are 43 characters.
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(id)
}

/// Whether a key id has the shape of one of ours.
pub fn is_key_id(s: &str) -> bool {
    s.len() == KEY_ID_BYTES * 2
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape_and_verify_only_themselves() {
        let hasher = KeyHasher::random().unwrap();
        let key = new_key().unwrap();
        assert!(key.secret.expose_secret().starts_with("lsk_"));
        assert_eq!(key_id_of(&key.secret), Some(key.key_id.as_str()));
        assert!(is_key_id(&key.key_id));
        let stored = hasher.hash(key.secret.expose_secret());
        assert!(hasher.matches(key.secret.expose_secret(), &stored));
        let other = new_key().unwrap();
        assert!(!hasher.matches(other.secret.expose_secret(), &stored));
        // Another deployment's pepper does not verify it.
        assert!(
            !KeyHasher::random()
                .unwrap()
                .matches(key.secret.expose_secret(), &stored)
        );
        assert!(!hasher.matches(key.secret.expose_secret(), "zz"));
    }

    #[test]
    fn shapes_that_are_not_keys() {
        for bad in [
            "",
            "lsk_",
            "lsk_0123456789abcdef",
            "lsk_0123456789ABCDEF_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "lsk_0123456789abcde_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "lsk_0123456789abcdef_AAAA",
            "lsk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "xyz_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(key_id_of(&SecretString::from(bad)), None, "{bad}");
        }
        assert!(
            key_id_of(&SecretString::from(
                "lsk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            ))
            .is_some()
        );
    }

    #[test]
    fn the_pepper_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/pepper");
        let first = KeyHasher::load_or_create(&path).unwrap();
        let again = KeyHasher::load_or_create(&path).unwrap();
        assert_eq!(first.hash("k"), again.hash("k"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(KeyHasher::load_or_create(&path).is_err());
    }
}
