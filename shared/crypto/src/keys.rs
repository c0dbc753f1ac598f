//! Data keys and key rings, plus the one AES-256-GCM primitive every other
//! module goes through.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use zeroize::Zeroizing;

use crate::seal::{Aad, Sealed};
use crate::wrap::{KeyWrapper, WrappedKey};
use crate::{CryptoError, KeyVersion, NONCE_LEN, Owner, TAG_LEN, os_random};

/// Length of a data key (and of the master key): 256 bits.
pub const KEY_LEN: usize = 32;

/// One version of one owner's 256-bit data key. The bytes live in memory that
/// is zeroed on drop, and `Debug` shows only owner and version. Deliberately
/// not `Clone`: every copy of a key is one more place it can leak from.
pub struct DataKey {
    owner: Owner,
    version: KeyVersion,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl DataKey {
    /// A fresh random key from the OS RNG.
    pub fn generate(owner: Owner, version: KeyVersion) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        os_random(bytes.as_mut_slice())?;
        Ok(Self {
            owner,
            version,
            bytes,
        })
    }

    /// A key from bytes a [`KeyWrapper`] has just unwrapped.
    pub fn from_bytes(owner: Owner, version: KeyVersion, bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self {
            owner,
            version,
            bytes,
        }
    }

    /// Whose key this is.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Which version of the owner's key this is.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// The raw key bytes, for [`KeyWrapper`] implementations that must hand
    /// them to a wrapping service (e.g. Transit's `encrypt`). Nothing else
    /// should need this; never log or persist the result.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for DataKey {
    // Hand-written so the key bytes can never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("owner", &self.owner)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// An owner's data key versions: the newest ([`KeyRing::current`]) seals,
/// every version held opens.
pub struct KeyRing {
    owner: Owner,
    // Invariant: `current` has the highest version; `older` holds only lower
    // versions of the same owner. Keeping `current` apart makes it infallible.
    current: DataKey,
    older: BTreeMap<KeyVersion, DataKey>,
}

impl KeyRing {
    /// A ring holding one key.
    pub fn new(key: DataKey) -> Self {
        Self {
            owner: key.owner.clone(),
            current: key,
            older: BTreeMap::new(),
        }
    }

    /// A ring from already unwrapped keys; the highest version becomes current.
    pub fn from_keys(
        owner: Owner,
        keys: impl IntoIterator<Item = DataKey>,
    ) -> Result<Self, CryptoError> {
        let mut all = BTreeMap::new();
        for key in keys {
            if key.owner != owner {
                return Err(CryptoError::OwnerMismatch {
                    expected: owner.to_string(),
                    key_owner: key.owner.to_string(),
                });
            }
            if all.insert(key.version, key).is_some() {
                return Err(CryptoError::InvalidKeyRing {
                    reason: "duplicate key version",
                });
            }
        }
        let Some((_, current)) = all.pop_last() else {
            return Err(CryptoError::InvalidKeyRing {
                reason: "no key versions",
            });
        };
        Ok(Self {
            owner,
            current,
            older: all,
        })
    }

    /// A new ring with a fresh version-1 key, and that key wrapped for
    /// storage. Persist the wrapped key before sealing anything with the ring:
    /// a value sealed under a key that was never stored is lost.
    pub async fn create<W: KeyWrapper>(
        wrapper: &W,
        owner: Owner,
    ) -> Result<(Self, WrappedKey), CryptoError> {
        let key = DataKey::generate(owner.clone(), KeyVersion::FIRST)?;
        let wrapped = wrapper.wrap(&owner, &key).await?;
        Ok((Self::new(key), wrapped))
    }

