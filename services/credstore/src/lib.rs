//! The credential store's core (design brief §1, §3): secrets as versioned
//! maps of fields, sealed with their tenant's (or the system's) data key,
//! over any [`DocumentStore`] and any [`KeyWrapper`].
//!
//! # Layout
//!
//! - A secret is one document at [`SecretRef::storage_path`]
//!   (`tenants/{t}/orgs/{o}/bots/{b}/llm`, `system/email`), JSON
//!   `{"fields": {"<field>": "<sealed text>"}}`. Every value is sealed with
//!   the owner's current key; the associated data binds it to owner, storage
//!   path and field name (and key version), so a value copied elsewhere does
//!   not decrypt. The version lives only in the store's metadata.
//! - An owner's wrapped data key versions are one document at
//!   `keyrings/tenants/{t}` or `keyrings/system`. Secret paths all start
//!   with `system/` or `tenants/` ([`locksmith_domain::Scope::storage_path`]),
//!   so no secret name, whatever the reserved lists say, can reach a key
//!   ring; and on OpenBao a tenant's policy prefix (`tenants/{t}/`) does not
//!   cover its own wrapped keys.
//!
//! # Keys and shredding
//!
//! A tenant without a key does not exist as far as secrets go: every call on
//! its scopes answers NOT_FOUND, and no write can create a secret without a
//! key. [`CredStore::shred_tenant_key`] destroys every version of the key
//! document and then the document itself (a resumable sweep: re-running it
//! is harmless), after which everything sealed for the tenant is
//! undecryptable, even after a new key is provisioned. Unwrapped key rings
//! are cached per process (zeroized on drop); another replica's cache
//! survives a shred until it is restarted or invalidated — the gRPC layer
//! must broadcast invalidation (not done here).
//!
//! # Rotation and re-encryption
//!
//! [`CredStore::rotate_tenant_key`] adds a key version that seals every
//! write from then on (older versions keep opening what they sealed), and
//! answers that version. The gRPC call then starts a background sweep
//! ([`CredStore::spawn_reencryption`]) that rewrites every secret of the
//! owner whose latest version is sealed under an older key, sealed under
//! the newest, with check-and-set on the version it read:
//! - a rewrite is a **new secret version** (same fields): a writer holding
//!   the old version number gets VERSION_CONFLICT and must re-read and
//!   retry, as after any other write; a concurrent write wins, and the sweep
//!   re-reads the secret and leaves it if it is sealed under the newest key;
//! - reads and writes go on throughout; resolve answers change version but
//!   not content;
//! - it is resumable: progress (the storage path reached, the key version
//!   aimed at) is kept in a document beside the key ring
//!   ([`reencryption_marker_path`]), written before the new key version, so
//!   a sweep interrupted by a crash or a shutdown continues at the next start
//!   ([`CredStore::resume_reencryption`]). Documents already sealed under the
//!   newest key cost one read;
//! - versions other than the latest, and a latest version that is
//!   soft-deleted, keep their old key versions (still in the ring, never
//!   retired); a value that does not open is left alone and logged by path;
//! - shredding the key stops a running sweep at its next document.
//!
//! Another replica keeps sealing with its cached ring until it reloads it
//! (see above), so the guarantee that every latest version ends under the
//! newest key holds for the writes the sweep can see.
//!
//! # Resolution
//!
//! [`CredStore::resolve`] walks the scope's ancestry (bot → org → tenant →
//! system) and returns the first secret found, whole, naming the scope that
//! answered. Two deliberate stops:
//! - a secret whose latest version is soft-deleted or destroyed at some
//!   scope ends the walk with NOT_FOUND: deleting a bot's own credentials
//!   must not silently hand it the org's or the system's (and an undelete
//!   would flip it back). [`CredStore::purge`] (erasing the secret with its
//!   history) is what restores the fallback;
//! - names pinned to their scope (seed 000: a user's `email`) never fall
//!   back. The table lives in this crate until the domain catalogue has a
//!   `fallback` flag per entry.
//!
//! The system scope is visited only for suite services and operators: tenant
//! principals never read the suite's own credentials.
//!
//! # The resolve cache
//!
//! With [`CredStore::with_resolve_cache`] (the binary's `[cache]` section:
//! `ttl_ms`, default 3000, 0 disables it; `max_entries`, default 10 000),
//! resolve answers, found or not, are kept decrypted in memory (in the same
//! zeroizing types) for at most `ttl_ms`. Authorization runs on every call;
//! the answer is exactly the one an uncached walk would give that caller,
//! because the key holds what the walk depends on (name, scope asked, and
//! whether the caller may see the system scope). Any write through this
//! replica drops every answer it could change before it returns; writes
//! through other replicas are visible after at most `ttl_ms`. A cache hit is
//! audited like any resolve. See `cache.rs` for the details.
//!
//! # Audit
//!
//! Every call leaves exactly one [`AuditEvent`], success or failure, without
//! any value (a cached resolve too); each re-encryption rewrite leaves one,
//! as `service credstore`. [`JsonLinesAudit`] writes them from a background
//! thread behind a bounded queue: a full queue makes callers wait, nothing
//! is dropped, and [`JsonLinesAudit::close`] writes out the rest at shutdown.
//!
//! # Serving
//!
//! [`server::serve`] puts the store behind mTLS gRPC
//! (`locksmith.credstore.v1.CredentialStoreService`); `grpc` converts prost
//! ↔ domain at the edge and passes the caller's principal through; the
//! `locksmith-credstore` binary reads [`CredStoreConfig`].

