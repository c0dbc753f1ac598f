//! Per-tenant envelope encryption for the credential store (design brief §3).
//!
//! - Every owner (a tenant, or the system scope) has its own versioned 256-bit
//!   [`DataKey`]. A [`KeyRing`] holds an owner's versions: the newest seals,
//!   all of them open, so rotation takes effect for writes at once while old
//!   ciphertext stays readable until it has been re-encrypted.
//! - [`seal`] encrypts one field with AES-256-GCM under a fresh random nonce;
//!   the associated data ([`Aad`]) binds the ciphertext to its owner, document
//!   path, field name and key version, so a value copied anywhere else fails
//!   with [`CryptoError::Undecryptable`] instead of decrypting.
//! - Data keys are only ever stored wrapped ([`WrappedKey`]) by a
//!   [`KeyWrapper`]: the embedded [`MasterKeyWrapper`] (a 0600 key file) or
//!   OpenBao Transit ([`TransitWrapper`], one Transit key per owner,
//!   `transit/keys/{tenant}`).
//!
//! # Crypto-shredding
//!
//! A data key exists in clear only in memory (zeroed on drop) and at rest only
//! wrapped. Destroying every [`WrappedKey`] of an owner and dropping its
//! [`KeyRing`] therefore makes every value sealed for that owner permanently
//! undecryptable: no other key can authenticate it, and a new key ring for the
//! same owner gets fresh random keys. Deleting a tenant = destroying its
//! wrapped keys (and, with Transit, its Transit key).

mod error;
mod keys;
mod seal;
mod transit;
mod wrap;

use std::fmt;

pub use error::{CryptoError, MasterKeyProblem};
pub use keys::{DataKey, KEY_LEN, KeyRing};
pub use locksmith_domain::TenantId;
pub use seal::{Aad, SEALED_PREFIX, Sealed, open, seal};
pub use transit::{SYSTEM_TRANSIT_KEY, TransitWrapper};
pub use wrap::{KeyWrapper, MasterKeyWrapper, WrappedKey};

/// Whose key: a tenant's, or the system scope's.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Owner {
    /// One tenant; its data key is used for everything under `tenants/{t}/`.
    Tenant(TenantId),
    /// The system scope (`system/*`).
    System,
}

impl Owner {
    /// Unambiguous bytes for associated data. A tag byte separates the two
    /// kinds, so a tenant that happens to be named `system` never shares
    /// associated data with the system scope.
    pub(crate) fn aad_bytes(&self) -> Vec<u8> {
        match self {
            Owner::Tenant(t) => {
                let mut out = Vec::with_capacity(1 + t.as_str().len());
                out.push(b'T');
                out.extend_from_slice(t.as_str().as_bytes());
                out
            }
            Owner::System => vec![b'S'],
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Tenant(t) => write!(f, "tenant {t}"),
            Owner::System => f.write_str("system"),
        }
    }
}

impl From<TenantId> for Owner {
    fn from(t: TenantId) -> Self {
        Owner::Tenant(t)
    }
}

/// A data key version. Versions start at 1 and only grow.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KeyVersion(u32);

impl KeyVersion {
    /// The first version of every key ring.
    pub const FIRST: KeyVersion = KeyVersion(1);

    /// A version from its number; 0 is not a version.
    pub fn new(n: u32) -> Option<Self> {
        (n > 0).then_some(KeyVersion(n))
    }

    /// The version number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The following version, or `None` once `u32` is exhausted.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(KeyVersion)
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Fills `buf` from the operating system's RNG. Failure is reported rather
/// than falling back to anything weaker: a reused or predictable nonce or key
/// breaks GCM.
pub(crate) fn os_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    use rand::TryRngCore;
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|_| CryptoError::Randomness)
}

/// AES-256-GCM nonce length: the standard 96 bits.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;

#[cfg(test)]
mod tests;
