//! The edge's JSON shapes (snake_case, RFC 3339 times) and their conversions
//! to and from the registry's protobuf messages. Field values are validated
//! in the registry, the receiving service; the edge checks only what its own
//! HTTP API defines: JSON types, required and unknown fields, keys given
//! twice, and that a PATCH changes something (it builds the update mask).

mod de;
mod integrations;
mod providers;
mod query;
mod secrets;

use std::collections::{BTreeMap, HashMap};

use locksmith_proto::registry::v1 as pb;
use prost_types::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, de::Error as _};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa::ToSchema;

pub(crate) use self::de::{VERSION_AT_LEAST_1, optional_whole_u32};
pub use self::{
    integrations::{
        Authorization, AuthorizeBody, ConnectionList, ConnectionView, CredentialsBody, Revoked,
        StoreCredentialsBody,
    },
    providers::{
        CreateProvider, ProviderDeleteQuery, ProviderList, ProviderView, UpdateProvider,
        definition_text,
    },
    query::{DeleteQuery, MAX_VERSION, PageQuery, SecretVersionQuery},
    secrets::{PutSecret, SecretList, SecretValue, SecretView, SecretWritten},
};

/// Said of a tenant PATCH without a field to change.
pub(crate) const NO_TENANT_CHANGE: &str = "changes no field; send at least one of display_name, domain, settings, status, quotas, enabled_integrations";
/// Said of an org, bot or user PATCH without a field to change.
pub(crate) const NO_MEMBER_CHANGE: &str =
    "changes no field; send at least one of display_name, labels";
/// Said of a user PATCH without a field to change.
pub(crate) const NO_USER_CHANGE: &str =
    "changes no field; send at least one of display_name, email, labels";

/// Whether a tenant is served. (Deserialized in `de`, in callers' terms.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Served.
    Active,
    /// Data kept, callers refused.
    Suspended,
}

impl TenantStatus {
    fn to_pb(self) -> i32 {
        match self {
            TenantStatus::Active => pb::TenantStatus::Active as i32,
            TenantStatus::Suspended => pb::TenantStatus::Suspended as i32,
        }
    }

    fn from_pb(v: i32) -> Self {
        if v == pb::TenantStatus::Suspended as i32 {
            TenantStatus::Suspended
        } else {
            TenantStatus::Active
        }
    }
}

/// Per-tenant limits; 0 means the deployment default. (Deserialized in
/// `de`: from a JSON object only.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
// For the schema: what `de::QuotasFields` accepts.
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: u32,
    /// Most connections.
    #[serde(default)]
    pub max_connections: u32,
}

impl From<Quotas> for pb::Quotas {
    fn from(q: Quotas) -> Self {
        pb::Quotas {
            requests_per_minute: q.requests_per_minute,
            max_connections: q.max_connections,
        }
    }
}

/// A tenant as the edge shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    /// Slug id.
    pub id: String,
    /// Human-readable name.
    pub display_name: String,
    /// DNS name, if any.
    pub domain: Option<String>,
    /// Non-secret settings.
    pub settings: BTreeMap<String, String>,
    /// `active` or `suspended`.
    pub status: TenantStatus,
    /// Limits.
    pub quotas: Quotas,
    /// Enabled integration ids.
    pub enabled_integrations: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Check-and-set version; send it back on PATCH.
    pub version: u64,
}

/// Body of `POST /tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Slug `[a-z0-9][a-z0-9-]{0,62}`.
    pub id: String,
    /// 1 to 200 characters.
    pub display_name: String,
    /// DNS name.
    #[serde(default)]
    pub domain: Option<String>,
    /// Non-secret settings (keys `[a-z0-9][a-z0-9_.-]{0,63}`).
    #[serde(default, deserialize_with = "de::unique_map")]
    pub settings: HashMap<String, String>,
    /// Defaults to `active`.
    #[serde(default)]
    pub status: Option<TenantStatus>,
    /// Defaults to zeros (deployment defaults).
    #[serde(default)]
    pub quotas: Option<Quotas>,
    /// Integration ids.
    #[serde(default)]
    pub enabled_integrations: Vec<String>,
}

impl CreateTenant {
    /// The registry's message.
    pub fn into_pb(self) -> pb::Tenant {
        pb::Tenant {
            id: self.id,
            display_name: self.display_name,
            domain: self.domain.unwrap_or_default(),
            settings: self.settings,
            status: self.status.map(TenantStatus::to_pb).unwrap_or_default(),
            quotas: self.quotas.map(Into::into),
            enabled_integrations: self.enabled_integrations,
            ..Default::default()
        }
    }
}

