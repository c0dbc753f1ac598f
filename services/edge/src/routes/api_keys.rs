//! API keys: `POST|GET /tenants/{tenant_id}/api-keys`,
//! `DELETE /tenants/{tenant_id}/api-keys/{key_id}` (a tenant admin's own
//! keys), and the same under `/admin/api-keys` for operator keys.
//!
//! The secret is in the create response only; listings carry metadata.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use locksmith_auth::{Access, Role};
use locksmith_proto::registry::v1 as pb;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::missing;
use crate::{
    AppState,
    auth::Caller,
    dto::{PageQuery, rfc3339},
    extract::{ApiJson, ApiPath, ApiQuery},
    problem::Failure,
};

/// A role of a tenant key; each includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Read the tenant's records.
    Read,
    /// Create, change and delete them.
    Write,
    /// Manage the tenant's settings and API keys.
    Admin,
}

impl KeyRole {
    fn to_pb(self) -> i32 {
        match self {
            KeyRole::Read => pb::ApiKeyRole::Read as i32,
            KeyRole::Write => pb::ApiKeyRole::Write as i32,
            KeyRole::Admin => pb::ApiKeyRole::Admin as i32,
        }
    }

    pub(crate) fn from_pb(raw: i32) -> Option<Self> {
        match pb::ApiKeyRole::try_from(raw).ok()? {
            pb::ApiKeyRole::Read => Some(KeyRole::Read),
            pb::ApiKeyRole::Write => Some(KeyRole::Write),
            pb::ApiKeyRole::Admin => Some(KeyRole::Admin),
            pb::ApiKeyRole::Unspecified => None,
        }
    }
}

impl From<KeyRole> for Role {
    fn from(r: KeyRole) -> Self {
        match r {
            KeyRole::Read => Role::Read,
            KeyRole::Write => Role::Write,
            KeyRole::Admin => Role::Admin,
        }
    }
}

/// Body of `POST /tenants/{tenant_id}/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantKey {
    /// A name for people, 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub display_name: String,
    /// At least one role.
    #[schema(min_items = 1)]
    pub roles: Vec<KeyRole>,
    /// Seconds until the key stops working (at most ten years); absent: never.
    #[serde(default, deserialize_with = "crate::dto::optional_whole_u32")]
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub expires_in_seconds: Option<u32>,
}

/// Body of `POST /admin/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperatorKey {
    /// A name for people, 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub display_name: String,
    /// Seconds until the key stops working (at most ten years); absent: never.
    #[serde(default, deserialize_with = "crate::dto::optional_whole_u32")]
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub expires_in_seconds: Option<u32>,
}

/// An API key's metadata; never its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    /// The key's id (16 hex characters, also inside the key).
    pub key_id: String,
    /// Its tenant; absent for an operator key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Its name.
    pub display_name: String,
    /// Its roles (empty for an operator key, which reaches everything).
    pub roles: Vec<KeyRole>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; absent if it does not expire.
    pub expire_time: Option<String>,
    /// RFC 3339; absent unless revoked.
    pub revoked_at: Option<String>,
    /// RFC 3339, to about a minute; absent if never used.
    pub last_used_at: Option<String>,
}

impl From<pb::ApiKey> for ApiKeyView {
    fn from(k: pb::ApiKey) -> Self {
        let optional = |t: Option<prost_types::Timestamp>| t.map(|t| rfc3339(Some(t)));
        Self {
            tenant_id: match k.owner {
                Some(pb::api_key::Owner::TenantId(t)) => Some(t),
                _ => None,
            },
            key_id: k.key_id,
            display_name: k.display_name,
            roles: k.roles.into_iter().filter_map(KeyRole::from_pb).collect(),
            created_at: rfc3339(k.create_time),
            expire_time: optional(k.expire_time),
            revoked_at: optional(k.revoke_time),
            last_used_at: optional(k.last_used_time),
        }
    }
}

/// A new key: shown once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The key, `lsk_<key_id>_<secret>`: send it as `Authorization: Bearer <key>`.
    /// It is shown only now and cannot be recovered.
    pub key: String,
    /// Its metadata.
    pub api_key: ApiKeyView,
}

/// The key stays out of logs and panics.
impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key", &"[redacted]")
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// A page of keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    /// Keys by id.
    pub api_keys: Vec<ApiKeyView>,
    /// Pass as `page_token` for the next page; absent on the last.
    pub next_page_token: Option<String>,
}

/// Whether `s` has the shape of a key id (16 lowercase hex characters).
fn is_key_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Longest lifetime a key can be given: ten years.
const MAX_LIFETIME_SECONDS: u32 = 315_360_000;

/// The expiry of a key that lives `seconds` from now.
fn expiry(seconds: Option<u32>) -> Result<Option<prost_types::Timestamp>, Failure> {
    match seconds {
        None => Ok(None),
        Some(s) if s == 0 || s > MAX_LIFETIME_SECONDS => {
            Err(Failure(locksmith_errors::ApiError::invalid_field(
                "expires_in_seconds",
                format!("must be from 1 to {MAX_LIFETIME_SECONDS}"),
            )))
        }
        Some(s) => Ok(Some(timestamp(
            OffsetDateTime::now_utc() + time::Duration::seconds(i64::from(s)),
        ))),
    }
}

fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

