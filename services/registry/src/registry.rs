//! The registry's logic on domain types: orgs, bots and users inside
//! tenants (tenants themselves are in `tenants.rs`), over the shared
//! document store.
//!
//! # Without transactions
//!
//! The store checks-and-sets one key at a time, so every rule spanning keys
//! is made of single-key steps that are safe to interrupt:
//! - a member is created only under an active parent, and the parent is
//!   checked again *after* the write: a parent deleted meanwhile either saw
//!   the new record in its sweep (which lists children after marking the
//!   parent) or is seen here, and the record is taken back. Either way no
//!   orphan survives;
//! - a delete first marks the record `deleting` with check-and-set (so a
//!   conditional delete cannot erase a concurrent update), then sweeps what
//!   is inside it, then erases it. A delete cut short is invisible to callers
//!   and finished by the next delete of the same record (or of its tenant).

use std::sync::Arc;

use locksmith_auth::Principal;
use locksmith_domain::{Member, MemberKind, MemberPatch, MemberSpec, Scope};
use locksmith_store::{Cas, DocumentStore, StoreError};
use locksmith_tls::ServiceName;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use time::OffsetDateTime;

use crate::{
    error::RegistryError,
    keys::TenantKeys,
    pagination::{PageRequest, next_page_token},
    store::{RecordKind, Stored, children_folder, collect_records, read, record_key, sweep},
    tenants::Lifecycle,
};

/// The source of "now", injected so that time-dependent behaviour is testable.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    /// The records, in the store's order of ids.
    pub items: Vec<T>,
    /// Token for the next page, `None` on the last one.
    pub next_page_token: Option<String>,
}

/// The tenant registry over a document store, with the credential store
/// keeping tenants' keys.
pub struct Registry<S> {
    pub(crate) store: S,
    pub(crate) keys: Arc<dyn TenantKeys>,
    pub(crate) clock: Clock,
}

/// A stored org, bot or user with its lifecycle; as for tenants, the
/// member's `version` counts callers' changes only.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MemberRecord {
    #[serde(flatten)]
    pub(crate) member: Member,
    #[serde(default, skip_serializing_if = "Lifecycle::is_active")]
    pub(crate) lifecycle: Lifecycle,
}

