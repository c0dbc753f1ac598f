//! The secret operations. Each checks the principal first, then does its
//! work, then leaves exactly one audit event whatever the outcome.

use std::sync::Arc;

use locksmith_auth::{Access, Principal};
use locksmith_crypto::{KeyRing, KeyWrapper, Owner};
use locksmith_domain::{
    Scope,
    secrets::{
        MAX_SEGMENTS, NameError, SecretName, SecretRef,
        catalogue::{self, Level},
    },
};
use locksmith_store::{Cas, Child, DocumentStore, Key, StoreError};

use crate::{
    CredError, CredStore, Operation, Record, Secret, SecretFields,
    cache::Answer,
    policy::{check, falls_back},
    secret::{PlainFields, open_body, seal_body},
};

/// Store page size when walking a scope for [`CredStore::list`].
const WALK_PAGE: usize = 256;

pub(crate) fn owner_of(scope: &Scope) -> Owner {
    scope
        .tenant()
        .map_or(Owner::System, |t| Owner::Tenant(t.clone()))
}

pub(crate) fn store_key(path: &str) -> Result<Key, CredError> {
    // Scope ids and secret names are narrower than the key grammar, so a
    // failure here is a bug, not a caller's mistake.
    Key::parse(path).map_err(|e| CredError::Internal(format!("storage path: {e}")))
}

fn check_versions(versions: &[u64], required: bool) -> Result<(), CredError> {
    if required && versions.is_empty() {
        return Err(CredError::InvalidArgument {
            field: "versions",
            reason: "must name at least one version".into(),
        });
    }
    if versions.contains(&0) {
        return Err(CredError::InvalidArgument {
            field: "versions",
            reason: "versions start at 1".into(),
        });
    }
    Ok(())
}

/// Whether a write call that ended with `result` may have changed storage,
/// so that cached answers must go: yes on success, and on failures that can
/// come after the store applied the write (a timeout, a corrupt answer); no
/// when it was refused before, or by check-and-set.
pub(crate) fn may_have_written<T>(result: &Result<T, CredError>) -> bool {
    match result {
        Ok(_) => true,
        Err(CredError::Unavailable(_) | CredError::Internal(_)) => true,
        Err(
            CredError::NotFound(_)
            | CredError::AlreadyExists(_)
            | CredError::VersionConflict { .. }
            | CredError::Invalid(_)
            | CredError::InvalidArgument { .. }
            | CredError::PermissionDenied { .. },
        ) => false,
    }
}

/// Which versions a delete-like call touched, for the audit record.
fn one_version(versions: &[u64]) -> Option<u64> {
    match versions {
        [v] => Some(*v),
        _ => None,
    }
}

impl<S: DocumentStore, W: KeyWrapper> CredStore<S, W> {
    /// Reads a secret: its latest version, or `version`.
    pub async fn get(
        &self,
        principal: &Principal,
        secret: &SecretRef,
        version: Option<u64>,
    ) -> Result<Secret, CredError> {
        let result = self.get_inner(principal, secret, version).await;
        let mut record = Record::new(principal, Operation::Get, secret.resource_name());
        record.version = result.as_ref().ok().map(|s| s.version).or(version);
        self.audit(record, &result).await;
        result
    }

    async fn get_inner(
        &self,
        principal: &Principal,
        secret: &SecretRef,
        version: Option<u64>,
    ) -> Result<Secret, CredError> {
        check(principal, &secret.scope, Access::Read)?;
        if version == Some(0) {
            return Err(CredError::InvalidArgument {
                field: "version",
                reason: "versions start at 1".into(),
            });
        }
        let owner = owner_of(&secret.scope);
        self.require_key(&owner).await?;
        let path = secret.storage_path();
        let doc = self.store.read(&store_key(&path)?, version).await?;
        let fields = self.decrypt(&owner, &path, &doc.body).await?;
        Ok(Secret {
            secret_ref: secret.clone(),
            version: doc.version,
            created: doc.created,
            fields,
        })
    }

