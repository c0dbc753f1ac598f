//! Owners' data keys: provisioning, loading (cached), rotation, shredding.

use std::sync::Arc;

use locksmith_auth::Principal;
use locksmith_crypto::{KeyRing, KeyVersion, KeyWrapper, Owner, WrappedKey};
use locksmith_domain::TenantId;
use locksmith_store::{Cas, DocumentStore, Key, StoreError};
use serde::{Deserialize, Serialize};

use crate::{CredError, CredStore, Operation, Record};

/// Where an owner's wrapped key versions are stored: outside `system/` and
/// `tenants/`, so no secret name reaches it (see the crate docs).
pub fn key_ring_path(owner: &Owner) -> String {
    match owner {
        Owner::Tenant(t) => format!("keyrings/tenants/{t}"),
        Owner::System => "keyrings/system".to_owned(),
    }
}

fn key_of(owner: &Owner) -> Result<Key, CredError> {
    // Tenant ids are slugs, always valid key segments; failing here is a bug.
    Key::parse(&key_ring_path(owner))
        .map_err(|e| CredError::Internal(format!("key ring path of {owner}: {e}")))
}

/// The key document: every wrapped version still kept, oldest first.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDoc {
    versions: Vec<WrappedVersion>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrappedVersion {
    version: u32,
    blob: String,
}

impl KeyDoc {
    fn encode(wrapped: &[WrappedKey]) -> Result<Vec<u8>, CredError> {
        let doc = KeyDoc {
            versions: wrapped
                .iter()
                .map(|w| WrappedVersion {
                    version: w.version().get(),
                    blob: w.blob().to_owned(),
                })
                .collect(),
        };
        serde_json::to_vec(&doc).map_err(|e| CredError::Internal(format!("key document: {e}")))
    }

    fn decode(owner: &Owner, body: &[u8]) -> Result<Vec<WrappedKey>, CredError> {
        let corrupt = |why: String| CredError::Internal(format!("key ring of {owner}: {why}"));
        let doc: KeyDoc = serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))?;
        doc.versions
            .into_iter()
            .map(|v| {
                KeyVersion::new(v.version)
                    .map(|version| WrappedKey::new(version, v.blob))
                    .ok_or_else(|| corrupt("key version 0".into()))
            })
            .collect()
    }
}

impl<S: DocumentStore, W: KeyWrapper> CredStore<S, W> {
    /// Creates `tenant`'s key ring (with the tenant). ALREADY_EXISTS if it
    /// has one. Operators and suite services only.
    pub async fn provision_tenant_key(
        &self,
        principal: &Principal,
        tenant: &TenantId,
    ) -> Result<(), CredError> {
        self.audited_key_op(
            principal,
            Operation::ProvisionKey,
            Owner::Tenant(tenant.clone()),
        )
        .await
    }

    /// Creates the system scope's key ring (at deployment set-up).
    pub async fn provision_system_key(&self, principal: &Principal) -> Result<(), CredError> {
        self.audited_key_op(principal, Operation::ProvisionKey, Owner::System)
            .await
    }

    /// Starts a new key version for `tenant`: new writes seal with it at
    /// once, older values still open. Re-encrypting old values is a later
    /// sweep.
    pub async fn rotate_tenant_key(
        &self,
        principal: &Principal,
        tenant: &TenantId,
    ) -> Result<(), CredError> {
        self.audited_key_op(
            principal,
            Operation::RotateKey,
            Owner::Tenant(tenant.clone()),
        )
        .await
    }

    /// Starts a new key version for the system scope.
    pub async fn rotate_system_key(&self, principal: &Principal) -> Result<(), CredError> {
        self.audited_key_op(principal, Operation::RotateKey, Owner::System)
            .await
    }

    /// Crypto-shreds `tenant`: destroys every version of its key document,
    /// then the document. Everything sealed for it becomes undecryptable for
    /// good. Idempotent, so a tenant-deletion sweep can re-run it.
    pub async fn shred_tenant_key(
        &self,
        principal: &Principal,
        tenant: &TenantId,
    ) -> Result<(), CredError> {
        self.audited_key_op(
            principal,
            Operation::ShredKey,
            Owner::Tenant(tenant.clone()),
        )
        .await
    }

