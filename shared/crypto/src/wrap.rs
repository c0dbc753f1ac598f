//! Key wrapping: the seam between data keys and whatever protects them at
//! rest, and the embedded implementation on a local master key file.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::keys::{DataKey, KEY_LEN, aead_decrypt, aead_encrypt, push_field};
use crate::{CryptoError, KeyVersion, MasterKeyProblem, NONCE_LEN, Owner, TAG_LEN, os_random};

/// A data key encrypted by a [`KeyWrapper`], as stored next to the owner's
/// data. `blob` is wrapper-specific (`lskw1:…` for the master key, Transit's
/// `vault:vN:…`); the data key version travels beside it so a reader
/// knows which version it unwraps to.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    version: KeyVersion,
    blob: String,
}

impl WrappedKey {
    /// A stored wrapped key.
    pub fn new(version: KeyVersion, blob: impl Into<String>) -> Self {
        Self {
            version,
            blob: blob.into(),
        }
    }

    /// The data key version it unwraps to.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// The wrapper's ciphertext, to store.
    pub fn blob(&self) -> &str {
        &self.blob
    }
}

impl fmt::Debug for WrappedKey {
    // The blob is ciphertext, but there is no reason to spread it through
    // logs either: its length is enough to debug with.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("version", &self.version)
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// Protects data keys at rest. The embedded [`MasterKeyWrapper`] and OpenBao
/// Transit (`transit/keys/{tenant}`) both implement it, so the credential
/// store does not care which one is configured. Implementations must bind a
/// wrapped key to its owner (and version): unwrapping it as anyone else fails.
pub trait KeyWrapper: Send + Sync {
    /// Encrypts `key` for storage. `key` must belong to `owner`.
    fn wrap(
        &self,
        owner: &Owner,
        key: &DataKey,
    ) -> impl Future<Output = Result<WrappedKey, CryptoError>> + Send;

    /// Recovers the data key `wrapped` holds for `owner`.
    fn unwrap(
        &self,
        owner: &Owner,
        wrapped: &WrappedKey,
    ) -> impl Future<Output = Result<DataKey, CryptoError>> + Send;

    /// Prepares whatever the wrapper keeps per owner (Transit: the owner's
    /// key), before the owner's first [`KeyWrapper::wrap`]. Idempotent: an
    /// owner already provisioned is left as it is. The default does nothing,
    /// for wrappers with one key for everybody.
    fn provision(&self, owner: &Owner) -> impl Future<Output = Result<(), CryptoError>> + Send {
        let _ = owner;
        std::future::ready(Ok(()))
    }

    /// Destroys whatever the wrapper keeps per owner, so that no wrapped key
    /// of the owner can ever be unwrapped again, even by a later
    /// [`KeyWrapper::provision`] of the same owner (which starts afresh).
    /// Idempotent: shredding an owner with nothing left succeeds. The
    /// default does nothing: with a shared master key, shredding is
    /// destroying the owner's wrapped keys, which the caller does.
    fn shred(&self, owner: &Owner) -> impl Future<Output = Result<(), CryptoError>> + Send {
        let _ = owner;
        std::future::ready(Ok(()))
    }
}

const WRAP_PREFIX: &str = "lskw1:";
const WRAP_AAD_LABEL: &[u8] = b"locksmith/wrap/v1";
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// The embedded [`KeyWrapper`]: AES-256-GCM under a 256-bit master key kept in
/// a local file of mode 0600, with the owner and data key version as
/// associated data.
pub struct MasterKeyWrapper {
    path: PathBuf,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl MasterKeyWrapper {
    /// Loads the master key at `path`, creating it (random, mode 0600) when
    /// the file does not exist. Blocking file I/O: call at startup.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<Self, CryptoError> {
        let path = path.as_ref();
        if let Some(key) = read_key_file(path)? {
            return Ok(Self::from_parts(path, key));
        }
        create_key_file(path)?;
        // Read back rather than keep what was generated: if another process
        // created the file first, its key is the one everybody must use.
        match read_key_file(path)? {
            Some(key) => Ok(Self::from_parts(path, key)),
            None => Err(file_error(
                path,
                MasterKeyProblem::Io("removed while being created".to_owned()),
            )),
        }
    }

    /// Loads the master key at `path`; a missing file is an error. For
    /// deployments where the key is provisioned, so a typo in the path does
    /// not silently start over with a new key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CryptoError> {
        let path = path.as_ref();
        match read_key_file(path)? {
            Some(key) => Ok(Self::from_parts(path, key)),
            None => Err(file_error(
                path,
                MasterKeyProblem::io(&io::Error::from(io::ErrorKind::NotFound)),
            )),
        }
    }

    fn from_parts(path: &Path, key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self {
            path: path.to_owned(),
            key,
        }
    }