mod audit;
mod cache;
pub mod config;
mod connections;
mod error;
mod grpc;
mod keyring;
mod ops;
mod policy;
mod rotation;
mod secret;
pub mod server;
pub mod wrapper;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use locksmith_auth::Principal;
use locksmith_crypto::{KeyRing, KeyWrapper, Owner};
use locksmith_store::{Clock, DocumentStore};

use crate::{cache::ResolveCache, rotation::Sweeps};

pub use audit::{
    AUDIT_QUEUE, AuditEvent, AuditSink, JsonLinesAudit, MemoryAudit, Operation, Outcome, Recording,
};
pub use cache::CacheConfig;
pub use config::CredStoreConfig;
pub use connections::ConnectionRecord;
pub use error::CredError;
pub use grpc::CredStoreApi;
pub use keyring::key_ring_path;
pub use rotation::{SweepReport, reencryption_marker_path};
pub use secret::{Secret, SecretFields};

/// The credential store: secrets in `S`, data keys wrapped by `W`, every call
/// audited.
pub struct CredStore<S, W> {
    store: S,
    wrapper: W,
    audit: Arc<dyn AuditSink<AuditEvent>>,
    clock: Clock,
    /// Unwrapped key rings by owner, loaded on first use so a read is one
    /// storage round trip.
    rings: Mutex<HashMap<Owner, Arc<KeyRing>>>,
    /// Decrypted resolve answers (see the crate docs).
    cache: ResolveCache,
    /// Background re-encryption sweeps of this process.
    sweeps: Sweeps,
}

impl<S: DocumentStore, W: KeyWrapper> CredStore<S, W> {
    /// A credential store over `store`, wrapping keys with `wrapper`,
    /// auditing to `audit` with times from `clock`.
    pub fn new(store: S, wrapper: W, audit: Arc<dyn AuditSink<AuditEvent>>, clock: Clock) -> Self {
        Self {
            store,
            wrapper,
            audit,
            clock,
            rings: Mutex::new(HashMap::new()),
            cache: ResolveCache::new(CacheConfig::DISABLED),
            sweeps: Sweeps::default(),
        }
    }

    /// Serves resolves from a cache of decrypted answers (see the crate
    /// docs); without this call every resolve reads storage.
    pub fn with_resolve_cache(mut self, config: CacheConfig) -> Self {
        self.cache = ResolveCache::new(config);
        self
    }

    /// The underlying document store (for sweeps and tests).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Records one event for a call that ended with `result`. Waits only
    /// if the sink applies backpressure.
    async fn audit<T>(&self, record: Record<'_>, result: &Result<T, CredError>) {
        let outcome = match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(e.code().to_string()),
        };
        let event = AuditEvent {
            at: (self.clock)(),
            principal: record.principal.describe(),
            operation: record.operation,
            resource: record.resource,
            version: record.version,
            answered_by: record.answered_by,
            outcome,
        };
        self.audit.record(event).await;
    }

    fn cached_ring(&self, owner: &Owner) -> Option<Arc<KeyRing>> {
        // The cache holds no invariant a panicking holder could break.
        self.rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(owner)
            .cloned()
    }

    fn cache_ring(&self, owner: Owner, ring: Option<Arc<KeyRing>>) {
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        match ring {
            Some(ring) => rings.insert(owner, ring),
            None => rings.remove(&owner),
        };
    }
}

/// What an audit event says besides the outcome and time.
struct Record<'a> {
    principal: &'a Principal,
    operation: Operation,
    resource: String,
    version: Option<u64>,
    answered_by: Option<String>,
}

impl<'a> Record<'a> {
    fn new(principal: &'a Principal, operation: Operation, resource: String) -> Self {
        Self {
            principal,
            operation,
            resource,
            version: None,
            answered_by: None,
        }
    }
}
