//! The registry's logic on domain types: create, read, check-and-set update,
//! cascading delete and paged listing of tenants and their members.

use std::sync::Arc;

use locksmith_domain::{
    Member, MemberKind, MemberPatch, MemberSpec, Scope, Tenant, TenantId, TenantPatch, TenantSpec,
};
use serde::{Serialize, de::DeserializeOwned};
use time::OffsetDateTime;

use crate::{
    error::RegistryError,
    pagination::{PageRequest, next_page_token},
    store::{RecordKind, RegistryStore, StoreError},
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
    /// The records, ordered by id.
    pub items: Vec<T>,
    /// Token for the next page, `None` on the last one.
    pub next_page_token: Option<String>,
}

/// The tenant registry over a store.
pub struct Registry<S> {
    pub(crate) store: S,
    pub(crate) clock: Clock,
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

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RegistryError> {
    serde_json::to_vec(value).map_err(|e| RegistryError::Corrupt {
        what: "a new record".into(),
        reason: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(scope: &Scope, body: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|e| RegistryError::Corrupt {
        what: describe(scope),
        reason: e.to_string(),
    })
}

impl<S: RegistryStore> Registry<S> {
    /// A registry over `store`, reading time from `clock`.
    pub fn new(store: S, clock: Clock) -> Self {
        Self { store, clock }
    }

    /// Whether storage answers.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        self.store.ping().await.map_err(RegistryError::Storage)
    }

    async fn load<T: DeserializeOwned>(&self, scope: &Scope) -> Result<T, RegistryError> {
        match self
            .store
            .get(scope.clone())
            .await
            .map_err(RegistryError::Storage)?
        {
            Some(record) => decode(scope, &record.body),
            None => Err(RegistryError::NotFound {
                what: describe(scope),
            }),
        }
    }

    async fn insert<T: Serialize>(&self, scope: &Scope, value: &T) -> Result<(), RegistryError> {
        match self.store.create(scope.clone(), encode(value)?).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists) => Err(RegistryError::AlreadyExists {
                what: describe(scope),
            }),
            Err(StoreError::ParentMissing) => Err(RegistryError::NotFound {
                what: scope.parent().map(|p| describe(&p)).unwrap_or_default(),
            }),
            Err(e) => Err(RegistryError::Storage(e)),
        }
    }

    /// Writes `value` over the record at `scope` if it is still at `based_on`.
    async fn replace<T: Serialize>(
        &self,
        scope: &Scope,
        based_on: u64,
        value: &T,
    ) -> Result<(), RegistryError> {
        self.store
            .update(scope.clone(), based_on, encode(value)?)
            .await
            .map_err(|e| store_error(scope, based_on, e))
    }

    async fn remove(&self, scope: &Scope, version: Option<u64>) -> Result<(), RegistryError> {
        self.store
            .delete(scope.clone(), version)
            .await
            .map_err(|e| store_error(scope, version.unwrap_or_default(), e))
    }

