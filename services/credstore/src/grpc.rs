//! The gRPC face of the credential store
//! (`locksmith.credstore.v1.CredentialStoreService`): each RPC converts its
//! request to domain values, calls [`CredStore`] with the caller's
//! [`Principal`], and converts the answer back. Who may see what is decided
//! by `CredStore` (policy.rs); the transport's allow-list only narrows which
//! kinds of caller reach which RPC.

use std::{collections::HashMap, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use locksmith_auth::Principal;
use locksmith_crypto::{KeyWrapper, Owner};
use locksmith_domain::{
    ConnectionRef, MemberId, MemberKind, Scope, TenantId,
    secrets::{ResourceError, SecretName, SecretRef},
};
use locksmith_errors::ApiError;
use locksmith_proto::credstore::v1::{
    self as pb, credential_store_service_server::CredentialStoreService,
};
use locksmith_store::{Cas, DocumentStore};
use secrecy::ExposeSecret;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::{CredError, CredStore, Secret, SecretFields};

/// Page size when the caller sends none.
const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page; bigger requests are served this many.
const MAX_PAGE_SIZE: usize = 1000;
/// Most names in one BatchResolveSecrets call.
const MAX_BATCH: usize = 100;

/// The tonic service.
pub struct CredStoreApi<S, W> {
    store: Arc<CredStore<S, W>>,
}

impl<S, W> CredStoreApi<S, W> {
    /// Serves `store` over gRPC.
    pub fn new(store: Arc<CredStore<S, W>>) -> Self {
        Self { store }
    }
}

type Rpc<T> = Result<Response<T>, Status>;

fn status(e: CredError) -> Status {
    ApiError::from(e).into()
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Status {
    ApiError::invalid_field(field, reason).into()
}

/// A secret's resource name from the wire. The error names `field` and says
/// what shape is expected, never repeating the input.
fn secret_ref(field: &str, raw: &str) -> Result<SecretRef, Status> {
    if raw.is_empty() {
        return Err(invalid(field, "is required"));
    }
    SecretRef::parse(raw).map_err(|e| invalid(field, e.to_string()))
}

/// A connection record's resource name from the wire.
fn connection_ref(field: &str, raw: &str) -> Result<ConnectionRef, Status> {
    if raw.is_empty() {
        return Err(invalid(field, "is required"));
    }
    ConnectionRef::parse(raw).map_err(|e| match e {
        ResourceError::Malformed => invalid(
            field,
            "must be system/integrations/{i} or tenants/{t}[/orgs/{o}[/bots/{b}|/users/{u}]]/integrations/{i}",
        ),
        e => invalid(field, e.to_string()),
    })
}

/// A scope's resource name (`system`, `tenants/{t}[/orgs/{o}[/bots/{b}|/users/{u}]]`).
fn scope(field: &str, raw: &str) -> Result<Scope, Status> {
    const SHAPE: &str = "must be system or tenants/{t}[/orgs/{o}[/bots/{b}|/users/{u}]]";
    if raw.is_empty() {
        return Err(invalid(field, "is required"));
    }
    let tenant = |t: &str| TenantId::parse(t).map_err(|e| invalid(field, format!("tenant id {e}")));
    let member = |m: &str, kind: &str| {
        MemberId::parse(m).map_err(|e| invalid(field, format!("{kind} id {e}")))
    };
    let parts: Vec<&str> = raw.split('/').collect();
    match parts.as_slice() {
        ["system"] => Ok(Scope::System),
        ["tenants", t] => Ok(Scope::Tenant(tenant(t)?)),
        ["tenants", t, "orgs", o] => Ok(Scope::Org {
            tenant: tenant(t)?,
            org: member(o, "org")?,
        }),
        ["tenants", t, "orgs", o, "bots", b] => Ok(Scope::member(
            tenant(t)?,
            member(o, "org")?,
            MemberKind::Bot,
            member(b, "bot")?,
        )),
        ["tenants", t, "orgs", o, "users", u] => Ok(Scope::member(
            tenant(t)?,
            member(o, "org")?,
            MemberKind::User,
            member(u, "user")?,
        )),
        _ => Err(invalid(field, SHAPE)),
    }
}

/// Whose key a key call is about: `None` for the system scope.
fn key_owner(raw: &str) -> Result<Option<TenantId>, Status> {
    match scope("owner", raw)? {
        Scope::System => Ok(None),
        Scope::Tenant(t) => Ok(Some(t)),
        _ => Err(invalid("owner", "must be system or tenants/{t}")),
    }
}

/// Versions start at 1; on the wire 0 is how an unset field reads.
fn optional_version(version: u64) -> Option<u64> {
    (version != 0).then_some(version)
}

fn cas(expected_version: u64, unconditional: bool) -> Result<Cas, Status> {
    match (unconditional, expected_version) {
        (true, 0) => Ok(Cas::None),
        (true, _) => Err(invalid(
            "expected_version",
            "must be 0 when unconditional is set",
        )),
        (false, 0) => Ok(Cas::CreateOnly),
        (false, v) => Ok(Cas::Version(v)),
    }
}

fn page_size(raw: i32) -> Result<usize, Status> {
    match usize::try_from(raw) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) => Ok(n.min(MAX_PAGE_SIZE)),
        Err(_) => Err(invalid("page_size", "must not be negative")),
    }
}

