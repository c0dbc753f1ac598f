//! Tenants' custom providers (issue 12): catalog entries a tenant defines
//! through the API for providers we do not ship, kept in the broker's
//! [`DocumentStore`] next to pending authorizations.
//!
//! - **Storage.** One document per provider,
//!   `broker/custom-providers/{tenant}/{integration}`: the definition exactly
//!   as sent (JSON, the shape of one `[providers.<id>]` table) and its times.
//!   Every write is check-and-set (create only, or on the version read), so
//!   two admins editing at once cannot lose a change. A delete first writes a
//!   tombstone with check-and-set, then erases the key: the store has no
//!   conditional delete, and the tombstone is what makes one.
//! - **Lookup.** [`CustomProviders::lookup`] answers the shipped entry when
//!   there is one (a shipped id cannot be created as custom; if a later
//!   catalog ships an id a tenant already uses, the shipped entry wins), else
//!   the tenant's own custom provider. Another tenant's is NOT_FOUND exactly
//!   as an absent one: the key is under the asking tenant, so it is never
//!   even read.
//! - **Cache.** Parsed providers are cached per process for [`CACHE_TTL`]
//!   (a flow and its refreshes read the same entry over and over);
//!   invalidated on update and delete through this replica. Another
//!   replica's change is seen within the TTL.
//!
//! Validation and the egress checks of the URLs happen in the flows
//! (`flows/custom.rs`); this module stores what they admitted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use locksmith_domain::{ConnectionRef, IntegrationId, TenantId};
use locksmith_store::{Cas, Child, DocumentStore, Key, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::catalog::{Catalog, Provider, parse_custom_provider};
use crate::error::{BrokerError, RETRY_AFTER};
use crate::refresh::{ProviderFuture, ProviderSource};

/// Where custom providers live in the broker's storage.
const PREFIX: &str = "broker/custom-providers";
/// How long a parsed provider is served from the cache.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most cached providers; past it the cache starts over (simpler than LRU,
/// and a refill is one read per provider).
const CACHE_MAX: usize = 10_000;
/// Page sizes of a listing.
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;
/// Most tenants' custom providers one tenant may hold (a bound on storage
/// a tenant can fill).
pub const MAX_PER_TENANT: usize = 200;

/// A custom provider as stored and answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomProviderView {
    /// `tenants/{t}/providers/{integration}`.
    pub name: String,
    /// The definition exactly as sent.
    pub definition: String,
    /// Its version (check-and-set).
    pub version: u64,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When its definition last changed.
    pub updated_at: OffsetDateTime,
}

/// One page of a tenant's custom providers.
#[derive(Debug, Clone)]
pub struct CustomProviderList {
    /// By integration.
    pub providers: Vec<CustomProviderView>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// The document body.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    definition: String,
    created_at: i64,
    updated_at: i64,
    /// A delete in progress (see the module docs): reads as absent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

/// The resource name of a tenant's custom provider.
pub fn resource_name(tenant: &TenantId, integration: &IntegrationId) -> String {
    format!("tenants/{tenant}/providers/{integration}")
}

/// Reads `tenants/{t}/providers/{integration}`.
pub fn parse_name(name: &str) -> Option<(TenantId, IntegrationId)> {
    let rest = name.strip_prefix("tenants/")?;
    let (tenant, rest) = rest.split_once('/')?;
    let integration = rest.strip_prefix("providers/")?;
    Some((
        TenantId::parse(tenant).ok()?,
        IntegrationId::parse(integration).ok()?,
    ))
}

/// Reads `tenants/{t}`.
pub fn parse_parent(parent: &str) -> Option<TenantId> {
    TenantId::parse(parent.strip_prefix("tenants/")?).ok()
}

fn storage(e: StoreError) -> BrokerError {
    match e {
        StoreError::Unavailable(_) => BrokerError::Unavailable {
            what: "the broker's storage",
            retry_after: RETRY_AFTER,
        },
        e => BrokerError::Internal(format!("custom providers: {e}")),
    }
}

fn from_unix(s: i64) -> Result<OffsetDateTime, BrokerError> {
    OffsetDateTime::from_unix_timestamp(s)
        .map_err(|_| BrokerError::Internal("custom providers: a stored time is corrupt".into()))
}

fn invalid(field: &str, reason: &str) -> BrokerError {
    BrokerError::InvalidArgument {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Page tokens name the listing and the last integration served, so a
/// token from another tenant's listing is refused instead of skipping names.
fn next_token(tenant: &TenantId, last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tenant}\n{last}"))
}

fn after_token(tenant: &TenantId, token: &str) -> Result<Option<String>, BrokerError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || invalid("page_token", "is not a token of this listing");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    match text.split_once('\n') {
        Some((of, last)) if of == tenant.as_str() && !last.is_empty() => Ok(Some(last.to_owned())),
        _ => Err(bad()),
    }
}

/// A cache slot: the tenant that sees the provider, and its id.
type Slot = (TenantId, IntegrationId);

/// Tenants' custom providers over the broker's store, with the shipped
/// catalog in front.
pub struct CustomProviders<S> {
    store: Arc<S>,
    catalog: Arc<Catalog>,
    cache: Mutex<HashMap<Slot, (Arc<Provider>, Instant)>>,
}

impl<S> std::fmt::Debug for CustomProviders<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomProviders").finish_non_exhaustive()
    }
}