    async fn audited_key_op(
        &self,
        principal: &Principal,
        operation: Operation,
        owner: Owner,
    ) -> Result<(), CredError> {
        let result = self.key_op(principal, operation, &owner).await;
        self.audit(
            Record::new(principal, operation, key_ring_path(&owner)),
            &result,
        );
        result
    }

    async fn key_op(
        &self,
        principal: &Principal,
        operation: Operation,
        owner: &Owner,
    ) -> Result<(), CredError> {
        principal
            .require_operator()
            .map_err(|d| CredError::PermissionDenied {
                needs: match d {
                    locksmith_auth::Denied::Forbidden { needs } => needs,
                    locksmith_auth::Denied::Invisible => "an operator admin key".into(),
                },
            })?;
        match operation {
            Operation::ProvisionKey => self.provision(owner).await,
            Operation::RotateKey => self.rotate(owner).await,
            Operation::ShredKey => self.shred(owner).await,
            other => Err(CredError::Internal(format!(
                "{other:?} is not a key operation"
            ))),
        }
    }

    async fn provision(&self, owner: &Owner) -> Result<(), CredError> {
        let (ring, wrapped) = KeyRing::create(&self.wrapper, owner.clone()).await?;
        let body = KeyDoc::encode(&[wrapped])?;
        match self
            .store
            .write(&key_of(owner)?, body, Cas::CreateOnly)
            .await
        {
            Ok(_) => {
                self.cache_ring(owner.clone(), Some(Arc::new(ring)));
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(CredError::AlreadyExists("key")),
            Err(e) => Err(e.into()),
        }
    }

    async fn rotate(&self, owner: &Owner) -> Result<(), CredError> {
        let key = key_of(owner)?;
        let doc = self.store.read(&key, None).await.map_err(key_missing)?;
        let mut wrapped = KeyDoc::decode(owner, &doc.body)?;
        // A fresh ring, not the cached one: rotation changes it, and the
        // cache keeps serving readers until the new version is stored.
        let mut ring = KeyRing::load(&self.wrapper, owner.clone(), &wrapped).await?;
        wrapped.push(ring.rotate(&self.wrapper).await?);
        self.store
            .write(&key, KeyDoc::encode(&wrapped)?, Cas::Version(doc.version))
            .await?;
        self.cache_ring(owner.clone(), Some(Arc::new(ring)));
        Ok(())
    }

    async fn shred(&self, owner: &Owner) -> Result<(), CredError> {
        let key = key_of(owner)?;
        self.cache_ring(owner.clone(), None);
        match self.store.metadata(&key).await {
            Ok(meta) => {
                let versions: Vec<u64> = meta.versions.iter().map(|v| v.version).collect();
                if !versions.is_empty() {
                    self.store.destroy(&key, &versions).await?;
                }
                self.store.delete_all(&key).await?;
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // Again, in case a reader re-loaded the ring while we were erasing.
        self.cache_ring(owner.clone(), None);
        Ok(())
    }

    /// The owner's key ring, from the cache or the store; `None` if it has
    /// none (never provisioned, or shredded).
    pub(crate) async fn ring(&self, owner: &Owner) -> Result<Option<Arc<KeyRing>>, CredError> {
        if let Some(ring) = self.cached_ring(owner) {
            return Ok(Some(ring));
        }
        self.load_ring(owner).await
    }

    /// Loads the owner's key ring from the store, replacing the cached one
    /// (after another replica rotated it, for instance).
    pub(crate) async fn load_ring(&self, owner: &Owner) -> Result<Option<Arc<KeyRing>>, CredError> {
        let doc = match self.store.read(&key_of(owner)?, None).await {
            Ok(doc) => doc,
            Err(StoreError::NotFound { .. }) => {
                self.cache_ring(owner.clone(), None);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let wrapped = KeyDoc::decode(owner, &doc.body)?;
        let ring = Arc::new(KeyRing::load(&self.wrapper, owner.clone(), &wrapped).await?);
        self.cache_ring(owner.clone(), Some(ring.clone()));
        Ok(Some(ring))
    }
}

fn key_missing(e: StoreError) -> CredError {
    match e {
        StoreError::NotFound { .. } => CredError::NotFound("key"),
        e => e.into(),
    }
}