    /// Where the master key was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn wrap_now(&self, owner: &Owner, key: &DataKey) -> Result<WrappedKey, CryptoError> {
        if key.owner() != owner {
            return Err(CryptoError::OwnerMismatch {
                expected: owner.to_string(),
                key_owner: key.owner().to_string(),
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        os_random(&mut nonce)?;
        let aad = wrap_aad(owner, key.version());
        let ciphertext = aead_encrypt(&self.key, &nonce, &aad, key.expose_secret())?;
        let mut raw = Vec::with_capacity(WRAPPED_LEN);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        let mut blob = String::from(WRAP_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&raw, &mut blob);
        Ok(WrappedKey {
            version: key.version(),
            blob,
        })
    }

    fn unwrap_now(&self, owner: &Owner, wrapped: &WrappedKey) -> Result<DataKey, CryptoError> {
        let body =
            wrapped
                .blob
                .strip_prefix(WRAP_PREFIX)
                .ok_or(CryptoError::MalformedWrappedKey {
                    reason: "missing lskw1: prefix",
                })?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::MalformedWrappedKey {
                reason: "not base64url",
            })?;
        let (nonce, ciphertext) = raw
            .split_first_chunk::<NONCE_LEN>()
            .filter(|_| raw.len() == WRAPPED_LEN)
            .ok_or(CryptoError::MalformedWrappedKey {
                reason: "wrong length",
            })?;
        let aad = wrap_aad(owner, wrapped.version);
        let plain = aead_decrypt(&self.key, nonce, &aad, ciphertext).ok_or_else(|| {
            CryptoError::KeyUnwrap {
                owner: owner.to_string(),
            }
        })?;
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if plain.len() != KEY_LEN {
            return Err(CryptoError::MalformedWrappedKey {
                reason: "wrong length",
            });
        }
        bytes.copy_from_slice(&plain);
        Ok(DataKey::from_bytes(owner.clone(), wrapped.version, bytes))
    }
}

impl KeyWrapper for MasterKeyWrapper {
    // AES-GCM on 32 bytes is microseconds: done inline, no blocking pool.
    fn wrap(
        &self,
        owner: &Owner,
        key: &DataKey,
    ) -> impl Future<Output = Result<WrappedKey, CryptoError>> + Send {
        std::future::ready(self.wrap_now(owner, key))
    }

    fn unwrap(
        &self,
        owner: &Owner,
        wrapped: &WrappedKey,
    ) -> impl Future<Output = Result<DataKey, CryptoError>> + Send {
        std::future::ready(self.unwrap_now(owner, wrapped))
    }
}

impl fmt::Debug for MasterKeyWrapper {
    // Only the path: the master key protects every tenant's keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeyWrapper")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn wrap_aad(owner: &Owner, version: KeyVersion) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(WRAP_AAD_LABEL);
    push_field(&mut out, &owner.aad_bytes());
    out.extend_from_slice(&version.get().to_be_bytes());
    out
}

fn file_error(path: &Path, reason: MasterKeyProblem) -> CryptoError {
    CryptoError::MasterKeyFile {
        path: path.to_owned(),
        reason,
    }
}

/// The key in `path`, `None` if there is no such file. Permissions and size
/// are checked on the opened file (not the path), so a swap between check and
/// read cannot slip a different file in.
fn read_key_file(path: &Path) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>, CryptoError> {
    let err = |reason| file_error(path, reason);
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(MasterKeyProblem::io(&e))),
    };
    let meta = file.metadata().map_err(|e| err(MasterKeyProblem::io(&e)))?;
    if !meta.is_file() {
        return Err(err(MasterKeyProblem::NotAFile));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(err(MasterKeyProblem::Permissions { mode }));
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(err(MasterKeyProblem::WrongLength {
            expected: KEY_LEN,
            found: meta.len(),
        }));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    file.read_exact(key.as_mut_slice())
        .map_err(|e| err(MasterKeyProblem::io(&e)))?;
    Ok(Some(key))
}

/// Writes a fresh random key to `path`, mode 0600, atomically: a temp file in
/// the same directory is written and synced, then published with a hard link,
/// which (unlike rename) refuses to replace an existing file. So a reader
/// never sees a partial key, and two processes racing to create the key
/// cannot end up with different ones: the loser keeps the winner's file.
fn create_key_file(path: &Path) -> Result<(), CryptoError> {
    let err = |reason| file_error(path, reason);
    let name = path
        .file_name()
        .ok_or_else(|| err(MasterKeyProblem::Io("path has no file name".to_owned())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut suffix = [0u8; 8];
    os_random(&mut suffix)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", URL_SAFE_NO_PAD.encode(suffix)));
    let tmp = dir.join(tmp_name);

    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    os_random(key.as_mut_slice())?;
    let result = write_new_key(&tmp, &key).and_then(|()| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    });
    // The temp name is ours alone (create_new + random suffix); remove it
    // whatever happened. Failing to is harmless: it is 0600 and unused.
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| err(MasterKeyProblem::io(&e)))?;
    // Make the new directory entry durable before anything is wrapped with it.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(MasterKeyProblem::io(&e)))
}

fn write_new_key(tmp: &Path, key: &[u8; KEY_LEN]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(key)?;
    file.sync_all()
}
