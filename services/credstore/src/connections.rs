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
    ConnectionRef, IntegrationId, Scope,
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

/// NOT_FOUND said of a connection, not of a secret.
fn as_connection(e: CredError) -> CredError {
    match e {
        CredError::NotFound(_) => CredError::NotFound("connection"),
        e => e,
    }
}
