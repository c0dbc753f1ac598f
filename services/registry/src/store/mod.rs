//! Where the registry keeps its records: documents in the suite's one
//! storage seam ([`DocumentStore`]: the embedded SQLite file by default,
//! OpenBao's KV v2 when configured), laid out as seed 000 says.
//!
//! | record            | key                                          |
//! |-------------------|----------------------------------------------|
//! | tenant            | `tenants/{t}/config`                         |
//! | org               | `tenants/{t}/orgs/{o}/config`                |
//! | bot / user        | `tenants/{t}/orgs/{o}/bots|users/{id}/config`|
//! | tenant API key    | `tenants/{t}/api-keys/{key_id}`              |
//! | operator API key  | `system/api-keys/{key_id}`                   |
//! | API key id index  | `registry/api-key-ids/{key_id}`              |
//!
//! Secret names can never reach these keys: `config`, `orgs`, `bots`,
//! `users` and `api-keys` are reserved first segments at the scopes where
//! they would collide (`locksmith_domain::secrets::SecretName`), and the
//! index lives outside `tenants/` and `system/` like the credential store's
//! key rings. So with OpenBao configured, the registry and the credential
//! store can share one mount and a deployment has one source of truth.
//!
//! The store has no multi-key transactions: the registry's cascades are
//! resumable sweeps ([`sweep`]) and its creates re-check their parent (see
//! `registry.rs` and `tenants.rs`).

use std::{future::Future, pin::Pin};

use locksmith_domain::{MemberKind, Scope, TenantId};
use locksmith_store::{Child, DocumentStore, Key, StoreError};

use crate::error::RegistryError;

/// Which records a listing returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Tenants (children of `system`).
    Tenant,
    /// Orgs, bots or users.
    Member(MemberKind),
}

/// A document as read, with the store's version (for check-and-set).
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    /// The store's version of the document.
    pub version: u64,
    /// Its bytes.
    pub body: Vec<u8>,
}

/// The name of a record's document, beside its children's folders.
pub(crate) const RECORD: &str = "config";
/// Documents listed per page by sweeps and listings.
pub(crate) const LIST_PAGE: usize = 100;

fn key(path: String) -> Result<Key, StoreError> {
    // Every segment is a validated id or a constant, so this is a bug if it fails.
    Key::parse(&path).map_err(|e| StoreError::Invalid(format!("registry key {path}: {e}")))
}

/// The key of the record at `scope` (a tenant, org, bot or user).
pub(crate) fn record_key(scope: &Scope) -> Result<Key, StoreError> {
    key(format!("{}/{RECORD}", scope.storage_path()))
}

/// The folder holding the records of `kind` directly under `parent`.
pub(crate) fn children_folder(parent: &Scope, kind: RecordKind) -> Result<Key, StoreError> {
    match kind {
        RecordKind::Tenant => key("tenants".into()),
        RecordKind::Member(k) => key(format!("{}/{}", parent.storage_path(), k.plural())),
    }
}

/// The folder of `owner`'s API keys (a tenant, or `None` for operator keys):
/// inside its tenant, so a tenant's keys are swept with it.
pub(crate) fn api_key_folder(owner: Option<&TenantId>) -> Result<Key, StoreError> {
    key(format!("{}/api-keys", owner_path(owner)))
}

/// The key of `owner`'s API key `key_id`.
pub(crate) fn api_key_key(owner: Option<&TenantId>, key_id: &str) -> Result<Key, StoreError> {
    key(format!("{}/api-keys/{key_id}", owner_path(owner)))
}

/// The index entry naming the owner of the API key `key_id`: a presented key
/// carries its id, not its tenant.
pub(crate) fn api_key_index(key_id: &str) -> Result<Key, StoreError> {
    key(format!("registry/api-key-ids/{key_id}"))
}

