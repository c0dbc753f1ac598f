//! Connection records (design brief §3): what the OAuth broker keeps for one
//! owner's connection to one integration — tokens, status, expiry, its
//! refresh lease — at `…/integrations/{integration}` under the owner, sealed
//! with the owner's key exactly like a secret. The credential store does not
//! interpret the fields: it seals them, versions them (check-and-set: the
//! broker's refresh protocol stands on it) and audits every call. Which
//! services reach these calls is the transport's allow-list (the broker; the
//! token proxy reads); whose records a call reaches is the principal's.

use locksmith_auth::{Access, Principal};
use locksmith_crypto::KeyWrapper;
use locksmith_domain::{
    ConnectionRef, IntegrationId, MemberId, MemberKind, Scope, TenantId,
    secrets::catalogue::{self, Level},
};
use locksmith_store::{Cas, Child, DocumentStore, StoreError};
use time::OffsetDateTime;

use crate::{
    CredError, CredStore, Operation, Record, SecretFields,
    ops::{owner_of, store_key},
    policy::check,
    secret::{PlainFields, seal_body},
};

/// One version of a connection record, decrypted.
#[derive(Debug)]
pub struct ConnectionRecord {
    /// Whose record, for which integration.
    pub connection: ConnectionRef,
    /// The version read; versions start at 1.
    pub version: u64,
    /// When this version was written.
    pub updated: OffsetDateTime,
    /// Its fields (values redacted in `Debug`).
    pub fields: SecretFields,
}

/// A store NOT_FOUND said in this record's terms.
fn absent(e: StoreError) -> CredError {
    match e {
        StoreError::NotFound { .. } => CredError::NotFound("connection"),
        e => e.into(),
    }
}

/// The folder of `scope`'s connection records.
fn folder(scope: &Scope) -> String {
    format!("{}/integrations", scope.storage_path())
}

impl<S: DocumentStore, W: KeyWrapper> CredStore<S, W> {
    /// Reads the latest version of a connection record.
    pub async fn get_connection(
        &self,
        principal: &Principal,
        connection: &ConnectionRef,
    ) -> Result<ConnectionRecord, CredError> {
        let result = self.get_connection_inner(principal, connection).await;
        let mut record = Record::new(
            principal,
            Operation::GetConnection,
            connection.resource_name(),
        );
        record.version = result.as_ref().ok().map(|r| r.version);
        self.audit(record, &result).await;
        result
    }

    async fn get_connection_inner(
        &self,
        principal: &Principal,
        connection: &ConnectionRef,
    ) -> Result<ConnectionRecord, CredError> {
        check(principal, &connection.scope, Access::Read).map_err(as_connection)?;
        let owner = owner_of(&connection.scope);
        self.require_key(&owner).await.map_err(as_connection)?;
        let path = connection.storage_path();
        let doc = self
            .store
            .read(&store_key(&path)?, None)
            .await
            .map_err(absent)?;
        let fields = self.decrypt(&owner, &path, &doc.body).await?;
        Ok(ConnectionRecord {
            connection: connection.clone(),
            version: doc.version,
            updated: doc.created,
            fields,
        })
    }

    /// Writes a connection record's next version under `cas`; answers it.
    /// Fields follow the free-map rules of secrets (1 to 64, bounded names
    /// and values, no control characters).
    pub async fn put_connection(
        &self,
        principal: &Principal,
        connection: &ConnectionRef,
        fields: &SecretFields,
        cas: Cas,
    ) -> Result<u64, CredError> {
        let result = self
            .put_connection_inner(principal, connection, fields, cas)
            .await;
        let mut record = Record::new(
            principal,
            Operation::PutConnection,
            connection.resource_name(),
        );
        record.version = result.as_ref().ok().copied();
        self.audit(record, &result).await;
        result
    }

    async fn put_connection_inner(
        &self,
        principal: &Principal,
        connection: &ConnectionRef,
        fields: &SecretFields,
        cas: Cas,
    ) -> Result<u64, CredError> {
        check(principal, &connection.scope, Access::Write).map_err(as_connection)?;
        {
            let plain = PlainFields::of(fields);
            // `integrations/…` is no catalogue name: the free-map rules apply.
            let name = format!("integrations/{}", connection.integration);
            catalogue::validate(Level::of(&connection.scope), &name, &plain.0)
                .map_err(CredError::Invalid)?;
        }
        let owner = owner_of(&connection.scope);
        let ring = self.require_key(&owner).await.map_err(as_connection)?;
        let path = connection.storage_path();
        let body = seal_body(&ring, &owner, &path, fields)?;
        locksmith_store::check::body(&body).map_err(|_| CredError::InvalidArgument {
            field: "fields",
            reason: format!(
                "the record is too large to store (limit {} bytes sealed)",
                locksmith_store::MAX_BODY_BYTES
            ),
        })?;
        Ok(self.store.write(&store_key(&path)?, body, cas).await?)
    }

