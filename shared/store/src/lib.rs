//! The suite's one storage seam: versioned documents by key.
//!
//! A document is opaque bytes (usually JSON) at a [`Key`]. The store, not the
//! document, keeps its metadata: the current version (1 on create, +1 per
//! write, never reused), when the key was created and last written, and for
//! every version whether it is live, soft-deleted or destroyed. Writes are
//! guarded per key by check-and-set ([`Cas`]); reads take the latest or a given
//! version; listing answers one level of children, paged with `after`/`limit`.
//!
//! # Why exactly this contract
//!
//! It is what OpenBao's KV v2 offers, operation for operation, so a KV v2
//! backend can honour it without emulation:
//!
//! | here                   | KV v2                                                  |
//! |------------------------|--------------------------------------------------------|
//! | `write` with [`Cas`]   | `POST data/:key` with `options.cas` (0 = create only)  |
//! | `read`                 | `GET data/:key?version=n`                              |
//! | `metadata`             | `GET metadata/:key`                                    |
//! | `list`                 | `LIST metadata/:prefix?after=…&limit=…`                |
//! | `soft_delete`          | `DELETE data/:key` (latest), `POST delete/:key`        |
//! | `undelete`             | `POST undelete/:key`                                   |
//! | `destroy`              | `POST destroy/:key`                                    |
//! | `delete_all`           | `DELETE metadata/:key`                                 |
//! | `ping`                 | `GET sys/health`                                       |
//!
//! Anything KV v2 cannot do is left out on purpose: there is **no multi-key
//! transaction and no conditional delete**. Check-and-set guards one key.
//!
//! # The rule for callers: cascades are resumable sweeps
//!
//! An operation touching several keys (deleting a tenant and everything under
//! it, re-encrypting a tenant's secrets) is a sweep of single-key operations,
//! written so that it can stop anywhere (crash, [`StoreError::Unavailable`])
//! and be run again from the start to completion:
//! - mark intent first on the parent document (e.g. a `deleting` state written
//!   with check-and-set), so readers and a restarted sweep see it;
//! - visit children with `list` pages, deepest first; every delete is
//!   idempotent here (an absent key or version is not an error), so a
//!   repeated step is harmless;
//! - remove the parent last, so the marker survives until the work is done.
//!
//! # Backends
//!
//! [`EmbeddedStore`] keeps everything in one SQLite file; [`OpenBaoStore`]
//! keeps it in an OpenBao KV v2 mount. Both pass [`conformance`], the one
//! test suite of this contract.

mod choice;
mod embedded;
mod error;
mod key;
mod openbao;

pub mod conformance;

use std::{future::Future, sync::Arc};

use time::OffsetDateTime;

pub use choice::{Backend, StorageChoice, StorageConfig, StorageConfigError};
pub use embedded::EmbeddedStore;
pub use error::{RETRY_AFTER, StoreError};
pub use key::{InvalidKey, Key, MAX_KEY_BYTES};
pub use openbao::{
    Answer as OpenBaoAnswer, AppRoleConfig, OpenBaoClient, OpenBaoConfig, OpenBaoStore,
    Request as OpenBaoRequest, Retry as OpenBaoRetry,
};

/// Largest document body, in bytes. OpenBao's Raft storage refuses entries
/// over 1 MiB by default (`max_entry_size`), and KV v2 stores a body inside a
/// JSON object, base64-encoded if it is not JSON (4/3 larger): 512 KiB keeps
/// every document storable on both backends.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// Where a store's timestamps come from; a parameter so tests can fix time.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The wall clock, for production.
pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// The condition a write is made under (KV v2's `cas` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cas {
    /// Write only if the key has no metadata (KV's `cas: 0`). A key whose
    /// versions are all deleted or destroyed still exists; only
    /// [`DocumentStore::delete_all`] frees it.
    CreateOnly,
    /// Write only if the key's current version is this one. `Version(0)` means
    /// the same as [`Cas::CreateOnly`], as in KV.
    Version(u64),
    /// Write whatever the current version (no `cas` option). For documents
    /// with one writer only; anything shared must use check-and-set.
    None,
}

/// One version of a document, as read.
#[derive(Clone, PartialEq, Eq)]
pub struct Document {
    /// The version read.
    pub version: u64,
    /// When that version was written.
    pub created: OffsetDateTime,
    /// The bytes.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Document {
    // Bodies hold secrets (or their ciphertext): a debug print shows the size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("version", &self.version)
            .field("created", &self.created)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// What became of one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionState {
    /// Readable.
    Live,
    /// Soft-deleted: unreadable until undeleted.
    Deleted,
    /// Destroyed: its bytes are gone for good.
    Destroyed,
}

/// The store's record of one version (KV's `versions` map entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// Its number.
    pub version: u64,
    /// When it was written.
    pub created: OffsetDateTime,
    /// Live, deleted or destroyed.
    pub state: VersionState,
}