/// Page tokens carry the listing they belong to and the last name served,
/// so a token from another scope's listing is refused instead of silently
/// skipping names. They are not secret: the caller may see both parts.
fn page_token(listing: &str, last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{listing}\n{last}"))
}

fn after_token(listing: &str, token: &str) -> Result<Option<String>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || invalid("page_token", "is not a token of this listing");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    match text.split_once('\n') {
        Some((of, last)) if of == listing && !last.is_empty() => Ok(Some(last.to_owned())),
        _ => Err(bad()),
    }
}

fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        // Always below 10^9, so it fits.
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

fn fields_to_pb(fields: &SecretFields) -> HashMap<String, String> {
    fields
        .iter()
        .map(|(k, v)| (k.to_owned(), v.expose_secret().to_owned()))
        .collect()
}

fn secret_to_pb(secret: &Secret) -> pb::Secret {
    pb::Secret {
        name: secret.secret_ref.resource_name(),
        version: secret.version,
        create_time: Some(timestamp(secret.created)),
        fields: fields_to_pb(&secret.fields),
    }
}

fn resolved_to_pb(secret: &Secret) -> pb::ResolveSecretResponse {
    pb::ResolveSecretResponse {
        secret: Some(secret_to_pb(secret)),
        answering_scope: secret.secret_ref.scope.storage_path(),
    }
}

