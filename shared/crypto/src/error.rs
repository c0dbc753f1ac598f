//! One error type for the crate. No variant carries key bytes, plaintext or
//! file contents: only owners, versions, paths and fixed reasons.

use std::path::PathBuf;

/// Why a crypto operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The sealed value did not authenticate: wrong key, tampered bytes, or
    /// ciphertext moved to another owner, path, field or key version. One
    /// variant on purpose: telling the caller which check failed would help
    /// an attacker probe the binding.
    #[error("sealed value cannot be decrypted")]
    Undecryptable,
    /// The sealed value names a key version the key ring does not hold
    /// (never created, or retired/shredded).
    #[error("key version {version} of {owner} is not in the key ring")]
    UnknownKeyVersion {
        /// Owner of the key ring consulted.
        owner: String,
        /// The version the sealed value names.
        version: u32,
    },
    /// The text is not a sealed value this crate wrote.
    #[error("malformed sealed value: {reason}")]
    Malformed {
        /// What is wrong, without echoing the input.
        reason: &'static str,
    },
    /// A wrapped data key could not be unwrapped: wrong owner, wrong master
    /// key or tampered blob. Kept apart from [`CryptoError::Undecryptable`]
    /// because it points at key management, not at one document.
    #[error("wrapped data key of {owner} cannot be unwrapped")]
    KeyUnwrap {
        /// Owner the caller asked to unwrap for.
        owner: String,
    },
    /// A wrapped key is not in a format this wrapper understands.
    #[error("malformed wrapped key: {reason}")]
    MalformedWrappedKey {
        /// What is wrong, without echoing the input.
        reason: &'static str,
    },
    /// A key of one owner was used for another owner's data.
    #[error("key belongs to {key_owner}, not to {expected}")]
    OwnerMismatch {
        /// Owner the operation is for.
        expected: String,
        /// Owner of the key that was offered.
        key_owner: String,
    },
    /// Key ring construction or maintenance was asked for something
    /// inconsistent (empty ring, duplicate version, retiring the current key).
    #[error("invalid key ring: {reason}")]
    InvalidKeyRing {
        /// What is inconsistent.
        reason: &'static str,
    },
    /// The master key file cannot be used.
    #[error("master key file {}: {reason}", path.display())]
    MasterKeyFile {
        /// The file concerned.
        path: PathBuf,
        /// Why it cannot be used.
        reason: MasterKeyProblem,
    },
    /// The plaintext or associated data exceeds what AES-GCM can encrypt
    /// under one nonce (about 64 GiB).
    #[error("plaintext or associated data too long")]
    TooLong,
    /// The OS random number generator failed; nothing was sealed or generated.
    #[error("operating system randomness unavailable")]
    Randomness,
    /// A key-wrapping backend (e.g. OpenBao Transit) failed: it refused us
    /// (permissions, a missing mount) or broke its contract. Not retryable.
    #[error("key wrapping backend: {reason}")]
    Backend {
        /// The backend's explanation, which must not contain key material.
        reason: String,
    },
    /// The key-wrapping backend could not be reached, timed out or was busy
    /// (sealed, electing a leader). Retry later; nothing was changed, or a
    /// repeat is harmless (every wrapper operation is idempotent).
    #[error("key wrapping backend unavailable: {reason}")]
    Unavailable {
        /// What failed, without key material or tokens.
        reason: String,
    },
}

/// Why the master key file cannot be used. Never includes its contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyProblem {
    /// Group or others may access the file; it must be mode 0600 (or stricter).
    #[error("mode {mode:04o} lets group or others access it; must be 0600")]
    Permissions {
        /// The permission bits found.
        mode: u32,
    },
    /// The file does not hold exactly one 256-bit key.
    #[error("expected {expected} bytes, found {found}")]
    WrongLength {
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        found: u64,
    },
    /// The path is not a regular file (directory, socket, …).
    #[error("not a regular file")]
    NotAFile,
    /// An I/O error while reading or creating it.
    #[error("{0}")]
    Io(String),
}

impl MasterKeyProblem {
    /// The I/O error's kind and message: `std::io::Error` never holds file
    /// contents, only the OS reason.
    pub(crate) fn io(err: &std::io::Error) -> Self {
        Self::Io(err.to_string())
    }
}