impl<S: DocumentStore> CustomProviders<S> {
    /// Custom providers in `store`, behind the shipped `catalog`.
    pub fn new(store: Arc<S>, catalog: Arc<Catalog>) -> Self {
        Self {
            store,
            catalog,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The shipped catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn key(tenant: &TenantId, integration: &IntegrationId) -> Result<Key, BrokerError> {
        Key::parse(&format!("{PREFIX}/{tenant}/{integration}"))
            .map_err(|e| BrokerError::Internal(format!("custom provider key: {e}")))
    }

    fn folder(tenant: &TenantId) -> Result<Key, BrokerError> {
        Key::parse(&format!("{PREFIX}/{tenant}"))
            .map_err(|e| BrokerError::Internal(format!("custom provider key: {e}")))
    }

    /// The live document and its version; `None` when absent or deleted.
    async fn read(&self, key: &Key) -> Result<Option<(Stored, u64)>, BrokerError> {
        Ok(self.read_any(key).await?.filter(|(s, _)| !s.deleted))
    }

    /// The document, tombstone included.
    async fn read_any(&self, key: &Key) -> Result<Option<(Stored, u64)>, BrokerError> {
        let doc = match self.store.read(key, None).await {
            Ok(doc) => doc,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        let stored: Stored = serde_json::from_slice(&doc.body).map_err(|_| {
            BrokerError::Internal("custom providers: a stored document is corrupt".into())
        })?;
        Ok(Some((stored, doc.version)))
    }

    fn view(
        tenant: &TenantId,
        integration: &IntegrationId,
        stored: Stored,
        version: u64,
    ) -> Result<CustomProviderView, BrokerError> {
        Ok(CustomProviderView {
            name: resource_name(tenant, integration),
            created_at: from_unix(stored.created_at)?,
            updated_at: from_unix(stored.updated_at)?,
            definition: stored.definition,
            version,
        })
    }

    fn forget(&self, tenant: &TenantId, integration: &IntegrationId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&(tenant.clone(), integration.clone()));
        }
    }

    /// The provider `integration` as `tenant` sees it: the shipped entry, or
    /// the tenant's custom one; `NotFound("integration")` otherwise.
    pub async fn lookup(
        &self,
        tenant: Option<&TenantId>,
        integration: &IntegrationId,
    ) -> Result<Arc<Provider>, BrokerError> {
        if let Some(p) = self.catalog.get(integration.as_str()) {
            return Ok(Arc::clone(p));
        }
        let Some(tenant) = tenant else {
            return Err(BrokerError::NotFound("integration"));
        };
        let slot = (tenant.clone(), integration.clone());
        let cached = self.cache.lock().ok().and_then(|cache| {
            cache
                .get(&slot)
                .filter(|(_, at)| at.elapsed() < CACHE_TTL)
                .map(|(p, _)| Arc::clone(p))
        });
        if let Some(p) = cached {
            return Ok(p);
        }
        let Some((stored, _)) = self.read(&Self::key(tenant, integration)?).await? else {
            return Err(BrokerError::NotFound("integration"));
        };
        // It was validated when written; a definition that no longer parses
        // (a newer build's rules) is our problem to log, not the caller's.
        let provider = parse_custom_provider(integration.as_str(), stored.definition.as_bytes())
            .map_err(|e| BrokerError::Internal(format!("stored custom provider: {e}")))?;
        let provider = Arc::new(provider);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(slot, (Arc::clone(&provider), Instant::now()));
        }
        Ok(provider)
    }