/// `tenants/{t}` or `system`.
pub(crate) fn owner_path(owner: Option<&TenantId>) -> String {
    match owner {
        Some(tenant) => Scope::Tenant(tenant.clone()).storage_path(),
        None => Scope::System.storage_path(),
    }
}

/// The document at `key`, or `None` if it is absent or deleted.
pub(crate) async fn read<S: DocumentStore>(
    store: &S,
    key: &Key,
) -> Result<Option<Stored>, StoreError> {
    match store.read(key, None).await {
        Ok(doc) => Ok(Some(Stored {
            version: doc.version,
            body: doc.body,
        })),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `folder/name` as a key.
pub(crate) fn child_key(folder: &Key, name: &str) -> Result<Key, StoreError> {
    key(format!("{folder}/{name}"))
}

type Sweep<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Erases every document under `folder` except `keep`, deepest first: a
/// resumable sweep (every step is idempotent, so a sweep cut short by a
/// crash or an outage is finished by running it again).
pub(crate) fn sweep<'a, S: DocumentStore>(
    store: &'a S,
    folder: &'a Key,
    keep: &'a Key,
) -> Sweep<'a> {
    Box::pin(async move {
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list(Some(folder), after.as_deref(), LIST_PAGE)
                .await?;
            for child in &page {
                let path = child_key(folder, child.name())?;
                match child {
                    Child::Folder(_) => sweep(store, &path, keep).await?,
                    Child::Document(_) if path == *keep => {}
                    Child::Document(_) => store.delete_all(&path).await?,
                }
            }
            if page.len() < LIST_PAGE {
                return Ok(());
            }
            after = page.last().map(Child::cursor);
        }
    })
}

/// Up to `want` records kept in folders under `folder` (`{folder}/{id}/config`)
/// that `accept` turns into a value, in the store's order, after the id
/// `after`. Folders without an accepted record (being created or deleted, or
/// holding only another service's documents) are skipped, so pages stay full.
pub(crate) async fn collect_records<S, T>(
    store: &S,
    folder: &Key,
    after: Option<&str>,
    want: usize,
    accept: impl Fn(&str, Stored) -> Result<Option<T>, RegistryError>,
) -> Result<Vec<(String, T)>, RegistryError>
where
    S: DocumentStore,
{
    // A folder's cursor is `name/`: resuming after it skips that folder.
    let mut cursor = after.map(|a| format!("{a}/"));
    let mut out = Vec::new();
    loop {
        let page = store
            .list(Some(folder), cursor.as_deref(), LIST_PAGE)
            .await
            .map_err(RegistryError::Storage)?;
        for child in &page {
            let Child::Folder(name) = child else { continue };
            let record = child_key(&child_key(folder, name)?, RECORD)?;
            let Some(stored) = read(store, &record).await.map_err(RegistryError::Storage)? else {
                continue;
            };
            if let Some(value) = accept(name, stored)? {
                out.push((name.clone(), value));
                if out.len() == want {
                    return Ok(out);
                }
            }
        }
        if page.len() < LIST_PAGE {
            return Ok(out);
        }
        cursor = page.last().map(Child::cursor);
    }
}

/// Up to `want` documents directly under `folder`, after the name `after`.
pub(crate) async fn collect_documents<S: DocumentStore>(
    store: &S,
    folder: &Key,
    after: Option<&str>,
    want: usize,
) -> Result<Vec<(String, Stored)>, StoreError> {
    let mut cursor = after.map(str::to_owned);
    let mut out = Vec::new();
    loop {
        let page = store
            .list(Some(folder), cursor.as_deref(), LIST_PAGE)
            .await?;
        for child in &page {
            let Child::Document(name) = child else {
                continue;
            };
            if let Some(stored) = read(store, &child_key(folder, name)?).await? {
                out.push((name.clone(), stored));
                if out.len() == want {
                    return Ok(out);
                }
            }
        }
        if page.len() < LIST_PAGE {
            return Ok(out);
        }
        cursor = page.last().map(Child::cursor);
    }
}