async fn create(
    state: &AppState,
    caller: &Caller,
    key: pb::ApiKey,
) -> Result<impl IntoResponse + use<>, Failure> {
    let created = state
        .backends
        .api_keys
        .clone()
        .create_api_key(caller.request(pb::CreateApiKeyRequest { api_key: Some(key) }))
        .await?
        .into_inner();
    let meta = created.api_key.ok_or_else(|| missing("api_key"))?;
    let view = ApiKeyView::from(meta);
    let location = match &view.tenant_id {
        Some(t) => format!("/tenants/{t}/api-keys/{}", view.key_id),
        None => format!("/admin/api-keys/{}", view.key_id),
    };
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            // The body holds a credential: keep it out of every cache.
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        ApiJson(CreatedKey {
            key: created.secret,
            api_key: view,
        }),
    ))
}

async fn list(
    state: &AppState,
    caller: &Caller,
    owner: pb::list_api_keys_request::Owner,
    q: PageQuery,
) -> Result<ApiJson<ApiKeyList>, Failure> {
    let page = state
        .backends
        .api_keys
        .clone()
        .list_api_keys(caller.request(pb::ListApiKeysRequest {
            owner: Some(owner),
            page_size: q.page_size.unwrap_or_default(),
            page_token: q.page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    Ok(ApiJson(ApiKeyList {
        api_keys: page.api_keys.into_iter().map(Into::into).collect(),
        next_page_token: Some(page.next_page_token).filter(|t| !t.is_empty()),
    }))
}

async fn revoke(
    state: &AppState,
    caller: &Caller,
    owner: pb::revoke_api_key_request::Owner,
    key_id: String,
) -> Result<StatusCode, Failure> {
    if !is_key_id(&key_id) {
        // Never repeat it: a caller may paste a whole key here.
        return Err(Failure(crate::problem::invalid_field(
            "key_id",
            "must be the key's id: 16 lowercase hex characters",
        )));
    }
    // Marked before the registry is asked, so a verification of this key
    // already in flight cannot cache it as valid after the revoke; and again
    // after, to drop what was cached meanwhile.
    state.auth.forget_key(&key_id);
    state
        .backends
        .api_keys
        .clone()
        .revoke_api_key(caller.request(pb::RevokeApiKeyRequest {
            owner: Some(owner),
            key_id: key_id.clone(),
        }))
        .await?;
    // Refused on this replica from now on; others within the cache bound.
    state.auth.forget_key(&key_id);
    Ok(StatusCode::NO_CONTENT)
}

/// Create an API key for a tenant (needs the tenant's admin role).
#[utoipa::path(post, path = "/tenants/{tenant_id}/api-keys", tag = "api-keys",
    params(("tenant_id" = String, Path)), request_body = CreateTenantKey,
    responses((status = 201, body = CreatedKey, description = "Created; the key is shown only in this response")))]
pub async fn create_tenant_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateTenantKey>,
) -> Result<impl IntoResponse, Failure> {
    caller.authorize(&tenant_id, Access::Admin)?;
    let key = pb::ApiKey {
        owner: Some(pb::api_key::Owner::TenantId(tenant_id)),
        display_name: body.display_name,
        roles: body.roles.into_iter().map(KeyRole::to_pb).collect(),
        expire_time: expiry(body.expires_in_seconds)?,
        ..Default::default()
    };
    create(&state, &caller, key).await
}

/// List a tenant's API keys (metadata only).
#[utoipa::path(get, path = "/tenants/{tenant_id}/api-keys", tag = "api-keys",
    params(("tenant_id" = String, Path), PageQuery),
    responses((status = 200, body = ApiKeyList)))]
pub async fn list_tenant_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<ApiKeyList>, Failure> {
    caller.authorize(&tenant_id, Access::Admin)?;
    let owner = pb::list_api_keys_request::Owner::TenantId(tenant_id);
    list(&state, &caller, owner, q).await
}

/// Revoke one of a tenant's API keys, at once.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/api-keys/{key_id}", tag = "api-keys",
    params(("tenant_id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_tenant_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant_id, key_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, Failure> {
    caller.authorize(&tenant_id, Access::Admin)?;
    let owner = pb::revoke_api_key_request::Owner::TenantId(tenant_id);
    revoke(&state, &caller, owner, key_id).await
}

/// Create an operator API key (operators only).
#[utoipa::path(post, path = "/admin/api-keys", tag = "api-keys", request_body = CreateOperatorKey,
    responses((status = 201, body = CreatedKey, description = "Created; the key is shown only in this response")))]
pub async fn create_operator_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateOperatorKey>,
) -> Result<impl IntoResponse, Failure> {
    caller.require_operator()?;
    let key = pb::ApiKey {
        owner: Some(pb::api_key::Owner::Operator(pb::OperatorOwner {})),
        display_name: body.display_name,
        expire_time: expiry(body.expires_in_seconds)?,
        ..Default::default()
    };
    create(&state, &caller, key).await
}

/// List operator API keys (operators only).
#[utoipa::path(get, path = "/admin/api-keys", tag = "api-keys", params(PageQuery),
    responses((status = 200, body = ApiKeyList)))]
pub async fn list_operator_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<ApiKeyList>, Failure> {
    caller.require_operator()?;
    let owner = pb::list_api_keys_request::Owner::Operator(pb::OperatorOwner {});
    list(&state, &caller, owner, q).await
}

/// Revoke an operator API key, at once (operators only).
#[utoipa::path(delete, path = "/admin/api-keys/{key_id}", tag = "api-keys",
    params(("key_id" = String, Path)),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_operator_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(key_id): ApiPath<String>,
) -> Result<StatusCode, Failure> {
    caller.require_operator()?;
    let owner = pb::revoke_api_key_request::Owner::Operator(pb::OperatorOwner {});
    revoke(&state, &caller, owner, key_id).await
}