    /// Up to `limit` of `scope`'s connection records, sorted, after the
    /// integration `after`. Names only.
    pub async fn list_connections(
        &self,
        principal: &Principal,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConnectionRef>, CredError> {
        let result = self
            .list_connections_inner(principal, scope, after, limit)
            .await;
        let record = Record::new(principal, Operation::ListConnections, folder(scope));
        self.audit(record, &result).await;
        result
    }

    async fn list_connections_inner(
        &self,
        principal: &Principal,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConnectionRef>, CredError> {
        check(principal, scope, Access::Read).map_err(as_connection)?;
        self.require_key(&owner_of(scope))
            .await
            .map_err(as_connection)?;
        let page = self
            .store
            .list(Some(&store_key(&folder(scope))?), after, limit.max(1))
            .await?;
        Ok(page
            .into_iter()
            .filter_map(|child| match child {
                // Anything else under the folder is not a record of ours.
                Child::Document(name) => IntegrationId::parse(&name).ok(),
                Child::Folder(_) => None,
            })
            .map(|integration| ConnectionRef {
                scope: scope.clone(),
                integration,
            })
            .collect())
    }

    /// Erases a connection record with its history, if it is at `expected`
    /// (any version when `None`). KV cannot make the erase itself
    /// conditional: the version is checked just before, so a write landing
    /// in between is erased too. The broker serializes its own writes to a
    /// record (refresh lease), which is what makes that acceptable.
    pub async fn delete_connection(
        &self,
        principal: &Principal,
        connection: &ConnectionRef,
        expected: Option<u64>,
    ) -> Result<(), CredError> {
        let result = self
            .delete_connection_inner(principal, connection, expected)
            .await;
        let mut record = Record::new(
            principal,
            Operation::DeleteConnection,
            connection.resource_name(),
        );
        record.version = expected;
        self.audit(record, &result).await;
        result
    }

    async fn delete_connection_inner(
        &self,
        principal: &Principal,
        connection: &ConnectionRef,
        expected: Option<u64>,
    ) -> Result<(), CredError> {
        check(principal, &connection.scope, Access::Write).map_err(as_connection)?;
        self.require_key(&owner_of(&connection.scope))
            .await
            .map_err(as_connection)?;
        let key = store_key(&connection.storage_path())?;
        let meta = self.store.metadata(&key).await.map_err(absent)?;
        if let Some(expected) = expected
            && expected != meta.current_version
        {
            return Err(CredError::VersionConflict {
                current: meta.current_version,
            });
        }
        let all: Vec<u64> = meta.versions.iter().map(|v| v.version).collect();
        if !all.is_empty() {
            self.store.destroy(&key, &all).await?;
        }
        self.store.delete_all(&key).await?;
        Ok(())
    }
}

/// One page of a tenant's walk reads at most this many names per listing.
const TENANT_WALK_PAGE: usize = 256;

/// A step of the walk over a tenant's connection records.
enum Step {
    /// A scope: its sub-folders come next.
    Scope(Scope),
    /// `{scope}/integrations`: records, listed after `cursor`.
    Records {
        scope: Scope,
        cursor: Option<String>,
    },
    /// `{scope}/{orgs|bots|users}`: member scopes, listed after `cursor`.
    Members {
        scope: Scope,
        kind: MemberKind,
        cursor: Option<String>,
    },
}

fn folder_name(kind: MemberKind) -> &'static str {
    match kind {
        MemberKind::Org => "orgs",
        MemberKind::Bot => "bots",
        MemberKind::User => "users",
    }
}

/// Whether everything under `folder` (a path ending in `/`) comes before
/// the walk's resume point `after`, in path order.
fn passed(after: Option<&str>, folder: &str) -> bool {
    after.is_some_and(|a| a > folder && !a.starts_with(folder))
}

/// Where a listing of `folder` resumes: after the resume point's segment
/// inside it, if the resume point is inside it. Names between that segment
/// and its own folder (`o-x/` sorts before `o/`) are dropped by [`passed`].
fn resume_in(after: Option<&str>, folder: &str) -> Option<String> {
    let rest = after?.strip_prefix(folder)?.strip_prefix('/')?;
    rest.split('/').next().map(str::to_owned)
}

impl<S: DocumentStore, W: KeyWrapper> CredStore<S, W> {
    /// Up to `limit` of `tenant`'s connection records, at every owner under
    /// it (the tenant, its orgs, bots and users), decrypted, in path order
    /// (`bots/` < `integrations/` < `orgs/` < `users/` at each level), after
    /// the record at storage path `after`. Operators and suite services
    /// acting for themselves only (the broker's health counts).
    ///
    /// The walk lists only the folders that hold records or member scopes
    /// (never a scope's secrets), one page at a time, resuming inside each
    /// at `after`; a member scope without secrets or records has no folder
    /// here, so the cost follows what the tenant keeps, not how many
    /// members the registry has.
    pub async fn list_tenant_connections(
        &self,
        principal: &Principal,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConnectionRecord>, CredError> {
        let result = self
            .list_tenant_connections_inner(principal, tenant, after, limit)
            .await;
        let record = Record::new(
            principal,
            Operation::ListTenantConnections,
            Scope::Tenant(tenant.clone()).storage_path(),
        );
        self.audit(record, &result).await;
        result
    }

    async fn list_tenant_connections_inner(
        &self,
        principal: &Principal,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConnectionRecord>, CredError> {
        principal
            .require_operator()
            .map_err(|_| CredError::PermissionDenied {
                needs: "a suite service or an operator admin key".into(),
            })?;
        let root = Scope::Tenant(tenant.clone());
        let owner = owner_of(&root);
        self.require_key(&owner).await.map_err(as_connection)?;
        let limit = limit.max(1);
        let mut out = Vec::new();
        let mut stack = vec![Step::Scope(root)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Scope(scope) => {
                    let base = scope.storage_path();
                    let mut next = Vec::new();
                    let subs: &[Option<MemberKind>] = match &scope {
                        Scope::Tenant(_) => &[None, Some(MemberKind::Org)],
                        Scope::Org { .. } => &[Some(MemberKind::Bot), None, Some(MemberKind::User)],
                        _ => &[None],
                    };
                    for sub in subs {
                        let name = sub.map_or("integrations", folder_name);
                        let folder = format!("{base}/{name}");
                        if passed(after, &format!("{folder}/")) {
                            continue;
                        }
                        let cursor = resume_in(after, &folder);
                        next.push(match sub {
                            None => Step::Records {
                                scope: scope.clone(),
                                cursor,
                            },
                            Some(kind) => Step::Members {
                                scope: scope.clone(),
                                kind: *kind,
                                cursor,
                            },
                        });
                    }
                    stack.extend(next.into_iter().rev());
                }
                Step::Records { scope, cursor } => {
                    let folder = folder(&scope);
                    let page = self
                        .store
                        .list(
                            Some(&store_key(&folder)?),
                            cursor.as_deref(),
                            TENANT_WALK_PAGE,
                        )
                        .await?;
                    let more = page.len() >= TENANT_WALK_PAGE;
                    let resume = page.last().map(Child::cursor);
                    for child in page {
                        let Child::Document(name) = child else {
                            continue;
                        };
                        let Ok(integration) = IntegrationId::parse(&name) else {
                            continue;
                        };
                        let at = ConnectionRef {
                            scope: scope.clone(),
                            integration,
                        };
                        if after.is_some_and(|a| at.storage_path().as_str() <= a) {
                            continue;
                        }
                        match self.read_connection(&at).await {
                            Ok(record) => out.push(record),
                            // Erased since the listing (or every version
                            // deleted): not a record any more.
                            Err(CredError::NotFound(_)) => continue,
                            Err(e) => return Err(e),
                        }
                        if out.len() >= limit {
                            return Ok(out);
                        }
                    }
                    if more {
                        stack.push(Step::Records {
                            scope,
                            cursor: resume,
                        });
                    }
                }
                Step::Members {
                    scope,
                    kind,
                    cursor,
                } => {
                    let folder = format!("{}/{}", scope.storage_path(), folder_name(kind));
                    let page = self
                        .store
                        .list(
                            Some(&store_key(&folder)?),
                            cursor.as_deref(),
                            TENANT_WALK_PAGE,
                        )
                        .await?;
                    let more = page.len() >= TENANT_WALK_PAGE;
                    let resume = page.last().map(Child::cursor);
                    let mut members = Vec::new();
                    for child in page {
                        let Child::Folder(name) = child else {
                            continue;
                        };
                        let Ok(id) = MemberId::parse(&name) else {
                            continue;
                        };
                        let member = match (&scope, kind) {
                            (Scope::Tenant(t), MemberKind::Org) => Scope::Org {
                                tenant: t.clone(),
                                org: id,
                            },
                            (Scope::Org { tenant, org }, MemberKind::Bot | MemberKind::User) => {
                                Scope::member(tenant.clone(), org.clone(), kind, id)
                            }
                            _ => continue,
                        };
                        if passed(after, &format!("{}/", member.storage_path())) {
                            continue;
                        }
                        members.push(Step::Scope(member));
                    }
                    // This folder's next page after these members.
                    if more {
                        stack.push(Step::Members {
                            scope,
                            kind,
                            cursor: resume,
                        });
                    }
                    stack.extend(members.into_iter().rev());
                }
            }
        }
        Ok(out)
    }

    /// The latest version of a record, decrypted, the caller checked.
    async fn read_connection(&self, at: &ConnectionRef) -> Result<ConnectionRecord, CredError> {
        let owner = owner_of(&at.scope);
        let path = at.storage_path();
        let doc = self
            .store
            .read(&store_key(&path)?, None)
            .await
            .map_err(absent)?;
        let fields = self.decrypt(&owner, &path, &doc.body).await?;
        Ok(ConnectionRecord {
            connection: at.clone(),
            version: doc.version,
            updated: doc.created,
            fields,
        })
    }
}

/// NOT_FOUND said of a connection, not of a secret.
fn as_connection(e: CredError) -> CredError {
    match e {
        CredError::NotFound(_) => CredError::NotFound("connection"),
        e => e,
    }
}