    /// One custom provider.
    pub async fn get(
        &self,
        tenant: &TenantId,
        integration: &IntegrationId,
    ) -> Result<CustomProviderView, BrokerError> {
        let (stored, version) = self
            .read(&Self::key(tenant, integration)?)
            .await?
            .ok_or(BrokerError::NotFound("custom provider"))?;
        Self::view(tenant, integration, stored, version)
    }

    /// One page of a tenant's custom providers, by integration.
    pub async fn list(
        &self,
        tenant: &TenantId,
        page_size: i32,
        page_token: &str,
    ) -> Result<CustomProviderList, BrokerError> {
        let size = match usize::try_from(page_size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) => n.min(MAX_PAGE_SIZE),
            Err(_) => return Err(invalid("page_size", "must not be negative")),
        };
        let mut after = after_token(tenant, page_token)?;
        let folder = Self::folder(tenant)?;
        let mut providers = Vec::new();
        let mut next_page_token = String::new();
        let mut last_served: Option<String> = None;
        // Tombstones (deletes in progress) are skipped, so a page may need
        // more than one listing call to fill.
        'pages: loop {
            let children = self
                .store
                .list(Some(&folder), after.as_deref(), size + 1)
                .await
                .map_err(storage)?;
            let last_page = children.len() <= size;
            for child in children {
                after = Some(child.cursor());
                let Child::Document(name) = child else {
                    continue;
                };
                let Ok(integration) = IntegrationId::parse(&name) else {
                    continue;
                };
                let Some((stored, version)) = self.read(&Self::key(tenant, &integration)?).await?
                else {
                    continue;
                };
                if providers.len() == size {
                    // One more exists: this page ends at the previous one.
                    if let Some(last) = &last_served {
                        next_page_token = next_token(tenant, last);
                    }
                    break 'pages;
                }
                providers.push(Self::view(tenant, &integration, stored, version)?);
                last_served = Some(integration.to_string());
            }
            if last_page {
                break;
            }
        }
        Ok(CustomProviderList {
            providers,
            next_page_token,
        })
    }

    /// How many live custom providers a tenant has (bounded by
    /// [`MAX_PER_TENANT`] + 1: the caller only compares with the limit).
    async fn count(&self, tenant: &TenantId) -> Result<usize, BrokerError> {
        let children = self
            .store
            .list(Some(&Self::folder(tenant)?), None, MAX_PER_TENANT + 1)
            .await
            .map_err(storage)?;
        Ok(children.iter().filter(|c| !c.is_folder()).count())
    }

    /// Stores a new custom provider whose `definition` the caller validated
    /// and checked. ALREADY_EXISTS when the tenant has one by that id.
    pub async fn create(
        &self,
        tenant: &TenantId,
        integration: &IntegrationId,
        definition: String,
        now: OffsetDateTime,
    ) -> Result<CustomProviderView, BrokerError> {
        let key = Self::key(tenant, integration)?;
        let cas = match self.read_any(&key).await? {
            Some((s, _)) if !s.deleted => return Err(already_exists(integration, false)),
            // A delete in progress: its tombstone is overwritten (on its
            // version, so a concurrent create still loses cleanly).
            Some((_, version)) => Cas::Version(version),
            None => {
                if self.count(tenant).await? >= MAX_PER_TENANT {
                    return Err(BrokerError::InvalidArgument {
                        field: "name".into(),
                        reason: format!(
                            "the tenant has {MAX_PER_TENANT} custom providers, the most allowed"
                        ),
                    });
                }
                Cas::CreateOnly
            }
        };
        let stored = Stored {
            definition,
            created_at: now.unix_timestamp(),
            updated_at: now.unix_timestamp(),
            deleted: false,
        };
        let version = self.write(&key, &stored, cas).await.map_err(|e| match e {
            BrokerError::VersionConflict => already_exists(integration, false),
            e => e,
        })?;
        self.forget(tenant, integration);
        Self::view(tenant, integration, stored, version)
    }

    /// Replaces a custom provider's definition if it is at `expected`.
    pub async fn update(
        &self,
        tenant: &TenantId,
        integration: &IntegrationId,
        definition: String,
        expected: u64,
        now: OffsetDateTime,
    ) -> Result<CustomProviderView, BrokerError> {
        let key = Self::key(tenant, integration)?;
        let (old, version) = self
            .read(&key)
            .await?
            .ok_or(BrokerError::NotFound("custom provider"))?;
        if version != expected {
            return Err(BrokerError::VersionConflict);
        }
        let stored = Stored {
            definition,
            created_at: old.created_at,
            updated_at: now.unix_timestamp(),
            deleted: false,
        };
        let result = self.write(&key, &stored, Cas::Version(expected)).await;
        // Forgotten whatever the outcome: a conflict means it changed.
        self.forget(tenant, integration);
        Self::view(tenant, integration, stored, result?)
    }

    /// Deletes a custom provider if it is at `expected` (0: any version).
    pub async fn delete(
        &self,
        tenant: &TenantId,
        integration: &IntegrationId,
        expected: u64,
    ) -> Result<(), BrokerError> {
        let key = Self::key(tenant, integration)?;
        let (stored, version) = self
            .read(&key)
            .await?
            .ok_or(BrokerError::NotFound("custom provider"))?;
        if expected != 0 && version != expected {
            return Err(BrokerError::VersionConflict);
        }
        let tombstone = Stored {
            deleted: true,
            ..stored
        };
        let result = self.write(&key, &tombstone, Cas::Version(version)).await;
        self.forget(tenant, integration);
        result?;
        self.store.delete_all(&key).await.map_err(storage)?;
        Ok(())
    }

    /// Erases every custom provider of `tenant` (deleted in the registry)
    /// with its history, tombstones included; answers how many there were.
    /// Idempotent: a sweep that stopped half-way is finished by the next.
    pub async fn erase_tenant(&self, tenant: &TenantId) -> Result<u32, BrokerError> {
        let folder = Self::folder(tenant)?;
        let mut erased = 0u32;
        loop {
            // Each round erases what it listed, so the next round starts over.
            let children = self
                .store
                .list(Some(&folder), None, MAX_PAGE_SIZE)
                .await
                .map_err(storage)?;
            let documents: Vec<String> = children
                .into_iter()
                .filter_map(|child| match child {
                    Child::Document(name) => Some(name),
                    _ => None,
                })
                .collect();
            if documents.is_empty() {
                break;
            }
            for name in documents {
                let key = Key::parse(&format!("{PREFIX}/{tenant}/{name}"))
                    .map_err(|e| BrokerError::Internal(format!("custom provider key: {e}")))?;
                self.store.delete_all(&key).await.map_err(storage)?;
                if let Ok(integration) = IntegrationId::parse(&name) {
                    self.forget(tenant, &integration);
                }
                erased = erased.saturating_add(1);
            }
        }
        Ok(erased)
    }

    async fn write(&self, key: &Key, stored: &Stored, cas: Cas) -> Result<u64, BrokerError> {
        let body = serde_json::to_vec(stored)
            .map_err(|e| BrokerError::Internal(format!("custom provider encoding: {e}")))?;
        match self.store.write(key, body, cas).await {
            Ok(v) => Ok(v),
            Err(StoreError::Conflict { .. }) => Err(BrokerError::VersionConflict),
            Err(e) => Err(storage(e)),
        }
    }
}

fn already_exists(integration: &IntegrationId, shipped: bool) -> BrokerError {
    BrokerError::AlreadyExists {
        what: "integration",
        id: integration.to_string(),
        shipped,
    }
}

/// ALREADY_EXISTS for an id the shipped catalog holds.
pub fn shipped_already(integration: &IntegrationId) -> BrokerError {
    already_exists(integration, true)
}

impl<S: DocumentStore> ProviderSource for CustomProviders<S> {
    fn provider<'a>(&'a self, at: &'a ConnectionRef) -> ProviderFuture<'a> {
        Box::pin(self.lookup(at.scope.tenant(), &at.integration))
    }
}

#[cfg(test)]
#[path = "custom_tests.rs"]
mod tests;