    /// The ring stored as `wrapped` (every version still kept), unwrapped
    /// through `wrapper`.
    pub async fn load<W: KeyWrapper>(
        wrapper: &W,
        owner: Owner,
        wrapped: &[WrappedKey],
    ) -> Result<Self, CryptoError> {
        let mut keys = Vec::with_capacity(wrapped.len());
        for w in wrapped {
            let key = wrapper.unwrap(&owner, w).await?;
            // A wrapper must not silently relabel a key's version: sealed
            // values would then name the wrong key.
            if key.version != w.version() || key.owner != owner {
                return Err(CryptoError::InvalidKeyRing {
                    reason: "wrapper returned a key for another owner or version",
                });
            }
            keys.push(key);
        }
        Self::from_keys(owner, keys)
    }

    /// Starts a new key version: it seals from now on, older versions still
    /// open. Returns the new key wrapped; persist it before sealing with the
    /// ring (see [`KeyRing::create`]). On error the ring is unchanged.
    pub async fn rotate<W: KeyWrapper>(&mut self, wrapper: &W) -> Result<WrappedKey, CryptoError> {
        let version = self
            .current
            .version
            .next()
            .ok_or(CryptoError::InvalidKeyRing {
                reason: "key versions exhausted",
            })?;
        let key = DataKey::generate(self.owner.clone(), version)?;
        let wrapped = wrapper.wrap(&self.owner, &key).await?;
        let previous = std::mem::replace(&mut self.current, key);
        self.older.insert(previous.version, previous);
        Ok(wrapped)
    }

    /// Drops an old version once nothing is sealed under it any more (after
    /// re-encryption). The current version cannot be retired.
    pub fn retire(&mut self, version: KeyVersion) -> Result<(), CryptoError> {
        if version == self.current.version {
            return Err(CryptoError::InvalidKeyRing {
                reason: "cannot retire the current key version",
            });
        }
        self.older
            .remove(&version)
            .map(drop)
            .ok_or_else(|| self.unknown(version))
    }

    /// Whose keys these are.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The key new values are sealed with.
    pub fn current(&self) -> &DataKey {
        &self.current
    }

    /// The key of `version`, if the ring holds it.
    pub fn get(&self, version: KeyVersion) -> Option<&DataKey> {
        if version == self.current.version {
            Some(&self.current)
        } else {
            self.older.get(&version)
        }
    }

    /// Versions held, oldest first.
    pub fn versions(&self) -> Vec<KeyVersion> {
        let mut v: Vec<_> = self.older.keys().copied().collect();
        v.push(self.current.version);
        v
    }

    /// Seals with the current key: `seal(ring.current(), aad, plaintext)`.
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        crate::seal(&self.current, aad, plaintext)
    }

    /// Opens with whichever version the sealed value names: `open(ring, aad, sealed)`.
    pub fn open(&self, aad: &Aad, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        crate::open(self, aad, sealed)
    }

    pub(crate) fn unknown(&self, version: KeyVersion) -> CryptoError {
        CryptoError::UnknownKeyVersion {
            owner: self.owner.to_string(),
            version: version.get(),
        }
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("owner", &self.owner)
            .field("current", &self.current.version)
            .field("versions", &self.versions())
            .finish()
    }
}

/// AES-256-GCM encryption of `plaintext`; returns ciphertext || tag.
pub(crate) fn aead_encrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new(key.into());
    // Encrypted in place; the buffer starts as a copy of the plaintext, so it
    // is zeroized if encryption fails, and sized up front so it never
    // reallocates (which would leave a plaintext copy behind).
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buf.extend_from_slice(plaintext);
    cipher
        .encrypt_in_place(nonce.into(), aad, &mut *buf)
        .map_err(|_| CryptoError::TooLong)?;
    Ok(std::mem::take(&mut *buf))
}

/// AES-256-GCM decryption of ciphertext || tag. `None` when it does not
/// authenticate; callers choose the error so they can keep it uninformative.
pub(crate) fn aead_decrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let cipher = Aes256Gcm::new(key.into());
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    cipher.decrypt_in_place(nonce.into(), aad, &mut *buf).ok()?;
    Some(buf)
}

/// Appends `bytes` with a length prefix, so adjacent fields of associated
/// data can never be re-split (`"a/b" + "c"` vs `"a" + "b/c"`).
pub(crate) fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}
