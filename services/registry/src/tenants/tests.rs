//! The tenant lifecycle against an in-memory store and key service: keys
//! follow tenants, and a create or delete interrupted anywhere is finished
//! by a retry (or, for deletes, by the next start).

use std::sync::Arc;

use locksmith_domain::{MemberKind, MemberSpec};

use super::*;
use locksmith_store::EmbeddedStore;

use crate::{keys::fake::MemoryKeys, registry::system_clock};

fn operator() -> Principal {
    Principal::Operator {
        subject: "api-key:test".into(),
    }
}

fn id(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn spec(name: &str) -> TenantSpec {
    TenantSpec {
        display_name: name.into(),
        ..TenantSpec::default()
    }
}

fn fixture() -> (Registry<EmbeddedStore>, Arc<MemoryKeys>) {
    let keys = Arc::new(MemoryKeys::default());
    let registry = Registry::new(
        EmbeddedStore::in_memory(locksmith_store::system_clock()).unwrap(),
        keys.clone() as Arc<dyn crate::keys::TenantKeys>,
        system_clock(),
    );
    (registry, keys)
}

fn org(tenant: &str) -> Scope {
    Scope::parse(&format!("tenant/{tenant}/org/sales")).unwrap()
}

fn org_spec() -> MemberSpec {
    MemberSpec {
        display_name: "Sales".into(),
        ..MemberSpec::default()
    }
}

fn is_not_found(r: Result<impl std::fmt::Debug, RegistryError>) -> bool {
    matches!(r, Err(RegistryError::NotFound { .. }))
}

fn is_unavailable(r: Result<impl std::fmt::Debug, RegistryError>) -> bool {
    matches!(
        r,
        Err(RegistryError::Keys(crate::keys::KeyError::Unavailable(_)))
    )
}

#[tokio::test]
async fn a_created_tenant_has_a_key_and_a_deleted_one_has_none() {
    let (registry, keys) = fixture();
    let tenant = registry
        .create_tenant(&operator(), id("acme"), spec("Acme"))
        .await
        .unwrap();
    assert_eq!(tenant.version, 1);
    assert!(keys.has("acme"));
    assert_eq!(registry.get_tenant(&id("acme")).await.unwrap().version, 1);
    registry
        .create_member(org("acme"), org_spec())
        .await
        .unwrap();

    registry
        .delete_tenant(&operator(), &id("acme"), Some(1))
        .await
        .unwrap();
    assert!(!keys.has("acme"));
    assert_eq!(
        *keys.calls.lock().unwrap(),
        ["provision acme", "shred acme", "erase-providers acme"]
    );
    assert!(registry.read(&org("acme")).await.unwrap().is_none());
    assert!(
        registry
            .read(&Scope::Tenant(id("acme")))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_create_without_the_credential_store_leaves_nothing_and_a_retry_succeeds() {
    let (registry, keys) = fixture();
    keys.set_down(true);
    assert!(is_unavailable(
        registry
            .create_tenant(&operator(), id("acme"), spec("Acme"))
            .await
    ));
    assert!(
        registry
            .read(&Scope::Tenant(id("acme")))
            .await
            .unwrap()
            .is_none(),
        "the claim is dropped"
    );
    keys.set_down(false);
    let tenant = registry
        .create_tenant(&operator(), id("acme"), spec("Acme"))
        .await
        .unwrap();
    assert_eq!(tenant.version, 1);
    assert!(keys.has("acme"));
}

#[tokio::test]
async fn a_claim_left_by_a_crash_is_invisible_and_taken_over_by_the_next_create() {
    let (registry, keys) = fixture();
    // A create that crashed after provisioning the key, before activating.
    let claim = TenantRecord {
        tenant: Tenant::create(id("acme"), spec("Old"), (registry.clock)()).unwrap(),
        lifecycle: Lifecycle::Provisioning,
    };
    registry
        .store
        .write(
            &crate::store::record_key(&Scope::Tenant(id("acme"))).unwrap(),
            serde_json::to_vec(&claim).unwrap(),
            locksmith_store::Cas::CreateOnly,
        )
        .await
        .unwrap();
    keys.keys.lock().unwrap().insert("acme".into());

    assert!(is_not_found(registry.get_tenant(&id("acme")).await));
    assert!(is_not_found(
        registry.delete_tenant(&operator(), &id("acme"), None).await
    ));
    assert!(is_not_found(
        registry.create_member(org("acme"), org_spec()).await
    ));
    let listed = registry
        .list_tenants(PageRequest::parse(0, "", "system/tenants").unwrap())
        .await
        .unwrap();
    assert!(listed.items.is_empty());

    // The retry adopts the key (made after any earlier "acme" was shredded).
    let tenant = registry
        .create_tenant(&operator(), id("acme"), spec("Acme"))
        .await
        .unwrap();
    assert_eq!(
        (tenant.spec.display_name.as_str(), tenant.version),
        ("Acme", 1)
    );
    assert!(keys.has("acme"));
    // An active tenant is not taken over.
    assert!(matches!(
        registry
            .create_tenant(&operator(), id("acme"), spec("Again"))
            .await,
        Err(RegistryError::AlreadyExists { .. })
    ));
}

#[tokio::test]
async fn a_delete_without_the_credential_store_is_finished_by_a_retry_or_a_restart() {
    let (registry, keys) = fixture();
    for t in ["acme", "beta"] {
        registry
            .create_tenant(&operator(), id(t), spec(t))
            .await
            .unwrap();
        registry.create_member(org(t), org_spec()).await.unwrap();
    }
    keys.set_down(true);
    for t in ["acme", "beta"] {
        assert!(is_unavailable(
            registry.delete_tenant(&operator(), &id(t), Some(1)).await
        ));
        // Gone for callers at once, though its key is not shredded yet.
        assert!(keys.has(t));
        assert!(is_not_found(registry.get_tenant(&id(t)).await));
        assert!(is_not_found(registry.get_member(&org(t)).await));
        assert!(is_not_found(
            registry
                .list_members(
                    &Scope::Tenant(id(t)),
                    MemberKind::Org,
                    PageRequest::parse(0, "", &format!("tenants/{t}/orgs")).unwrap()
                )
                .await
        ));
        // The id stays taken until the sweep is done.
        assert!(matches!(
            registry.create_tenant(&operator(), id(t), spec(t)).await,
            Err(RegistryError::AlreadyExists { .. })
        ));
    }
    keys.set_down(false);

    // A retried DELETE resumes, whatever version it names.
    registry
        .delete_tenant(&operator(), &id("acme"), Some(7))
        .await
        .unwrap();
    assert!(!keys.has("acme"));
    // The next start finishes the other one.
    assert_eq!(registry.resume_deletions().await.unwrap(), 1);
    assert!(!keys.has("beta"));
    assert!(registry.read(&org("beta")).await.unwrap().is_none());
    assert_eq!(registry.resume_deletions().await.unwrap(), 0);

    // A new tenant of the same id gets a new key.
    registry
        .create_tenant(&operator(), id("beta"), spec("New beta"))
        .await
        .unwrap();
    assert!(keys.has("beta"));
    assert!(is_not_found(registry.get_member(&org("beta")).await));
}

#[tokio::test]
async fn updates_and_conditional_deletes_check_the_callers_version_not_the_stores() {
    let (registry, _keys) = fixture();
    registry
        .create_tenant(&operator(), id("acme"), spec("Acme"))
        .await
        .unwrap();
    // Creation took two store writes (claim, activate); callers see version 1.
    let patch = TenantPatch {
        display_name: Some("Acme 2".into()),
        ..TenantPatch::default()
    };
    let updated = registry
        .update_tenant(&id("acme"), 1, patch.clone())
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    match registry.update_tenant(&id("acme"), 1, patch).await {
        Err(RegistryError::VersionConflict { current, given, .. }) => {
            assert_eq!((current, given), (2, 1));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        registry
            .delete_tenant(&operator(), &id("acme"), Some(1))
            .await,
        Err(RegistryError::VersionConflict {
            current: 2,
            given: 1,
            ..
        })
    ));
    registry
        .delete_tenant(&operator(), &id("acme"), Some(2))
        .await
        .unwrap();
}

#[test]
fn records_from_before_lifecycles_read_as_active_and_active_ones_are_written_the_same() {
    let tenant = Tenant::create(
        id("acme"),
        spec("Acme"),
        time::macros::datetime!(2026-01-01 0:00 UTC),
    )
    .unwrap();
    let legacy = serde_json::to_vec(&tenant).unwrap();
    let record: TenantRecord = serde_json::from_slice(&legacy).unwrap();
    assert_eq!(record.lifecycle, Lifecycle::Active);
    assert_eq!(record.tenant, tenant);
    assert_eq!(serde_json::to_vec(&record).unwrap(), legacy);
    let deleting: TenantRecord =
        serde_json::from_slice(&serde_json::to_vec(&record.with(Lifecycle::Deleting)).unwrap())
            .unwrap();
    assert_eq!(deleting.lifecycle, Lifecycle::Deleting);
}

#[tokio::test]
async fn a_delete_erases_the_custom_providers_after_the_key_and_a_broker_outage_is_resumed() {
    use std::sync::atomic::Ordering;
    let (registry, keys) = fixture();
    registry
        .create_tenant(&operator(), id("acme"), spec("acme"))
        .await
        .unwrap();
    keys.broker_down.store(true, Ordering::SeqCst);
    let refused = registry
        .delete_tenant(&operator(), &id("acme"), Some(1))
        .await;
    assert!(
        matches!(
            refused,
            Err(RegistryError::Keys(
                crate::keys::KeyError::BrokerUnavailable(_)
            ))
        ),
        "{refused:?}"
    );
    // The key is gone, the tenant invisible, and its id still taken: the
    // sweep is not finished until the broker has erased the providers.
    assert!(!keys.has("acme"));
    assert!(is_not_found(registry.get_tenant(&id("acme")).await));
    assert!(matches!(
        registry
            .create_tenant(&operator(), id("acme"), spec("acme"))
            .await,
        Err(RegistryError::AlreadyExists { .. })
    ));
    keys.broker_down.store(false, Ordering::SeqCst);
    assert_eq!(registry.resume_deletions().await.unwrap(), 1);
    let calls = keys.calls.lock().unwrap().clone();
    let steps: Vec<&str> = calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.ends_with(" acme"))
        .collect();
    assert_eq!(
        steps,
        [
            "provision acme",
            "shred acme",
            "erase-providers acme",
            "shred acme",
            "erase-providers acme"
        ]
    );
    registry
        .create_tenant(&operator(), id("acme"), spec("New acme"))
        .await
        .unwrap();
}