/// Body of `PATCH /tenants/{t}`: only the fields present change, and at
/// least one must be present.
#[derive(Debug, Deserialize, ToSchema)]
// `remote = "Self"`: the derived deserializer is an inherent function, and
// the `Deserialize` impl below checks its result.
#[serde(deny_unknown_fields, remote = "Self")]
pub struct PatchTenant {
    /// The version this change is based on (check-and-set); required, 1 or more.
    #[serde(deserialize_with = "de::version")]
    pub version: u64,
    /// New name.
    #[serde(default, deserialize_with = "de::present")]
    pub display_name: Option<String>,
    /// New domain; `null` clears it.
    #[serde(default, deserialize_with = "de::nullable")]
    #[schema(value_type = Option<String>)]
    pub domain: Option<Option<String>>,
    /// Replaces all settings.
    #[serde(default, deserialize_with = "de::present_unique_map")]
    pub settings: Option<HashMap<String, String>>,
    /// New status.
    #[serde(default, deserialize_with = "de::present")]
    pub status: Option<TenantStatus>,
    /// New quotas.
    #[serde(default, deserialize_with = "de::present")]
    pub quotas: Option<Quotas>,
    /// Replaces the enabled integrations.
    #[serde(default, deserialize_with = "de::present")]
    pub enabled_integrations: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for PatchTenant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patch = PatchTenant::deserialize(d)?;
        let changes_nothing = patch.display_name.is_none()
            && patch.domain.is_none()
            && patch.settings.is_none()
            && patch.status.is_none()
            && patch.quotas.is_none()
            && patch.enabled_integrations.is_none();
        // An empty update mask would reach the registry, which names its own
        // request's fields (`update_mask`); the caller sent a body.
        if changes_nothing {
            return Err(D::Error::custom(NO_TENANT_CHANGE));
        }
        Ok(patch)
    }
}

impl PatchTenant {
    /// The registry's message and field mask for tenant `id`.
    pub fn into_pb(self, id: String) -> pb::UpdateTenantRequest {
        let mut paths = Vec::new();
        let mut tenant = pb::Tenant {
            id,
            version: self.version,
            ..Default::default()
        };
        if let Some(v) = self.display_name {
            tenant.display_name = v;
            paths.push("display_name");
        }
        if let Some(v) = self.domain {
            tenant.domain = v.unwrap_or_default();
            paths.push("domain");
        }
        if let Some(v) = self.settings {
            tenant.settings = v;
            paths.push("settings");
        }
        if let Some(v) = self.status {
            tenant.status = v.to_pb();
            paths.push("status");
        }
        if let Some(v) = self.quotas {
            tenant.quotas = Some(v.into());
            paths.push("quotas");
        }
        if let Some(v) = self.enabled_integrations {
            tenant.enabled_integrations = v;
            paths.push("enabled_integrations");
        }
        pb::UpdateTenantRequest {
            tenant: Some(tenant),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.into_iter().map(str::to_owned).collect(),
            }),
        }
    }
}

/// A page of tenants.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    /// Ordered by id.
    pub tenants: Vec<TenantView>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `GET /tenants/{t}/status`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantStatusView {
    /// The tenant.
    pub tenant_id: String,
    /// `active` or `suspended`.
    pub status: TenantStatus,
    /// Enabled integration ids.
    pub enabled_integrations: Vec<String>,
    /// Limits.
    pub quotas: Quotas,
    /// Current version.
    pub version: u64,
    /// RFC 3339.
    pub updated_at: String,
}

/// An org, bot or user as the edge shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// The tenant.
    pub tenant_id: String,
    /// The org (for an org: its own id).
    pub org_id: String,
    /// The member's id.
    pub id: String,
    /// Human-readable name.
    pub display_name: String,
    /// Users only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Non-secret labels.
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Check-and-set version.
    pub version: u64,
}

/// Body of `POST …/orgs` and `…/bots`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMember {
    /// Slug or lowercase UUID.
    pub id: String,
    /// 1 to 200 characters.
    pub display_name: String,
    /// Set from a [`CreateUser`] only: orgs and bots have no email.
    #[serde(skip)]
    pub email: Option<String>,
    /// Non-secret labels.
    #[serde(default, deserialize_with = "de::unique_map")]
    pub labels: HashMap<String, String>,
}

/// Body of `POST …/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Slug or lowercase UUID.
    pub id: String,
    /// 1 to 200 characters.
    pub display_name: String,
    /// The user's email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Non-secret labels.
    #[serde(default, deserialize_with = "de::unique_map")]
    pub labels: HashMap<String, String>,
}

impl From<CreateUser> for CreateMember {
    fn from(u: CreateUser) -> Self {
        CreateMember {
            id: u.id,
            display_name: u.display_name,
            email: u.email,
            labels: u.labels,
        }
    }
}

/// Body of `PATCH` on an org, bot or user: only the fields present change,
/// and at least one must be present.
#[derive(Debug, Deserialize, ToSchema)]
// See `PatchTenant` for `remote = "Self"`.
#[serde(deny_unknown_fields, remote = "Self")]
pub struct PatchMember {
    /// The version this change is based on; required, 1 or more.
    #[serde(deserialize_with = "de::version")]
    pub version: u64,
    /// New name.
    #[serde(default, deserialize_with = "de::present")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
    /// Set from a [`PatchUser`] only: orgs and bots have no email.
    #[serde(skip)]
    pub email: Option<Option<String>>,
    /// Replaces all labels.
    #[serde(default, deserialize_with = "de::present_unique_map")]
    #[schema(nullable = false)]
    pub labels: Option<HashMap<String, String>>,
}

