//! Wire (prost) ↔ domain conversions. Prost types stop here: everything past
//! this module works with parsed, validated domain values.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use locksmith_domain::{
    FieldError, IntegrationId, Invalid, Member, MemberId, MemberKind, MemberPatch, MemberSpec,
    Quotas, Scope, Tenant, TenantId, TenantPatch, TenantSpec, TenantStatus,
};
use locksmith_proto::registry::v1 as pb;
use prost_types::{FieldMask, Timestamp};
use time::OffsetDateTime;

use crate::error::{RegistryError, invalid};

/// Parses a tenant id from the request field `field`.
pub(crate) fn tenant_id(field: &str, raw: &str) -> Result<TenantId, RegistryError> {
    TenantId::parse(raw).map_err(|e| invalid(field, e.to_string()))
}

/// Parses an org, bot or user id from the request field `field`.
pub(crate) fn member_id(field: &str, raw: &str) -> Result<MemberId, RegistryError> {
    MemberId::parse(raw).map_err(|e| invalid(field, e.to_string()))
}

/// The scope of org `org` (named by request field `org_field`) of `tenant`.
pub(crate) fn org_scope(tenant: &str, org: &str, org_field: &str) -> Result<Scope, RegistryError> {
    Ok(Scope::Org {
        tenant: tenant_id("tenant_id", tenant)?,
        org: member_id(org_field, org)?,
    })
}

/// The scope of bot or user `id` (named by request field `id_field`) in `org`.
pub(crate) fn child_scope(
    kind: MemberKind,
    tenant: &str,
    org: &str,
    id: &str,
    id_field: &str,
) -> Result<Scope, RegistryError> {
    Ok(Scope::member(
        tenant_id("tenant_id", tenant)?,
        member_id("org_id", org)?,
        kind,
        member_id(id_field, id)?,
    ))
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

fn integrations(raw: Vec<String>) -> Result<BTreeSet<IntegrationId>, RegistryError> {
    // The list as sent is bounded, duplicates included: a caller's list of
    // 300 copies of one id is 300 entries, whatever they collapse to.
    if raw.len() > locksmith_domain::MAX_INTEGRATIONS {
        return Err(invalid(
            "enabled_integrations",
            format!(
                "must have at most {} entries",
                locksmith_domain::MAX_INTEGRATIONS
            ),
        ));
    }
    let mut errors = Vec::new();
    let mut set = BTreeSet::new();
    for (i, s) in raw.iter().enumerate() {
        match IntegrationId::parse(s) {
            Ok(id) => {
                set.insert(id);
            }
            Err(e) => errors.push(FieldError::new(
                format!("enabled_integrations[{i}]"),
                e.to_string(),
            )),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(Invalid(errors).into())
    }
}

fn status(raw: i32, unspecified: Option<TenantStatus>) -> Result<TenantStatus, RegistryError> {
    match pb::TenantStatus::try_from(raw) {
        Ok(pb::TenantStatus::Active) => Ok(TenantStatus::Active),
        Ok(pb::TenantStatus::Suspended) => Ok(TenantStatus::Suspended),
        Ok(pb::TenantStatus::Unspecified) => {
            unspecified.ok_or_else(|| invalid("status", "must be ACTIVE or SUSPENDED"))
        }
        Err(_) => Err(invalid("status", "is not a known tenant status")),
    }
}

fn quotas(q: Option<pb::Quotas>) -> Quotas {
    let q = q.unwrap_or_default();
    Quotas {
        requests_per_minute: q.requests_per_minute,
        max_connections: q.max_connections,
    }
}

/// The id and settable fields of a tenant to create.
pub(crate) fn new_tenant(t: pb::Tenant) -> Result<(TenantId, TenantSpec), RegistryError> {
    let id = tenant_id("id", &t.id)?;
    let spec = TenantSpec {
        display_name: t.display_name,
        domain: non_empty(t.domain),
        settings: sorted(t.settings),
        status: status(t.status, Some(TenantStatus::Active))?,
        quotas: quotas(t.quotas),
        enabled_integrations: integrations(t.enabled_integrations)?,
    };
    Ok((id, spec))
}

fn mask_paths(mask: Option<FieldMask>) -> Result<Vec<String>, RegistryError> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(invalid(
            "update_mask",
            "must name at least one field to change",
        ));
    }
    Ok(paths)
}

/// The change an UpdateTenant request asks for.
pub(crate) fn tenant_patch(
    t: pb::Tenant,
    mask: Option<FieldMask>,
) -> Result<TenantPatch, RegistryError> {
    let mut patch = TenantPatch::default();
    let mut t = t;
    for (i, path) in mask_paths(mask)?.into_iter().enumerate() {
        match path.as_str() {
            "display_name" => patch.display_name = Some(std::mem::take(&mut t.display_name)),
            "domain" => patch.domain = Some(non_empty(std::mem::take(&mut t.domain))),
            "settings" => patch.settings = Some(sorted(std::mem::take(&mut t.settings))),
            "status" => patch.status = Some(status(t.status, None)?),
            "quotas" => patch.quotas = Some(quotas(t.quotas.take())),
            "enabled_integrations" => {
                patch.enabled_integrations =
                    Some(integrations(std::mem::take(&mut t.enabled_integrations))?)
            }
            _ => {
                return Err(invalid(
                    format!("update_mask.paths[{i}]"),
                    "must be one of display_name, domain, settings, status, quotas, enabled_integrations",
                ));
            }
        }
    }
    Ok(patch)
}

/// The settable fields of an org, bot or user to create.
pub(crate) fn member_spec(
    display_name: String,
    email: String,
    labels: HashMap<String, String>,
) -> MemberSpec {
    MemberSpec {
        display_name,
        email: non_empty(email),
        labels: sorted(labels),
    }
}