    /// Writes a new version of a secret under `cas`; answers its version.
    /// The fields are checked against the catalogue first; nothing is
    /// written unless they pass and `cas` holds.
    pub async fn put(
        &self,
        principal: &Principal,
        secret: &SecretRef,
        fields: &SecretFields,
        cas: Cas,
    ) -> Result<u64, CredError> {
        let result = self.put_inner(principal, secret, fields, cas).await;
        if may_have_written(&result) {
            self.cache.invalidate(&secret.scope, secret.name.as_str());
        }
        let mut record = Record::new(principal, Operation::Put, secret.resource_name());
        record.version = result.as_ref().ok().copied();
        self.audit(record, &result).await;
        result
    }

    async fn put_inner(
        &self,
        principal: &Principal,
        secret: &SecretRef,
        fields: &SecretFields,
        cas: Cas,
    ) -> Result<u64, CredError> {
        check(principal, &secret.scope, Access::Write)?;
        {
            let plain = PlainFields::of(fields);
            catalogue::validate(Level::of(&secret.scope), secret.name.as_str(), &plain.0)
                .map_err(CredError::Invalid)?;
        }
        let owner = owner_of(&secret.scope);
        let ring = self.require_key(&owner).await?;
        let path = secret.storage_path();
        let body = seal_body(&ring, &owner, &path, fields)?;
        // The catalogue bounds fields one by one; the store bounds the whole.
        locksmith_store::check::body(&body).map_err(|_| CredError::InvalidArgument {
            field: "fields",
            reason: format!(
                "the secret is too large to store (limit {} bytes sealed)",
                locksmith_store::MAX_BODY_BYTES
            ),
        })?;
        Ok(self.store.write(&store_key(&path)?, body, cas).await?)
    }

