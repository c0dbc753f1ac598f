//! Owners' data keys: provisioning, loading (cached), rotation, shredding.

use std::sync::Arc;

use locksmith_auth::Principal;
use locksmith_crypto::{KeyRing, KeyVersion, KeyWrapper, Owner, WrappedKey};
use locksmith_domain::{ConnectionRef, Scope, TenantId};
use locksmith_store::{Cas, Child, DocumentStore, Key, StoreError};
use locksmith_tls::ServiceName;
use serde::{Deserialize, Serialize};

use crate::{
    CredError, CredStore, Operation, Record,
    ops::store_key,
    rotation::{may_hold_secrets, root_of, secret_at},
};

/// Where an owner's wrapped key versions are stored: outside `system/` and
/// `tenants/`, so no secret name reaches it (see the crate docs).
pub fn key_ring_path(owner: &Owner) -> String {
    match owner {
        Owner::Tenant(t) => format!("keyrings/tenants/{t}"),
        Owner::System => "keyrings/system".to_owned(),
    }
}

/// Whether `path` is a scope's folder of connection records.
fn is_connections(path: &str) -> bool {
    path.strip_suffix("/integrations")
        .is_some_and(|scope| ConnectionRef::parse(&format!("{scope}/integrations/x")).is_ok())
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
        .map(drop)
    }

    /// Creates the system scope's key ring (at deployment set-up).
    pub async fn provision_system_key(&self, principal: &Principal) -> Result<(), CredError> {
        self.audited_key_op(principal, Operation::ProvisionKey, Owner::System)
            .await
            .map(drop)
    }

    /// Starts a new key version for `tenant` and answers it: new writes
    /// seal with it at once, older values still open. Re-encrypting older
    /// values is [`CredStore::reencrypt`]'s sweep (started in the
    /// background by the gRPC call); its progress marker is written here,
    /// before the new version, so a crash cannot lose the sweep.
    pub async fn rotate_tenant_key(
        &self,
        principal: &Principal,
        tenant: &TenantId,
    ) -> Result<KeyVersion, CredError> {
        self.audited_key_op(
            principal,
            Operation::RotateKey,
            Owner::Tenant(tenant.clone()),
        )
        .await
        .and_then(rotated)
    }

    /// Starts a new key version for the system scope and answers it.
    pub async fn rotate_system_key(&self, principal: &Principal) -> Result<KeyVersion, CredError> {
        self.audited_key_op(principal, Operation::RotateKey, Owner::System)
            .await
            .and_then(rotated)
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
        .map(drop)
    }

    /// Gives the system scope its key if it has none, as the credential
    /// store itself: operators store the suite's own credentials there, and
    /// a deployment should not need a separate set-up step first. Answers
    /// whether it made one. Run at start; harmless on every start.
    pub async fn ensure_system_key(&self) -> Result<bool, CredError> {
        if self.ring(&Owner::System).await?.is_some() {
            return Ok(false);
        }
        let itself = Principal::Service {
            service: ServiceName::CredentialStore,
        };
        let result = self.provision(&Owner::System).await;
        self.cache.clear();
        let mut record = Record::new(
            &itself,
            Operation::ProvisionKey,
            key_ring_path(&Owner::System),
        );
        record.version = result.as_ref().ok().map(|v| u64::from(v.get()));
        self.audit(record, &result).await;
        match result {
            Ok(_) => Ok(true),
            // Another replica made it meanwhile.
            Err(CredError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs a key operation; answers the owner's current key version when
    /// the operation leaves one (provision, rotate), and audits it with that
    /// version.
    async fn audited_key_op(
        &self,
        principal: &Principal,
        operation: Operation,
        owner: Owner,
    ) -> Result<Option<KeyVersion>, CredError> {
        let result = self.key_op(principal, operation, &owner).await;
        // Answers resolved under the old key state (a shredded tenant's, a
        // system fallback before its key existed) must not outlive it.
        match &owner {
            Owner::Tenant(t) => self.cache.invalidate_tenant(t),
            Owner::System => self.cache.clear(),
        }
        let mut record = Record::new(principal, operation, key_ring_path(&owner));
        record.version = result
            .as_ref()
            .ok()
            .copied()
            .flatten()
            .map(|v| u64::from(v.get()));
        self.audit(record, &result).await;
        result
    }

    async fn key_op(
        &self,
        principal: &Principal,
        operation: Operation,
        owner: &Owner,
    ) -> Result<Option<KeyVersion>, CredError> {
        principal
            .require_operator()
            .map_err(|d| CredError::PermissionDenied {
                needs: match d {
                    locksmith_auth::Denied::Forbidden { needs } => needs,
                    locksmith_auth::Denied::Invisible => "an operator admin key".into(),
                },
            })?;
        match operation {
            Operation::ProvisionKey => self.provision(owner).await.map(Some),
            Operation::RotateKey => self.rotate(owner).await.map(Some),
            Operation::ShredKey => self.shred(owner).await.map(|()| None),
            other => Err(CredError::Internal(format!(
                "{other:?} is not a key operation"
            ))),
        }
    }

    async fn provision(&self, owner: &Owner) -> Result<KeyVersion, CredError> {
        // The wrapper's own key for the owner (Transit's `transit/keys/{t}`);
        // idempotent, so it also runs when the key ring exists already.
        self.wrapper.provision(owner).await?;
        let (ring, wrapped) = KeyRing::create(&self.wrapper, owner.clone()).await?;
        let body = KeyDoc::encode(&[wrapped])?;
        match self
            .store
            .write(&key_of(owner)?, body, Cas::CreateOnly)
            .await
        {
            Ok(_) => {
                self.cache_ring(owner.clone(), Some(Arc::new(ring)));
                Ok(KeyVersion::FIRST)
            }
            Err(StoreError::Conflict { .. }) => Err(CredError::AlreadyExists("key")),
            Err(e) => Err(e.into()),
        }
    }

    async fn rotate(&self, owner: &Owner) -> Result<KeyVersion, CredError> {
        let key = key_of(owner)?;
        let doc = self.store.read(&key, None).await.map_err(key_missing)?;
        let mut wrapped = KeyDoc::decode(owner, &doc.body)?;
        // A fresh ring, not the cached one: rotation changes it, and the
        // cache keeps serving readers until the new version is stored.
        let mut ring = KeyRing::load(&self.wrapper, owner.clone(), &wrapped).await?;
        wrapped.push(ring.rotate(&self.wrapper).await?);
        let version = ring.current().version();
        // The sweep's marker first: once the new version is stored, a crash
        // must still leave the re-encryption to do (rotation.rs).
        self.mark_reencryption(owner, version).await?;
        self.store
            .write(&key, KeyDoc::encode(&wrapped)?, Cas::Version(doc.version))
            .await?;
        self.cache_ring(owner.clone(), Some(Arc::new(ring)));
        Ok(version)
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
        // Outside the match: re-running a half-done shred finishes it.
        self.wrapper.shred(owner).await?;
        // The ciphertext is unreadable now; erasing it too means a tenant
        // later created with the same id starts empty instead of tripping
        // over documents no key opens.
        self.erase_sealed(root_of(owner)).await?;
        // Nothing is left to re-encrypt; a running sweep stops at its next
        // document when it finds no ring.
        self.unmark_reencryption(owner).await?;
        // Again, in case a reader re-loaded the ring while we were erasing.
        self.cache_ring(owner.clone(), None);
        Ok(())
    }

    /// Erases every secret document and connection record under `root` (an
    /// owner's or a member's folder) with its history. Other services' records
    /// under the same prefix (the registry's `config`, API keys…) are
    /// theirs to remove.
    async fn erase_sealed(&self, root: String) -> Result<(), CredError> {
        let mut folders = vec![root];
        while let Some(folder) = folders.pop() {
            for child in self.children(&store_key(&folder)?).await? {
                let path = format!("{folder}/{}", child.name());
                match child {
                    Child::Folder(_) if may_hold_secrets(&path) || is_connections(&path) => {
                        folders.push(path);
                    }
                    Child::Document(_)
                        if secret_at(&path).is_some() || ConnectionRef::parse(&path).is_ok() =>
                    {
                        self.store.delete_all(&store_key(&path)?).await?;
                    }
                    Child::Folder(_) | Child::Document(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Erases the secrets and connection records of a member scope (an org,
    /// bot or user) and of everything inside it: the registry deletes the
    /// member. Operators and suite services acting for themselves only.
    pub async fn erase_scope(&self, principal: &Principal, scope: &Scope) -> Result<(), CredError> {
        let result = async {
            principal
                .require_operator()
                .map_err(|_| CredError::PermissionDenied {
                    needs: "a suite service or an operator admin key".into(),
                })?;
            let Some(tenant) = scope.tenant().filter(|_| scope.member_kind().is_some()) else {
                return Err(CredError::InvalidArgument {
                    field: "scope",
                    reason: "must be an org, bot or user scope".into(),
                });
            };
            self.erase_sealed(scope.storage_path()).await?;
            self.cache.invalidate_tenant(tenant);
            Ok(())
        }
        .await;
        let record = Record::new(principal, Operation::EraseScope, scope.storage_path());
        self.audit(record, &result).await;
        result
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

/// The version a rotation answered (it always answers one).
fn rotated(version: Option<KeyVersion>) -> Result<KeyVersion, CredError> {
    version.ok_or_else(|| CredError::Internal("rotation answered no key version".into()))
}

fn key_missing(e: StoreError) -> CredError {
    match e {
        StoreError::NotFound { .. } => CredError::NotFound("key"),
        e => e.into(),
    }
}
