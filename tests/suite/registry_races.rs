//! The registry on the shared storage seam, where no transaction spans two
//! keys: a tenant delete racing member and API key creates leaves no orphan,
//! on the embedded store and on a real OpenBao (a fresh prefix per test).

use std::sync::Arc;

use locksmith_auth::Principal;
use locksmith_domain::{MemberSpec, Scope, TenantId, TenantSpec};
use locksmith_registry::{
    KeyError, Registry, RegistryError, TenantKeys, api_keys::KeySpec, api_keys::secret::KeyHasher,
    system_clock,
};
use locksmith_store::{DocumentStore, EmbeddedStore, Key};

/// Keys are not what is under test here: every call succeeds.
struct NoopKeys;

#[tonic::async_trait]
impl TenantKeys for NoopKeys {
    async fn provision(&self, _: &Principal, _: &TenantId) -> Result<(), KeyError> {
        Ok(())
    }
    async fn shred(&self, _: &Principal, _: &TenantId) -> Result<(), KeyError> {
        Ok(())
    }
    async fn erase_scope(&self, _: &Principal, _: &Scope) -> Result<(), KeyError> {
        Ok(())
    }
    async fn erase_providers(&self, _: &TenantId) -> Result<(), KeyError> {
        Ok(())
    }
}

fn operator() -> Principal {
    Principal::Operator {
        subject: "api-key:test".into(),
    }
}

fn named(name: &str) -> MemberSpec {
    MemberSpec {
        display_name: name.into(),
        ..MemberSpec::default()
    }
}

/// Deletes tenant `race` while 24 orgs, bots and API keys are being created
/// in it, several rounds; then nothing may be left under `tenants/race`.
async fn delete_racing_creates_leaves_no_orphan<S: DocumentStore>(store: S) {
    let registry = Arc::new(Registry::new(store, Arc::new(NoopKeys), system_clock()));
    let hasher = Arc::new(KeyHasher::random().unwrap());
    let tenant = TenantId::parse("race").unwrap();
    for round in 0..4 {
        let spec = TenantSpec {
            display_name: "Race".into(),
            ..TenantSpec::default()
        };
        registry
            .create_tenant(&operator(), tenant.clone(), spec)
            .await
            .unwrap();
        let base = Scope::Tenant(tenant.clone());
        registry
            .create_member(Scope::parse("tenant/race/org/base").unwrap(), named("Base"))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..24 {
            let registry = Arc::clone(&registry);
            let hasher = Arc::clone(&hasher);
            tasks.push(tokio::spawn(async move {
                let result = match i % 3 {
                    0 => registry
                        .create_member(
                            Scope::parse(&format!("tenant/race/org/o{i}")).unwrap(),
                            named("Org"),
                        )
                        .await
                        .map(drop),
                    1 => registry
                        .create_member(
                            Scope::parse(&format!("tenant/race/org/base/bot/b{i}")).unwrap(),
                            named("Bot"),
                        )
                        .await
                        .map(drop),
                    _ => registry
                        .create_api_key(
                            &hasher,
                            KeySpec {
                                tenant: Some(TenantId::parse("race").unwrap()),
                                display_name: "k".into(),
                                roles: locksmith_auth::Roles::of([locksmith_auth::Role::Read]),
                                expire_time: None,
                            },
                        )
                        .await
                        .map(drop),
                };
                match result {
                    Ok(()) | Err(RegistryError::NotFound { .. }) => {}
                    Err(e) => panic!("round {round} create {i}: {e:?}"),
                }
            }));
        }
        tokio::task::yield_now().await;
        registry
            .delete_tenant(&operator(), &tenant, None)
            .await
            .unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        let left = registry
            .store()
            .list(Some(&Key::parse(&base.storage_path()).unwrap()), None, 10)
            .await
            .unwrap();
        assert!(left.is_empty(), "round {round}: orphans {left:?}");
        let index = registry
            .store()
            .list(Some(&Key::parse("registry/api-key-ids").unwrap()), None, 10)
            .await
            .unwrap();
        assert!(index.is_empty(), "round {round}: index orphans {index:?}");
    }
}

#[tokio::test]
async fn on_the_embedded_store() {
    delete_racing_creates_leaves_no_orphan(
        EmbeddedStore::in_memory(locksmith_store::system_clock()).unwrap(),
    )
    .await;
}

#[tokio::test]
async fn on_openbao() {
    delete_racing_creates_leaves_no_orphan(crate::store_openbao::fresh_store()).await;
}