    async fn page<T: DeserializeOwned>(
        &self,
        parent: &Scope,
        kind: RecordKind,
        page: PageRequest,
        id_of: impl Fn(&T) -> String,
    ) -> Result<Page<T>, RegistryError> {
        // One more than asked tells whether another page follows.
        let records = self
            .store
            .list(parent.clone(), kind, page.after, page.size + 1)
            .await
            .map_err(RegistryError::Storage)?;
        let mut items = records
            .iter()
            .map(|r| decode(parent, &r.body))
            .collect::<Result<Vec<T>, _>>()?;
        let next_page_token = if items.len() > page.size {
            items.truncate(page.size);
            items
                .last()
                .map(|last| next_page_token(&listing(parent, kind), &id_of(last)))
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Creates a tenant at version 1.
    pub async fn create_tenant(
        &self,
        id: TenantId,
        spec: TenantSpec,
    ) -> Result<Tenant, RegistryError> {
        let tenant = Tenant::create(id, spec, (self.clock)())?;
        self.insert(&Scope::Tenant(tenant.id.clone()), &tenant)
            .await?;
        tracing::info!(tenant = %tenant.id, "tenant created");
        Ok(tenant)
    }

    /// The tenant `id`.
    pub async fn get_tenant(&self, id: &TenantId) -> Result<Tenant, RegistryError> {
        self.load(&Scope::Tenant(id.clone())).await
    }

    /// Applies `patch` if the tenant is at `version`.
    pub async fn update_tenant(
        &self,
        id: &TenantId,
        version: u64,
        patch: TenantPatch,
    ) -> Result<Tenant, RegistryError> {
        let scope = Scope::Tenant(id.clone());
        let current: Tenant = self.load(&scope).await?;
        check_version(&scope, current.version, version)?;
        let next = current.patched(patch, (self.clock)())?;
        self.replace(&scope, version, &next).await?;
        tracing::info!(tenant = %id, version = next.version, "tenant updated");
        Ok(next)
    }

    /// Deletes the tenant and everything inside it.
    pub async fn delete_tenant(
        &self,
        id: &TenantId,
        version: Option<u64>,
    ) -> Result<(), RegistryError> {
        self.remove(&Scope::Tenant(id.clone()), version).await?;
        tracing::info!(tenant = %id, "tenant deleted");
        Ok(())
    }

    /// A page of tenants.
    pub async fn list_tenants(&self, page: PageRequest) -> Result<Page<Tenant>, RegistryError> {
        self.page(&Scope::System, RecordKind::Tenant, page, |t: &Tenant| {
            t.id.to_string()
        })
        .await
    }

    /// Creates an org, bot or user at `scope`; its parent must exist.
    pub async fn create_member(
        &self,
        scope: Scope,
        spec: MemberSpec,
    ) -> Result<Member, RegistryError> {
        let member = Member::create(scope, spec, (self.clock)())?;
        self.insert(&member.scope, &member).await?;
        tracing::info!(scope = %member.scope, "member created");
        Ok(member)
    }

    /// The org, bot or user at `scope`.
    pub async fn get_member(&self, scope: &Scope) -> Result<Member, RegistryError> {
        self.load(scope).await
    }

    /// Applies `patch` if the member is at `version`.
    pub async fn update_member(
        &self,
        scope: &Scope,
        version: u64,
        patch: MemberPatch,
    ) -> Result<Member, RegistryError> {
        let current: Member = self.load(scope).await?;
        check_version(scope, current.version, version)?;
        let next = current.patched(patch, (self.clock)())?;
        self.replace(scope, version, &next).await?;
        Ok(next)
    }

    /// Deletes the member (an org with its bots and users).
    pub async fn delete_member(
        &self,
        scope: &Scope,
        version: Option<u64>,
    ) -> Result<(), RegistryError> {
        self.remove(scope, version).await?;
        tracing::info!(scope = %scope, "member deleted");
        Ok(())
    }

    /// A page of the members of `kind` directly under `parent`, which must exist.
    pub async fn list_members(
        &self,
        parent: &Scope,
        kind: MemberKind,
        page: PageRequest,
    ) -> Result<Page<Member>, RegistryError> {
        if self
            .store
            .get(parent.clone())
            .await
            .map_err(RegistryError::Storage)?
            .is_none()
        {
            return Err(RegistryError::NotFound {
                what: describe(parent),
            });
        }
        self.page(parent, RecordKind::Member(kind), page, |m: &Member| {
            m.scope.leaf_id().to_owned()
        })
        .await
    }
}

/// The name of a listing, which binds its page tokens.
pub(crate) fn listing(parent: &Scope, kind: RecordKind) -> String {
    let plural = match kind {
        RecordKind::Tenant => "tenants",
        RecordKind::Member(k) => k.plural(),
    };
    format!("{}/{plural}", parent.storage_path())
}

fn check_version(scope: &Scope, current: u64, given: u64) -> Result<(), RegistryError> {
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

fn store_error(scope: &Scope, given: u64, e: StoreError) -> RegistryError {
    match e {
        StoreError::NotFound => RegistryError::NotFound {
            what: describe(scope),
        },
        StoreError::VersionConflict { current } => RegistryError::VersionConflict {
            what: describe(scope),
            current,
            given,
        },
        other => RegistryError::Storage(other),
    }
}