#[tonic::async_trait]
impl<S: DocumentStore, W: KeyWrapper + 'static> CredentialStoreService for CredStoreApi<S, W> {
    async fn get_secret(
        &self,
        request: Request<pb::GetSecretRequest>,
    ) -> Rpc<pb::GetSecretResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let at = secret_ref("name", &request.name)?;
        let secret = self
            .store
            .get(&principal, &at, optional_version(request.version))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetSecretResponse {
            secret: Some(secret_to_pb(&secret)),
        }))
    }

    async fn put_secret(
        &self,
        request: Request<pb::PutSecretRequest>,
    ) -> Rpc<pb::PutSecretResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let at = secret_ref("name", &request.name)?;
        let cas = cas(request.expected_version, request.unconditional)?;
        let fields: SecretFields = request.fields.into_iter().collect();
        let version = self
            .store
            .put(&principal, &at, &fields, cas)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PutSecretResponse {
            name: at.resource_name(),
            version,
        }))
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Rpc<pb::ListSecretsResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let parent = scope("parent", &request.parent)?;
        let size = page_size(request.page_size)?;
        let after = after_token(&parent.storage_path(), &request.page_token)?;
        // One more than asked tells whether another page exists without an
        // empty last page.
        let mut names = self
            .store
            .list(&principal, &parent, after.as_deref(), size + 1)
            .await
            .map_err(status)?;
        let next_page_token = if names.len() > size {
            names.truncate(size);
            names
                .last()
                .map(|n| page_token(&parent.storage_path(), n.as_str()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListSecretsResponse {
            names: names
                .into_iter()
                .map(|name: SecretName| {
                    SecretRef {
                        scope: parent.clone(),
                        name,
                    }
                    .resource_name()
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn delete_secret(
        &self,
        request: Request<pb::DeleteSecretRequest>,
    ) -> Rpc<pb::DeleteSecretResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let at = secret_ref("name", &request.name)?;
        self.store
            .soft_delete(&principal, &at, &request.versions)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteSecretResponse {}))
    }

    async fn undelete_secret(
        &self,
        request: Request<pb::UndeleteSecretRequest>,
    ) -> Rpc<pb::UndeleteSecretResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let at = secret_ref("name", &request.name)?;
        self.store
            .undelete(&principal, &at, &request.versions)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UndeleteSecretResponse {}))
    }

    async fn destroy_secret_versions(
        &self,
        request: Request<pb::DestroySecretVersionsRequest>,
    ) -> Rpc<pb::DestroySecretVersionsResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let at = secret_ref("name", &request.name)?;
        self.store
            .destroy(&principal, &at, &request.versions)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DestroySecretVersionsResponse {}))
    }

    async fn resolve_secret(
        &self,
        request: Request<pb::ResolveSecretRequest>,
    ) -> Rpc<pb::ResolveSecretResponse> {
        let principal = Principal::of(&request)?.clone();
        let at = secret_ref("name", &request.into_inner().name)?;
        let secret = self.store.resolve(&principal, &at).await.map_err(status)?;
        Ok(Response::new(resolved_to_pb(&secret)))
    }

    async fn batch_resolve_secrets(
        &self,
        request: Request<pb::BatchResolveSecretsRequest>,
    ) -> Rpc<pb::BatchResolveSecretsResponse> {
        let principal = Principal::of(&request)?.clone();
        let names = request.into_inner().names;
        if names.is_empty() || names.len() > MAX_BATCH {
            return Err(invalid(
                "names",
                format!("must hold 1 to {MAX_BATCH} names"),
            ));
        }
        // Every name is checked before any is resolved, so a malformed batch
        // reads nothing.
        let refs = names
            .iter()
            .enumerate()
            .map(|(i, n)| secret_ref(&format!("names[{i}]"), n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut results = Vec::with_capacity(refs.len());
        for (name, at) in names.into_iter().zip(refs) {
            let result = match self.store.resolve(&principal, &at).await {
                Ok(secret) => pb::batch_resolve_result::Result::Resolved(resolved_to_pb(&secret)),
                Err(CredError::NotFound(_)) => {
                    pb::batch_resolve_result::Result::NotFound(pb::NotFound {})
                }
                Err(e) => return Err(status(e)),
            };
            results.push(pb::BatchResolveResult {
                name,
                result: Some(result),
            });
        }
        Ok(Response::new(pb::BatchResolveSecretsResponse { results }))
    }

    async fn provision_tenant_key(
        &self,
        request: Request<pb::ProvisionTenantKeyRequest>,
    ) -> Rpc<pb::ProvisionTenantKeyResponse> {
        let principal = Principal::of(&request)?.clone();
        match key_owner(&request.into_inner().owner)? {
            Some(tenant) => self.store.provision_tenant_key(&principal, &tenant).await,
            None => self.store.provision_system_key(&principal).await,
        }
        .map_err(status)?;
        Ok(Response::new(pb::ProvisionTenantKeyResponse {}))
    }

    async fn rotate_tenant_key(
        &self,
        request: Request<pb::RotateTenantKeyRequest>,
    ) -> Rpc<pb::RotateTenantKeyResponse> {
        let principal = Principal::of(&request)?.clone();
        let (owner, version) = match key_owner(&request.into_inner().owner)? {
            Some(tenant) => {
                let version = self.store.rotate_tenant_key(&principal, &tenant).await;
                (Owner::Tenant(tenant), version)
            }
            None => (
                Owner::System,
                self.store.rotate_system_key(&principal).await,
            ),
        };
        let version = version.map_err(status)?;
        // The answer does not wait for the sweep: it may take long, and reads
        // and writes go on meanwhile (see the crate docs).
        self.store.spawn_reencryption(owner);
        Ok(Response::new(pb::RotateTenantKeyResponse {
            key_version: version.get(),
        }))
    }

    async fn shred_tenant_key(
        &self,
        request: Request<pb::ShredTenantKeyRequest>,
    ) -> Rpc<pb::ShredTenantKeyResponse> {
        let principal = Principal::of(&request)?.clone();
        // Shredding the system key would make every suite credential
        // unreadable at once; no call may do that.
        let Some(tenant) = key_owner(&request.into_inner().owner)? else {
            return Err(invalid("owner", "the system key cannot be shredded"));
        };
        self.store
            .shred_tenant_key(&principal, &tenant)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ShredTenantKeyResponse {}))
    }

    async fn erase_scope(
        &self,
        request: Request<pb::EraseScopeRequest>,
    ) -> Rpc<pb::EraseScopeResponse> {
        let principal = Principal::of(&request)?.clone();
        let at = scope("scope", &request.into_inner().scope)?;
        self.store
            .erase_scope(&principal, &at)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::EraseScopeResponse {}))
    }

    async fn get_connection(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> Rpc<pb::GetConnectionResponse> {
        let principal = Principal::of(&request)?.clone();
        let at = connection_ref("name", &request.into_inner().name)?;
        let record = self
            .store
            .get_connection(&principal, &at)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetConnectionResponse {
            connection: Some(pb::Connection {
                name: at.resource_name(),
                version: record.version,
                update_time: Some(timestamp(record.updated)),
                fields: fields_to_pb(&record.fields),
            }),
        }))
    }

    async fn put_connection(
        &self,
        request: Request<pb::PutConnectionRequest>,
    ) -> Rpc<pb::PutConnectionResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let at = connection_ref("name", &request.name)?;
        // Connection records are shared state (the refresh lease): every
        // write is conditional.
        let cas = cas(request.expected_version, false)?;
        let fields: SecretFields = request.fields.into_iter().collect();
        let version = self
            .store
            .put_connection(&principal, &at, &fields, cas)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PutConnectionResponse {
            name: at.resource_name(),
            version,
        }))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Rpc<pb::ListConnectionsResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let parent = scope("parent", &request.parent)?;
        let size = page_size(request.page_size)?;
        let listing = format!("{}/integrations", parent.storage_path());
        let after = after_token(&listing, &request.page_token)?;
        let mut found = self
            .store
            .list_connections(&principal, &parent, after.as_deref(), size + 1)
            .await
            .map_err(status)?;
        let next_page_token = if found.len() > size {
            found.truncate(size);
            found
                .last()
                .map(|c| page_token(&listing, c.integration.as_str()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListConnectionsResponse {
            names: found.iter().map(|c| c.resource_name()).collect(),
            next_page_token,
        }))
    }

    async fn list_tenant_connections(
        &self,
        request: Request<pb::ListTenantConnectionsRequest>,
    ) -> Rpc<pb::ListTenantConnectionsResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let Scope::Tenant(tenant) = scope("parent", &request.parent)? else {
            return Err(invalid("parent", "must be tenants/{t}"));
        };
        let size = page_size(request.page_size)?;
        // Bound to this listing; the last record's path inside it.
        let listing = format!("tenants/{tenant}/-/integrations");
        let after = after_token(&listing, &request.page_token)?;
        if let Some(a) = &after
            && !a.starts_with(&format!("tenants/{tenant}/"))
        {
            return Err(invalid("page_token", "is not a token of this listing"));
        }
        let mut found = self
            .store
            .list_tenant_connections(&principal, &tenant, after.as_deref(), size + 1)
            .await
            .map_err(status)?;
        let next_page_token = if found.len() > size {
            found.truncate(size);
            found
                .last()
                .map(|r| page_token(&listing, &r.connection.storage_path()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListTenantConnectionsResponse {
            connections: found
                .iter()
                .map(|r| pb::Connection {
                    name: r.connection.resource_name(),
                    version: r.version,
                    update_time: Some(timestamp(r.updated)),
                    fields: fields_to_pb(&r.fields),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Rpc<pb::DeleteConnectionResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let at = connection_ref("name", &request.name)?;
        self.store
            .delete_connection(&principal, &at, optional_version(request.expected_version))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteConnectionResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_in_resource_form_only() {
        assert_eq!(scope("parent", "system").unwrap(), Scope::System);
        assert_eq!(
            scope("parent", "tenants/acme/orgs/sales/bots/llm")
                .unwrap()
                .storage_path(),
            "tenants/acme/orgs/sales/bots/llm"
        );
        for bad in [
            "",
            "tenant/acme",
            "tenants/acme/",
            "tenants/acme/../x",
            "tenants/acme/secrets/x",
            "tenants/ACME",
        ] {
            let err = scope("parent", bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        assert!(key_owner("tenants/acme/orgs/sales").is_err());
    }

    #[test]
    fn check_and_set_follows_the_documented_fields() {
        assert_eq!(cas(0, false).unwrap(), Cas::CreateOnly);
        assert_eq!(cas(4, false).unwrap(), Cas::Version(4));
        assert_eq!(cas(0, true).unwrap(), Cas::None);
        assert!(cas(4, true).is_err());
    }

    #[test]
    fn page_tokens_are_bound_to_their_listing() {
        let acme = scope("parent", "tenants/acme").unwrap();
        let beta = scope("parent", "tenants/beta").unwrap();
        let (acme, beta) = (acme.storage_path(), beta.storage_path());
        let token = page_token(&acme, "llm");
        assert_eq!(after_token(&acme, &token).unwrap().as_deref(), Some("llm"));
        assert!(after_token(&beta, &token).is_err());
        // A secrets token is no token of the same owner's connections.
        assert!(after_token(&format!("{acme}/integrations"), &token).is_err());
        assert!(after_token(&acme, "!!").is_err());
        assert_eq!(after_token(&acme, "").unwrap(), None);
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }
}