/// The store's record of a key (KV's metadata), never part of the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// The newest version written (whatever its state).
    pub current_version: u64,
    /// When the key's first version was written.
    pub created: OffsetDateTime,
    /// When its newest version was written. Deletes, undeletes and destroys
    /// do not change it, as in KV.
    pub updated: OffsetDateTime,
    /// The versions the store remembers, oldest first. KV forgets versions
    /// beyond its `max_versions`; the embedded store keeps them all.
    pub versions: Vec<VersionInfo>,
}

/// One entry of a listing: a document directly under the prefix, or a folder
/// (a segment with documents further below). A name can be both, and is then
/// listed twice, once of each kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Child {
    /// A document at `prefix/name`.
    Document(String),
    /// Documents exist under `prefix/name/`.
    Folder(String),
}

impl Child {
    /// The segment name, without any trailing `/`.
    pub fn name(&self) -> &str {
        match self {
            Child::Document(name) | Child::Folder(name) => name,
        }
    }

    /// Whether this is a folder.
    pub fn is_folder(&self) -> bool {
        matches!(self, Child::Folder(_))
    }

    /// The entry as KV lists it (`name`, or `name/` for a folder): listings
    /// are sorted by this, byte-wise, and it is what `after` compares with.
    pub fn cursor(&self) -> String {
        match self {
            Child::Document(name) => name.clone(),
            Child::Folder(name) => format!("{name}/"),
        }
    }
}

/// Versioned documents by key. Every method is atomic on its one key; no
/// method spans keys. Deletes of absent keys or versions succeed, so sweeps
/// can be re-run (see the crate docs).
pub trait DocumentStore: Send + Sync + 'static {
    /// The document at `key`: its current version, or `version` (≥ 1).
    /// [`StoreError::NotFound`] with `deleted: true` when that version was
    /// soft-deleted or destroyed (the latest is not skipped over to an older
    /// live one), `deleted: false` when the key or version does not exist.
    /// A backend may keep only recent versions: OpenBao's KV v2 keeps 10 per
    /// key unless the mount's `max_versions` says otherwise, and an older one
    /// then reads as `deleted: false`. Callers must not rely on old versions
    /// outliving that window.
    fn read(
        &self,
        key: &Key,
        version: Option<u64>,
    ) -> impl Future<Output = Result<Document, StoreError>> + Send;

    /// Stores `body` as the key's next version if `cas` holds; answers the new
    /// version. [`StoreError::Conflict`] (nothing written) if it does not.
    fn write(
        &self,
        key: &Key,
        body: Vec<u8>,
        cas: Cas,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The key's metadata; [`StoreError::NotFound`] if it has none.
    fn metadata(&self, key: &Key) -> impl Future<Output = Result<Metadata, StoreError>> + Send;

    /// Up to `limit` (≥ 1) children directly under `prefix` (`None`: the
    /// root), sorted by [`Child::cursor`], starting after the cursor `after`.
    /// A page shorter than `limit` is the last; a prefix with nothing under it
    /// answers an empty page. Keys whose versions are all deleted are still
    /// listed; only `delete_all` removes a key from listings.
    fn list(
        &self,
        prefix: Option<&Key>,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Child>, StoreError>> + Send;

    /// Soft-deletes `versions` (empty: the current version). Versions that do
    /// not exist or are destroyed are skipped; an absent key is not an error.
    fn soft_delete(
        &self,
        key: &Key,
        versions: &[u64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Restores soft-deleted `versions` (at least one: KV has no "latest" here,
    /// and guessing it would race with writers). Destroyed versions stay
    /// destroyed; absent ones are skipped.
    fn undelete(
        &self,
        key: &Key,
        versions: &[u64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Erases the bytes of `versions` (at least one) for good; their numbers
    /// stay used. Absent versions are skipped.
    fn destroy(
        &self,
        key: &Key,
        versions: &[u64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Erases the key: metadata and every version. A later create-only write
    /// starts again at version 1. An absent key is not an error.
    fn delete_all(&self, key: &Key) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the store answers (for health checks).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Checks arguments every backend refuses the same way, before any I/O.
pub mod check {
    use super::{MAX_BODY_BYTES, StoreError};

    /// A version argument must be ≥ 1.
    pub fn version(v: u64) -> Result<(), StoreError> {
        if v == 0 {
            return Err(StoreError::Invalid("version 0 does not exist".into()));
        }
        Ok(())
    }

    /// Every listed version must be ≥ 1, and the list non-empty when `required`.
    pub fn versions(versions: &[u64], required: bool) -> Result<(), StoreError> {
        if required && versions.is_empty() {
            return Err(StoreError::Invalid("no versions given".into()));
        }
        versions.iter().try_for_each(|v| version(*v))
    }

    /// A body must fit [`MAX_BODY_BYTES`].
    pub fn body(body: &[u8]) -> Result<(), StoreError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(StoreError::Invalid(format!(
                "body is {} bytes, more than {MAX_BODY_BYTES}",
                body.len()
            )));
        }
        Ok(())
    }

    /// A page holds at least one entry.
    pub fn limit(limit: usize) -> Result<(), StoreError> {
        if limit == 0 {
            return Err(StoreError::Invalid("limit must be at least 1".into()));
        }
        Ok(())
    }
}
