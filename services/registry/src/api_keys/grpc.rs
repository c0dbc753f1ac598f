//! The gRPC face of API keys (`locksmith.registry.v1.ApiKeyService`):
//! prost ↔ domain, and who may touch whose keys.

use std::sync::Arc;

use locksmith_auth::{Access, Principal, Role, Roles};
use locksmith_domain::TenantId;
use locksmith_proto::registry::v1::{self as pb, api_key_service_server::ApiKeyService};
use locksmith_store::DocumentStore;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use super::{ApiKeyRecord, KeySpec, page_request, secret::KeyHasher};
use crate::{
    convert::{self, tenant_id, timestamp},
    error::{RegistryError, invalid},
    registry::Registry,
};

/// The tonic service.
pub struct ApiKeyApi<S> {
    registry: Arc<Registry<S>>,
    hasher: Arc<KeyHasher>,
}

impl<S> ApiKeyApi<S> {
    /// Serves `registry`'s keys, hashed with `hasher`.
    pub fn new(registry: Arc<Registry<S>>, hasher: Arc<KeyHasher>) -> Self {
        Self { registry, hasher }
    }
}

type Rpc<T> = Result<Response<T>, Status>;

/// Whose keys a call is about: a tenant's, or the operator's (`None`).
fn owner(field: &str, tenant: Option<&str>) -> Result<Option<TenantId>, RegistryError> {
    match tenant {
        Some(raw) => tenant_id(field, raw).map(Some),
        None => Ok(None),
    }
}

/// A tenant's keys need its admin role (another tenant's are invisible);
/// operator keys need an operator.
fn authorize(principal: &Principal, tenant: Option<&TenantId>) -> Result<(), RegistryError> {
    let denied = match tenant {
        Some(t) => principal.authorize(t, Access::Admin).map_err(|d| {
            d.into_api_error(|| {
                RegistryError::NotFound {
                    what: format!("tenant '{t}'"),
                }
                .into()
            })
        }),
        None => principal
            .require_operator()
            .map_err(|d| d.into_api_error(locksmith_errors::ApiError::internal)),
    };
    denied.map_err(RegistryError::Denied)
}

fn role_from_pb(raw: i32, i: usize) -> Result<Role, RegistryError> {
    match pb::ApiKeyRole::try_from(raw) {
        Ok(pb::ApiKeyRole::Read) => Ok(Role::Read),
        Ok(pb::ApiKeyRole::Write) => Ok(Role::Write),
        Ok(pb::ApiKeyRole::Admin) => Ok(Role::Admin),
        Ok(pb::ApiKeyRole::Unspecified) | Err(_) => Err(invalid(
            format!("roles[{i}]"),
            "must be read, write or admin",
        )),
    }
}

fn role_to_pb(role: Role) -> i32 {
    match role {
        Role::Read => pb::ApiKeyRole::Read as i32,
        Role::Write => pb::ApiKeyRole::Write as i32,
        Role::Admin => pb::ApiKeyRole::Admin as i32,
    }
}

fn time_from_pb(field: &str, t: prost_types::Timestamp) -> Result<OffsetDateTime, RegistryError> {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|_| invalid(field, "is not a valid time"))
}

fn spec_from_pb(key: pb::ApiKey) -> Result<KeySpec, RegistryError> {
    if !key.key_id.is_empty()
        || key.create_time.is_some()
        || key.revoke_time.is_some()
        || key.last_used_time.is_some()
    {
        return Err(invalid(
            "api_key",
            "key_id, create_time, revoke_time and last_used_time are set by the registry",
        ));
    }
    let tenant = match key.owner {
        Some(pb::api_key::Owner::TenantId(t)) => Some(tenant_id("tenant_id", &t)?),
        Some(pb::api_key::Owner::Operator(_)) => None,
        None => return Err(invalid("owner", "must name a tenant or the operator")),
    };
    let roles = key
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| role_from_pb(*r, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeySpec {
        tenant,
        display_name: key.display_name,
        roles: Roles::of(roles),
        expire_time: key
            .expire_time
            .map(|t| time_from_pb("expire_time", t))
            .transpose()?,
    })
}

/// The wire form of a key's metadata (no hash, no secret).
pub fn key_to_pb(k: &ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        key_id: k.key_id.clone(),
        owner: Some(match &k.tenant {
            Some(t) => pb::api_key::Owner::TenantId(t.to_string()),
            None => pb::api_key::Owner::Operator(pb::OperatorOwner {}),
        }),
        display_name: k.display_name.clone(),
        roles: k.roles.iter().map(role_to_pb).collect(),
        create_time: Some(timestamp(k.create_time)),
        expire_time: k.expire_time.map(timestamp),
        revoke_time: k.revoke_time.map(timestamp),
        last_used_time: k.last_used_time.map(timestamp),
    }
}

#[tonic::async_trait]
impl<S: DocumentStore> ApiKeyService for ApiKeyApi<S> {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Rpc<pb::CreateApiKeyResponse> {
        let principal = Principal::of(&request)?.clone();
        let key = request
            .into_inner()
            .api_key
            .ok_or_else(|| invalid("api_key", "is required"))?;
        let spec = spec_from_pb(key)?;
        authorize(&principal, spec.tenant.as_ref())?;
        let (record, secret) = self.registry.create_api_key(&self.hasher, spec).await?;
        tracing::info!(key_id = %record.key_id, by = %principal.describe(), "API key created");
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(key_to_pb(&record)),
            secret: secret.expose_secret().to_owned(),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Rpc<pb::ListApiKeysResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let tenant = match request.owner {
            Some(pb::list_api_keys_request::Owner::TenantId(t)) => owner("tenant_id", Some(&t))?,
            Some(pb::list_api_keys_request::Owner::Operator(_)) => None,
            None => return Err(invalid("owner", "must name a tenant or the operator").into()),
        };
        authorize(&principal, tenant.as_ref())?;
        let page = page_request(tenant.as_ref(), request.page_size, &request.page_token)?;
        let page = self.registry.list_api_keys(tenant.as_ref(), page).await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: page.items.iter().map(key_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Rpc<pb::RevokeApiKeyResponse> {
        let principal = Principal::of(&request)?.clone();
        let request = request.into_inner();
        let tenant = match request.owner {
            Some(pb::revoke_api_key_request::Owner::TenantId(t)) => owner("tenant_id", Some(&t))?,
            Some(pb::revoke_api_key_request::Owner::Operator(_)) => None,
            None => return Err(invalid("owner", "must name a tenant or the operator").into()),
        };
        authorize(&principal, tenant.as_ref())?;
        let record = self
            .registry
            .revoke_api_key(tenant.as_ref(), &request.key_id)
            .await?;
        tracing::info!(key_id = %record.key_id, by = %principal.describe(), "API key revoked");
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(key_to_pb(&record)),
        }))
    }

    async fn verify_api_key(
        &self,
        request: Request<pb::VerifyApiKeyRequest>,
    ) -> Rpc<pb::VerifyApiKeyResponse> {
        let presented = SecretString::from(request.into_inner().secret);
        let verified = self
            .registry
            .verify_api_key(&self.hasher, &presented)
            .await?;
        Ok(Response::new(pb::VerifyApiKeyResponse {
            api_key: Some(key_to_pb(&verified.key)),
            tenant: verified.tenant.map(convert::tenant_to_pb),
        }))
    }
}
