//! Where the registry keeps its records, behind one trait.
//!
//! A record is a JSON document addressed by its [`Scope`] (a tenant, or an
//! org, bot or user inside one), with a version for check-and-set. The store
//! knows nothing of the document's fields; the service does. Keys follow seed
//! 000's layout (`tenants/{t}/orgs/{o}/bots/{b}`), so a tenant and everything
//! inside it share one prefix: deleting a tenant is one prefix delete, and the
//! OpenBao backend (a later issue) maps onto KV v2 paths one to one.

mod sqlite;

use std::future::Future;

use locksmith_domain::{MemberKind, Scope};

pub use sqlite::SqliteStore;

/// A stored document and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Check-and-set version: 1 on create, +1 per update.
    pub version: u64,
    /// The JSON document.
    pub body: Vec<u8>,
}

/// Which records a listing returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Tenants (children of `system`).
    Tenant,
    /// Orgs, bots or users.
    Member(MemberKind),
}

impl RecordKind {
    /// The kind of the record at `scope`; `None` for `system`.
    pub fn of(scope: &Scope) -> Option<Self> {
        match scope {
            Scope::System => None,
            Scope::Tenant(_) => Some(RecordKind::Tenant),
            other => other.member_kind().map(RecordKind::Member),
        }
    }

    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Tenant => "tenant",
            RecordKind::Member(kind) => kind.as_str(),
        }
    }
}

/// Where the API key `key_id` of `owner` (a tenant, or `None` for an
/// operator key) is stored: inside its tenant, so it dies with it.
pub fn api_key_path(owner: Option<&locksmith_domain::TenantId>, key_id: &str) -> String {
    format!("{}/api-keys/{key_id}", api_key_parent(owner))
}

/// The record under which an owner's API keys are stored.
pub fn api_key_parent(owner: Option<&locksmith_domain::TenantId>) -> String {
    match owner {
        Some(tenant) => Scope::Tenant(tenant.clone()).storage_path(),
        None => Scope::System.storage_path(),
    }
}

/// Why a store operation did not happen. Nothing is written in any case.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No record at that scope.
    #[error("no record")]
    NotFound,
    /// A record exists at that scope already.
    #[error("record exists")]
    AlreadyExists,
    /// The record's parent (the tenant of an org, the org of a bot) is missing.
    #[error("parent record missing")]
    ParentMissing,
    /// Check-and-set failed.
    #[error("record is at version {current}")]
    VersionConflict {
        /// The stored version.
        current: u64,
    },
    /// The backend failed; the message is for the log, not for callers.
    #[error("storage backend failed: {0}")]
    Backend(String),
}

/// The registry's storage. Implementations must make every method atomic.
pub trait RegistryStore: Send + Sync + 'static {
    /// Stores a new record; fails if one exists or, for a member, if its parent does not.
    fn create(
        &self,
        scope: Scope,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The record at `scope`, if any.
    fn get(
        &self,
        scope: Scope,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send;

    /// Replaces the record if it is at `expected_version`; it becomes `expected_version + 1`.
    fn update(
        &self,
        scope: Scope,
        expected_version: u64,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the record and every record under it, if it is at
    /// `expected_version` (when given).
    fn delete(
        &self,
        scope: Scope,
        expected_version: Option<u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` records of `kind` directly under `parent`, ordered by id,
    /// starting after the id `after`.
    fn list(
        &self,
        parent: Scope,
        kind: RecordKind,
        after: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredRecord>, StoreError>> + Send;

    /// Stores a new API key record at `path` (`tenants/{t}/api-keys/{id}` or
    /// `system/api-keys/{id}`, see [`api_key_path`]), so a tenant's keys go
    /// with it when it is deleted. Fails if the tenant is missing
    /// ([`StoreError::ParentMissing`]) or the id is taken.
    fn create_api_key(
        &self,
        path: String,
        key_id: String,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The API key record with `key_id`, wherever it lives.
    fn get_api_key(
        &self,
        key_id: String,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send;

    /// Replaces the API key record at `path` if it is at `expected_version`.
    fn update_api_key(
        &self,
        path: String,
        expected_version: u64,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` API key records directly under `owner_path` (`tenants/{t}`
    /// or `system`), ordered by key id, starting after `after`.
    fn list_api_keys(
        &self,
        owner_path: String,
        after: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredRecord>, StoreError>> + Send;

    /// Whether the store answers (for health checks).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