impl<'de> Deserialize<'de> for PatchMember {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patch = PatchMember::deserialize(d)?;
        if patch.display_name.is_none() && patch.labels.is_none() {
            return Err(D::Error::custom(NO_MEMBER_CHANGE));
        }
        Ok(patch)
    }
}

/// Body of `PATCH` on a user: only the fields present change, and at least
/// one must be present.
#[derive(Debug, Deserialize, ToSchema)]
// See `PatchTenant` for `remote = "Self"`.
#[serde(deny_unknown_fields, remote = "Self")]
pub struct PatchUser {
    /// The version this change is based on; required, 1 or more.
    #[serde(deserialize_with = "de::version")]
    pub version: u64,
    /// New name.
    #[serde(default, deserialize_with = "de::present")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
    /// New email address; `null` clears it.
    #[serde(default, deserialize_with = "de::nullable")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    /// Replaces all labels.
    #[serde(default, deserialize_with = "de::present_unique_map")]
    #[schema(nullable = false)]
    pub labels: Option<HashMap<String, String>>,
}

impl<'de> Deserialize<'de> for PatchUser {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patch = PatchUser::deserialize(d)?;
        if patch.display_name.is_none() && patch.email.is_none() && patch.labels.is_none() {
            return Err(D::Error::custom(NO_USER_CHANGE));
        }
        Ok(patch)
    }
}

impl From<PatchUser> for PatchMember {
    fn from(u: PatchUser) -> Self {
        PatchMember {
            version: u.version,
            display_name: u.display_name,
            email: u.email,
            labels: u.labels,
        }
    }
}

impl PatchMember {
    /// The values and mask paths of this patch.
    pub fn into_parts(
        self,
    ) -> (
        String,
        String,
        HashMap<String, String>,
        u64,
        prost_types::FieldMask,
    ) {
        let mut paths = Vec::new();
        if self.display_name.is_some() {
            paths.push("display_name".to_owned());
        }
        if self.email.is_some() {
            paths.push("email".to_owned());
        }
        if self.labels.is_some() {
            paths.push("labels".to_owned());
        }
        (
            self.display_name.unwrap_or_default(),
            self.email.flatten().unwrap_or_default(),
            self.labels.unwrap_or_default(),
            self.version,
            prost_types::FieldMask { paths },
        )
    }
}

/// A page of orgs, bots or users.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberList {
    /// Ordered by id.
    pub items: Vec<MemberView>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Liveness and readiness answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok` or `ready`.
    pub status: String,
    /// Per backend service: `serving` or why not.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub services: BTreeMap<String, String>,
}

pub(crate) fn rfc3339(ts: Option<Timestamp>) -> String {
    let ts = ts.unwrap_or_default();
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

impl From<pb::Tenant> for TenantView {
    fn from(t: pb::Tenant) -> Self {
        let quotas = t.quotas.unwrap_or_default();
        TenantView {
            id: t.id,
            display_name: t.display_name,
            domain: non_empty(t.domain),
            settings: t.settings.into_iter().collect(),
            status: TenantStatus::from_pb(t.status),
            quotas: Quotas {
                requests_per_minute: quotas.requests_per_minute,
                max_connections: quotas.max_connections,
            },
            enabled_integrations: t.enabled_integrations,
            created_at: rfc3339(t.create_time),
            updated_at: rfc3339(t.update_time),
            version: t.version,
        }
    }
}

impl From<TenantView> for TenantStatusView {
    fn from(t: TenantView) -> Self {
        TenantStatusView {
            tenant_id: t.id,
            status: t.status,
            enabled_integrations: t.enabled_integrations,
            quotas: t.quotas,
            version: t.version,
            updated_at: t.updated_at,
        }
    }
}

impl From<pb::Org> for MemberView {
    fn from(o: pb::Org) -> Self {
        MemberView {
            tenant_id: o.tenant_id,
            org_id: o.id.clone(),
            id: o.id,
            display_name: o.display_name,
            email: None,
            labels: o.labels.into_iter().collect(),
            created_at: rfc3339(o.create_time),
            updated_at: rfc3339(o.update_time),
            version: o.version,
        }
    }
}

impl From<pb::Bot> for MemberView {
    fn from(b: pb::Bot) -> Self {
        MemberView {
            tenant_id: b.tenant_id,
            org_id: b.org_id,
            id: b.id,
            display_name: b.display_name,
            email: None,
            labels: b.labels.into_iter().collect(),
            created_at: rfc3339(b.create_time),
            updated_at: rfc3339(b.update_time),
            version: b.version,
        }
    }
}

impl From<pb::User> for MemberView {
    fn from(u: pb::User) -> Self {
        MemberView {
            tenant_id: u.tenant_id,
            org_id: u.org_id,
            id: u.id,
            display_name: u.display_name,
            email: non_empty(u.email),
            labels: u.labels.into_iter().collect(),
            created_at: rfc3339(u.create_time),
            updated_at: rfc3339(u.update_time),
            version: u.version,
        }
    }
}