    /// Up to `limit` secret names of `scope`, sorted, after the name `after`.
    /// Names only, never values; secrets of child scopes and the scope's
    /// records (`config`…) are not listed. A name whose versions are all
    /// deleted is still listed. A page shorter than `limit` is the last.
    pub async fn list(
        &self,
        principal: &Principal,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SecretName>, CredError> {
        let result = self.list_inner(principal, scope, after, limit).await;
        let record = Record::new(principal, Operation::List, scope.storage_path());
        self.audit(record, &result).await;
        result
    }

    async fn list_inner(
        &self,
        principal: &Principal,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SecretName>, CredError> {
        check(principal, scope, Access::Read)?;
        if limit == 0 {
            return Err(CredError::InvalidArgument {
                field: "limit",
                reason: "must be at least 1".into(),
            });
        }
        self.require_key(&owner_of(scope)).await?;
        let root = scope.storage_path();
        // Depth-first in the store's order, which is byte order of the full
        // names ('/' sorts after every other byte a segment may end with
        // before it), so the output is sorted and `after` can prune folders.
        enum Entry {
            Doc(String),
            Folder(String, usize),
        }
        let mut stack = vec![Entry::Folder(String::new(), 0)];
        let mut out = Vec::new();
        while let Some(entry) = stack.pop() {
            match entry {
                Entry::Doc(name) => {
                    if after.is_some_and(|a| name.as_str() <= a) {
                        continue;
                    }
                    if let Ok(name) = SecretName::parse(&name, scope) {
                        out.push(name);
                        if out.len() == limit {
                            break;
                        }
                    }
                }
                Entry::Folder(rel, depth) => {
                    if depth >= MAX_SEGMENTS {
                        continue;
                    }
                    if let Some(a) = after
                        && !rel.is_empty()
                    {
                        let folder = format!("{rel}/");
                        if a > folder.as_str() && !a.starts_with(&folder) {
                            continue;
                        }
                    }
                    let prefix = if rel.is_empty() {
                        root.clone()
                    } else {
                        format!("{root}/{rel}")
                    };
                    let children = self.children(&store_key(&prefix)?).await?;
                    for child in children.into_iter().rev() {
                        let full = if rel.is_empty() {
                            child.name().to_owned()
                        } else {
                            format!("{rel}/{}", child.name())
                        };
                        match child {
                            Child::Document(_) => stack.push(Entry::Doc(full)),
                            Child::Folder(seg) => {
                                // Child scopes and records of other services
                                // live beside the scope's secrets.
                                let reserved = depth == 0
                                    && matches!(
                                        SecretName::parse(&seg, scope),
                                        Err(NameError::Reserved(..))
                                    );
                                if !reserved {
                                    stack.push(Entry::Folder(full, depth + 1));
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn children(&self, prefix: &Key) -> Result<Vec<Child>, CredError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store
                .list(Some(prefix), cursor.as_deref(), WALK_PAGE)
                .await?;
            let last = page.len() < WALK_PAGE;
            cursor = page.last().map(Child::cursor);
            all.extend(page);
            if last {
                return Ok(all);
            }
        }
    }

    /// Resolves `secret.name` from `secret.scope` upwards (bot → org →
    /// tenant → system) and answers the first secret found, whole; its
    /// `secret_ref.scope` is the scope that answered. See the crate docs for
    /// where the walk stops early.
    pub async fn resolve(
        &self,
        principal: &Principal,
        secret: &SecretRef,
    ) -> Result<Secret, CredError> {
        let result = self.resolve_inner(principal, secret).await;
        let mut record = Record::new(principal, Operation::Resolve, secret.resource_name());
        if let Ok(found) = &result {
            record.version = Some(found.version);
            record.answered_by = Some(found.secret_ref.scope.to_string());
        }
        self.audit(record, &result).await;
        result
    }

    async fn resolve_inner(
        &self,
        principal: &Principal,
        secret: &SecretRef,
    ) -> Result<Secret, CredError> {
        // Authorization and the key check run on every call, cached or not.
        check(principal, &secret.scope, Access::Read)?;
        // A tenant without a key does not exist: no fallback to system either.
        if secret.scope.tenant().is_some() {
            self.require_key(&owner_of(&secret.scope)).await?;
        }
        // Tenant principals stop before the system scope (policy::check).
        // Every other scope of the walk is in the tenant just authorized, so
        // this is all the walk (and the cache key) needs of the principal.
        let sees_system = check(principal, &Scope::System, Access::Read).is_ok();
        let now = (self.clock)();
        if let Some(answer) = self
            .cache
            .get(&secret.scope, secret.name.as_str(), sees_system, now)
        {
            return answer.to_secret().ok_or(CredError::NotFound("secret"));
        }
        let epoch = self.cache.epoch();
        let result = self.walk(secret, sees_system).await;
        let answer = match &result {
            Ok(found) => Some(Answer::Found(Arc::new(Secret {
                secret_ref: found.secret_ref.clone(),
                version: found.version,
                created: found.created,
                fields: found.fields.clone(),
            }))),
            Err(CredError::NotFound(_)) => Some(Answer::Missing),
            // Failures are not answers: the next call tries storage again.
            Err(_) => None,
        };
        if let Some(answer) = answer {
            self.cache.put(epoch, secret, sees_system, answer, now);
        }
        result
    }

    /// The uncached walk: one storage read per scope visited, then one
    /// local decryption.
    async fn walk(&self, secret: &SecretRef, sees_system: bool) -> Result<Secret, CredError> {
        let name = secret.name.as_str();
        let scopes: Vec<Scope> = if falls_back(Level::of(&secret.scope), name) {
            secret.scope.ancestry().collect()
        } else {
            vec![secret.scope.clone()]
        };
        for scope in scopes {
            if scope == Scope::System && !sees_system {
                break;
            }
            // A name valid below may be reserved above (`api-keys/…`).
            let Ok(name) = SecretName::parse(name, &scope) else {
                continue;
            };
            let at = SecretRef { scope, name };
            let path = at.storage_path();
            match self.store.read(&store_key(&path)?, None).await {
                Ok(doc) => {
                    let fields = self.decrypt(&owner_of(&at.scope), &path, &doc.body).await?;
                    return Ok(Secret {
                        secret_ref: at,
                        version: doc.version,
                        created: doc.created,
                        fields,
                    });
                }
                Err(StoreError::NotFound { deleted: true }) => break,
                Err(StoreError::NotFound { deleted: false }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CredError::NotFound("secret"))
    }

    /// Soft-deletes `versions` of a secret (empty: the latest).
    pub async fn soft_delete(
        &self,
        principal: &Principal,
        secret: &SecretRef,
        versions: &[u64],
    ) -> Result<(), CredError> {
        self.audited_delete(principal, secret, versions, Operation::SoftDelete)
            .await
    }

    /// Restores soft-deleted `versions` (at least one).
    pub async fn undelete(
        &self,
        principal: &Principal,
        secret: &SecretRef,
        versions: &[u64],
    ) -> Result<(), CredError> {
        self.audited_delete(principal, secret, versions, Operation::Undelete)
            .await
    }

    /// Erases `versions` (at least one) for good.
    pub async fn destroy(
        &self,
        principal: &Principal,
        secret: &SecretRef,
        versions: &[u64],
    ) -> Result<(), CredError> {
        self.audited_delete(principal, secret, versions, Operation::Destroy)
            .await
    }

    /// Erases a secret with its whole history: every version destroyed,
    /// then its metadata. Afterwards resolution falls back past this scope
    /// again, and a create-only write starts at version 1. Re-runnable: a
    /// half-done purge is finished by calling it again.
    pub async fn purge(&self, principal: &Principal, secret: &SecretRef) -> Result<(), CredError> {
        self.audited_delete(principal, secret, &[], Operation::Purge)
            .await
    }

    async fn audited_delete(
        &self,
        principal: &Principal,
        secret: &SecretRef,
        versions: &[u64],
        operation: Operation,
    ) -> Result<(), CredError> {
        let result = self
            .delete_inner(principal, secret, versions, operation)
            .await;
        if may_have_written(&result) {
            self.cache.invalidate(&secret.scope, secret.name.as_str());
        }
        let mut record = Record::new(principal, operation, secret.resource_name());
        record.version = one_version(versions);
        self.audit(record, &result).await;
        result
    }

    async fn delete_inner(
        &self,
        principal: &Principal,
        secret: &SecretRef,
        versions: &[u64],
        operation: Operation,
    ) -> Result<(), CredError> {
        check(principal, &secret.scope, Access::Write)?;
        let required = matches!(operation, Operation::Undelete | Operation::Destroy);
        check_versions(versions, required)?;
        self.require_key(&owner_of(&secret.scope)).await?;
        let key = store_key(&secret.storage_path())?;
        // The store forgives absent keys and versions (sweeps); callers
        // naming one are told.
        let meta = self.store.metadata(&key).await?;
        if versions
            .iter()
            .any(|v| !meta.versions.iter().any(|known| known.version == *v))
        {
            return Err(CredError::NotFound("version"));
        }
        match operation {
            Operation::SoftDelete => self.store.soft_delete(&key, versions).await?,
            Operation::Undelete => self.store.undelete(&key, versions).await?,
            Operation::Destroy => self.store.destroy(&key, versions).await?,
            Operation::Purge => {
                // Destroy first so the bytes are gone even if the sweep stops
                // before the metadata is removed.
                let all: Vec<u64> = meta.versions.iter().map(|v| v.version).collect();
                if !all.is_empty() {
                    self.store.destroy(&key, &all).await?;
                }
                self.store.delete_all(&key).await?;
            }
            other => {
                return Err(CredError::Internal(format!(
                    "{other:?} is not a delete operation"
                )));
            }
        }
        Ok(())
    }

    /// The owner's key ring; NOT_FOUND (as for an absent secret) if it has
    /// none, so a tenant without a key holds no secrets.
    pub(crate) async fn require_key(&self, owner: &Owner) -> Result<Arc<KeyRing>, CredError> {
        self.ring(owner).await?.ok_or(CredError::NotFound("secret"))
    }

    /// Opens a document; if the cached ring fails, reloads it once (another
    /// replica may have rotated the key) before answering internal.
    pub(crate) async fn decrypt(
        &self,
        owner: &Owner,
        path: &str,
        body: &[u8],
    ) -> Result<SecretFields, CredError> {
        let ring = self.require_key(owner).await?;
        match open_body(&ring, owner, path, body) {
            Ok(fields) => Ok(fields),
            Err(first) => match self.load_ring(owner).await? {
                Some(fresh) if fresh.versions() != ring.versions() => {
                    open_body(&fresh, owner, path, body)
                }
                _ => Err(first),
            },
        }
    }
}