/// How a scope is named in messages: "tenant 'prod'", "bot 'b1' of org 'acme' in tenant 'prod'".
pub(crate) fn describe(scope: &Scope) -> String {
    match scope {
        Scope::System => "the system scope".to_owned(),
        Scope::Tenant(t) => format!("tenant '{t}'"),
        Scope::Org { tenant, org } => format!("org '{org}' in tenant '{tenant}'"),
        Scope::Bot { tenant, org, bot } => {
            format!("bot '{bot}' of org '{org}' in tenant '{tenant}'")
        }
        Scope::User { tenant, org, user } => {
            format!("user '{user}' of org '{org}' in tenant '{tenant}'")
        }
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RegistryError> {
    serde_json::to_vec(value).map_err(|e| RegistryError::Corrupt {
        what: "a new record".into(),
        reason: e.to_string(),
    })
}

pub(crate) fn decode<T: DeserializeOwned>(scope: &Scope, body: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|e| RegistryError::Corrupt {
        what: describe(scope),
        reason: e.to_string(),
    })
}

pub(crate) fn not_found(scope: &Scope) -> RegistryError {
    RegistryError::NotFound {
        what: describe(scope),
    }
}

/// How many times a check-and-set step is retried after losing a race
/// before the caller is told to retry; a real workload never gets near it.
pub(crate) const MAX_RACES: usize = 16;

pub(crate) fn too_busy(scope: &Scope) -> RegistryError {
    RegistryError::Storage(StoreError::Unavailable(format!(
        "{} kept changing; retry",
        describe(scope)
    )))
}

/// What a member's parents were when it was checked: a parent deleted and
/// created again in between is a different parent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parents(Vec<OffsetDateTime>);

impl<S: DocumentStore> Registry<S> {
    /// A registry over `store`, having tenants' keys provisioned and
    /// shredded through `keys`, reading time from `clock`.
    pub fn new(store: S, keys: Arc<dyn TenantKeys>, clock: Clock) -> Self {
        Self { store, keys, clock }
    }

    /// The underlying document store (for sweeps and tests).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Whether storage answers.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        self.store.ping().await.map_err(RegistryError::Storage)
    }

    pub(crate) async fn read(&self, scope: &Scope) -> Result<Option<Stored>, RegistryError> {
        read(&self.store, &record_key(scope)?)
            .await
            .map_err(RegistryError::Storage)
    }

    /// The member at `scope` and its store version, whatever its lifecycle.
    async fn member_record(
        &self,
        scope: &Scope,
    ) -> Result<Option<(u64, MemberRecord)>, RegistryError> {
        match self.read(scope).await? {
            Some(stored) => Ok(Some((stored.version, decode(scope, &stored.body)?))),
            None => Ok(None),
        }
    }

    /// The active member at `scope`.
    async fn active_member(&self, scope: &Scope) -> Result<(u64, Member), RegistryError> {
        match self.member_record(scope).await? {
            Some((version, record)) if record.lifecycle == Lifecycle::Active => {
                Ok((version, record.member))
            }
            _ => Err(not_found(scope)),
        }
    }

    /// Checks that every ancestor of `scope` (its tenant; for a bot or user
    /// also its org) is active, answering NOT_FOUND for the first that is not.
    pub(crate) async fn parents(&self, scope: &Scope) -> Result<Parents, RegistryError> {
        let mut seen = Vec::new();
        let mut chain = Vec::new();
        let mut next = scope.parent();
        while let Some(parent) = next {
            next = parent.parent();
            if parent != Scope::System {
                chain.push(parent);
            }
        }
        for parent in chain.iter().rev() {
            match parent {
                Scope::Tenant(id) => seen.push(self.get_tenant(id).await?.created_at),
                other => seen.push(self.active_member(other).await?.1.created_at),
            }
        }
        Ok(Parents(seen))
    }

    /// Creates an org, bot or user at `scope`; its parents must be active.
    pub async fn create_member(
        &self,
        scope: Scope,
        spec: MemberSpec,
    ) -> Result<Member, RegistryError> {
        let member = Member::create(scope, spec, (self.clock)())?;
        let scope = member.scope.clone();
        let before = self.parents(&scope).await?;
        let key = record_key(&scope)?;
        let record = MemberRecord {
            member,
            lifecycle: Lifecycle::Active,
        };
        match self
            .store
            .write(&key, encode(&record)?, Cas::CreateOnly)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(RegistryError::AlreadyExists {
                    what: describe(&scope),
                });
            }
            Err(e) => return Err(RegistryError::Storage(e)),
        }
        // The parents again: a delete that marked one after our first check
        // may have listed its children before our write (see the module docs).
        let after = self.parents(&scope).await;
        if after.as_ref().ok() != Some(&before) {
            if let Err(e) = self.store.delete_all(&key).await {
                tracing::error!(scope = %scope, error = %e, "could not take back a member whose parent went away");
                return Err(RegistryError::Storage(e));
            }
            return Err(after
                .err()
                .unwrap_or_else(|| not_found(&scope.parent().unwrap_or(Scope::System))));
        }
        tracing::info!(scope = %scope, "member created");
        Ok(record.member)
    }

    /// The org, bot or user at `scope`.
    pub async fn get_member(&self, scope: &Scope) -> Result<Member, RegistryError> {
        self.parents(scope).await?;
        Ok(self.active_member(scope).await?.1)
    }

    /// Applies `patch` if the member is at `version`.
    pub async fn update_member(
        &self,
        scope: &Scope,
        version: u64,
        patch: MemberPatch,
    ) -> Result<Member, RegistryError> {
        self.parents(scope).await?;
        let key = record_key(scope)?;
        for _ in 0..MAX_RACES {
            let (stored, current) = self.active_member(scope).await?;
            check_version(scope, current.version, version)?;
            let next = MemberRecord {
                member: current.patched(patch.clone(), (self.clock)())?,
                lifecycle: Lifecycle::Active,
            };
            match self
                .store
                .write(&key, encode(&next)?, Cas::Version(stored))
                .await
            {
                Ok(_) => return Ok(next.member),
                // Changed meanwhile: the next read says how.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(RegistryError::Storage(e)),
            }
        }
        Err(too_busy(scope))
    }

    /// Deletes the member (an org with its bots and users). A member whose
    /// delete was cut short is finished, whatever `version` says.
    pub async fn delete_member(
        &self,
        scope: &Scope,
        version: Option<u64>,
    ) -> Result<(), RegistryError> {
        self.parents(scope).await?;
        let key = record_key(scope)?;
        let mut marked = false;
        for _ in 0..MAX_RACES {
            let Some((stored, record)) = self.member_record(scope).await? else {
                return Err(not_found(scope));
            };
            if record.lifecycle != Lifecycle::Active {
                marked = true;
                break;
            }
            if let Some(given) = version {
                check_version(scope, record.member.version, given)?;
            }
            let deleting = MemberRecord {
                lifecycle: Lifecycle::Deleting,
                ..record
            };
            match self
                .store
                .write(&key, encode(&deleting)?, Cas::Version(stored))
                .await
            {
                Ok(_) => {
                    marked = true;
                    break;
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(RegistryError::Storage(e)),
            }
        }
        if !marked {
            return Err(too_busy(scope));
        }
        // The member's secrets and connections first: a member later created
        // with the same id must not find them. The mark stays until both are
        // done, so a failure here is finished by the next delete.
        let myself = Principal::Service {
            service: ServiceName::Registry,
        };
        self.keys
            .erase_scope(&myself, scope)
            .await
            .map_err(RegistryError::Keys)?;
        self.erase(scope).await?;
        tracing::info!(scope = %scope, "member deleted");
        Ok(())
    }

    /// Erases the record at `scope` and everything under it: the sweep
    /// first, the record (with its marker) last.
    pub(crate) async fn erase(&self, scope: &Scope) -> Result<(), RegistryError> {
        let key = record_key(scope)?;
        let folder = locksmith_store::Key::parse(&scope.storage_path())
            .map_err(|e| RegistryError::Storage(e.into()))?;
        sweep(&self.store, &folder, &key)
            .await
            .map_err(RegistryError::Storage)?;
        self.store
            .delete_all(&key)
            .await
            .map_err(RegistryError::Storage)
    }

    /// A page of the active members of `kind` directly under `parent`,
    /// which must be active.
    pub async fn list_members(
        &self,
        parent: &Scope,
        kind: MemberKind,
        page: PageRequest,
    ) -> Result<Page<Member>, RegistryError> {
        self.parents(parent).await?;
        match parent {
            Scope::Tenant(id) => drop(self.get_tenant(id).await?),
            other => drop(self.active_member(other).await?),
        }
        let folder = children_folder(parent, RecordKind::Member(kind))?;
        let mut items = collect_records(
            &self.store,
            &folder,
            page.after.as_deref(),
            page.size + 1,
            |_, stored: Stored| {
                let record: MemberRecord = decode(parent, &stored.body)?;
                Ok((record.lifecycle == Lifecycle::Active).then_some(record.member))
            },
        )
        .await?;
        let next_page_token = page_token(&mut items, page.size, parent, RecordKind::Member(kind));
        Ok(Page {
            items: items.into_iter().map(|(_, m)| m).collect(),
            next_page_token,
        })
    }
}

/// Cuts `items` (one more than a page, if there are more) to `size`, and
/// answers the token of the next page, if any.
pub(crate) fn page_token<T>(
    items: &mut Vec<(String, T)>,
    size: usize,
    parent: &Scope,
    kind: RecordKind,
) -> Option<String> {
    if items.len() <= size {
        return None;
    }
    items.truncate(size);
    items
        .last()
        .map(|(id, _)| next_page_token(&listing(parent, kind), id))
}

/// The name of a listing, which binds its page tokens.
pub(crate) fn listing(parent: &Scope, kind: RecordKind) -> String {
    let plural = match kind {
        RecordKind::Tenant => "tenants",
        RecordKind::Member(k) => k.plural(),
    };
    format!("{}/{plural}", parent.storage_path())
}

pub(crate) fn check_version(scope: &Scope, current: u64, given: u64) -> Result<(), RegistryError> {
    if current == given {
        Ok(())
    } else {
        Err(RegistryError::VersionConflict {
            what: describe(scope),
            current,
            given,
        })
    }
}