/// The change an UpdateOrg/Bot/User request asks for.
pub(crate) fn member_patch(
    kind: MemberKind,
    spec: MemberSpec,
    mask: Option<FieldMask>,
) -> Result<MemberPatch, RegistryError> {
    let mut patch = MemberPatch::default();
    let mut spec = spec;
    for (i, path) in mask_paths(mask)?.into_iter().enumerate() {
        match path.as_str() {
            "display_name" => patch.display_name = Some(std::mem::take(&mut spec.display_name)),
            "labels" => patch.labels = Some(std::mem::take(&mut spec.labels)),
            "email" if kind == MemberKind::User => patch.email = Some(spec.email.take()),
            _ => {
                let allowed = if kind == MemberKind::User {
                    "display_name, email, labels"
                } else {
                    "display_name, labels"
                };
                return Err(invalid(
                    format!("update_mask.paths[{i}]"),
                    format!("must be one of {allowed}"),
                ));
            }
        }
    }
    Ok(patch)
}

pub(crate) fn timestamp(t: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: t.unix_timestamp(),
        // Always in 0..1e9, so the conversion cannot fail.
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

pub(crate) fn tenant_to_pb(t: Tenant) -> pb::Tenant {
    let status = match t.spec.status {
        TenantStatus::Active => pb::TenantStatus::Active,
        TenantStatus::Suspended => pb::TenantStatus::Suspended,
    };
    pb::Tenant {
        id: t.id.into(),
        display_name: t.spec.display_name,
        domain: t.spec.domain.unwrap_or_default(),
        settings: t.spec.settings.into_iter().collect(),
        status: status.into(),
        quotas: Some(pb::Quotas {
            requests_per_minute: t.spec.quotas.requests_per_minute,
            max_connections: t.spec.quotas.max_connections,
        }),
        enabled_integrations: t
            .spec
            .enabled_integrations
            .into_iter()
            .map(String::from)
            .collect(),
        create_time: Some(timestamp(t.created_at)),
        update_time: Some(timestamp(t.updated_at)),
        version: t.version,
    }
}

/// The ids of a member's scope as (tenant, org, leaf) strings.
fn scope_ids(scope: &Scope) -> (String, String, String) {
    match scope {
        Scope::Org { tenant, org } => (tenant.to_string(), org.to_string(), org.to_string()),
        Scope::Bot { tenant, org, bot } => (tenant.to_string(), org.to_string(), bot.to_string()),
        Scope::User { tenant, org, user } => {
            (tenant.to_string(), org.to_string(), user.to_string())
        }
        Scope::System | Scope::Tenant(_) => Default::default(),
    }
}

pub(crate) fn org_to_pb(m: Member) -> pb::Org {
    let (tenant_id, _, id) = scope_ids(&m.scope);
    pb::Org {
        tenant_id,
        id,
        display_name: m.spec.display_name,
        labels: m.spec.labels.into_iter().collect(),
        create_time: Some(timestamp(m.created_at)),
        update_time: Some(timestamp(m.updated_at)),
        version: m.version,
    }
}

pub(crate) fn bot_to_pb(m: Member) -> pb::Bot {
    let (tenant_id, org_id, id) = scope_ids(&m.scope);
    pb::Bot {
        tenant_id,
        org_id,
        id,
        display_name: m.spec.display_name,
        labels: m.spec.labels.into_iter().collect(),
        create_time: Some(timestamp(m.created_at)),
        update_time: Some(timestamp(m.updated_at)),
        version: m.version,
    }
}

pub(crate) fn user_to_pb(m: Member) -> pb::User {
    let (tenant_id, org_id, id) = scope_ids(&m.scope);
    pb::User {
        tenant_id,
        org_id,
        id,
        display_name: m.spec.display_name,
        email: m.spec.email.unwrap_or_default(),
        labels: m.spec.labels.into_iter().collect(),
        create_time: Some(timestamp(m.created_at)),
        update_time: Some(timestamp(m.updated_at)),
        version: m.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_lists_are_bounded_as_sent() {
        let copies = vec!["notion".to_owned(); locksmith_domain::MAX_INTEGRATIONS + 1];
        let err = integrations(copies).unwrap_err().to_string();
        assert!(err.contains("enabled_integrations"), "{err}");
        let at_limit = vec!["notion".to_owned(); locksmith_domain::MAX_INTEGRATIONS];
        assert_eq!(integrations(at_limit).unwrap().len(), 1);
    }

    #[test]
    fn unknown_mask_paths_are_named() {
        let err = tenant_patch(
            pb::Tenant::default(),
            Some(FieldMask {
                paths: vec!["display_name".into(), "id".into()],
            }),
        )
        .unwrap_err();
        assert!(err.to_string().contains("update_mask.paths[1]"), "{err}");
        assert!(tenant_patch(pb::Tenant::default(), None).is_err());
    }

    #[test]
    fn only_users_patch_email() {
        let mask = || {
            Some(FieldMask {
                paths: vec!["email".into()],
            })
        };
        assert!(member_patch(MemberKind::User, MemberSpec::default(), mask()).is_ok());
        assert!(member_patch(MemberKind::Bot, MemberSpec::default(), mask()).is_err());
    }

    #[test]
    fn bad_integration_ids_are_each_reported() {
        let t = pb::Tenant {
            id: "acme".into(),
            display_name: "Acme".into(),
            enabled_integrations: vec!["notion".into(), "Bad".into(), "../x".into()],
            ..Default::default()
        };
        let err = new_tenant(t).unwrap_err();
        let RegistryError::Invalid(Invalid(errors)) = err else {
            panic!("{err}")
        };
        assert_eq!(errors.len(), 2);
    }
}
