use std::sync::{Arc, Mutex};

use locksmith_auth::Role;
use locksmith_domain::TenantSpec;
use secrecy::ExposeSecret;
use time::macros::datetime;

use super::*;
use crate::registry::Clock;
use locksmith_store::{DocumentStore, EmbeddedStore};

struct Fixture {
    registry: Registry<EmbeddedStore>,
    hasher: KeyHasher,
    now: Arc<Mutex<OffsetDateTime>>,
}

impl Fixture {
    async fn new() -> Self {
        let now = Arc::new(Mutex::new(datetime!(2026-11-23 12:00 UTC)));
        let clock_now = Arc::clone(&now);
        let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
        let registry = Registry::new(
            EmbeddedStore::in_memory(locksmith_store::system_clock()).unwrap(),
            Arc::new(crate::keys::fake::MemoryKeys::default()),
            clock,
        );
        for t in ["acme", "beta"] {
            registry
                .create_tenant(
                    &locksmith_auth::Principal::Operator {
                        subject: "api-key:test".into(),
                    },
                    TenantId::parse(t).unwrap(),
                    TenantSpec {
                        display_name: t.into(),
                        ..TenantSpec::default()
                    },
                )
                .await
                .unwrap();
        }
        Self {
            registry,
            hasher: KeyHasher::random().unwrap(),
            now,
        }
    }

    fn advance(&self, by: Duration) {
        *self.now.lock().unwrap() += by;
    }

    async fn key(
        &self,
        tenant: Option<&str>,
        expire_in: Option<Duration>,
    ) -> (ApiKeyRecord, SecretString) {
        let now = *self.now.lock().unwrap();
        self.registry
            .create_api_key(
                &self.hasher,
                KeySpec {
                    tenant: tenant.map(|t| TenantId::parse(t).unwrap()),
                    display_name: "ci".into(),
                    roles: if tenant.is_some() {
                        Roles::of([Role::Read])
                    } else {
                        Roles::default()
                    },
                    expire_time: expire_in.map(|d| now + d),
                },
            )
            .await
            .unwrap()
    }
}

fn refused(result: Result<Verified, RegistryError>) -> &'static str {
    match result {
        Err(RegistryError::Unauthenticated { log_reason }) => log_reason,
        Err(RegistryError::TenantSuspended) => "suspended",
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_key_verifies_until_revoked() {
    let f = Fixture::new().await;
    let (record, secret) = f.key(Some("acme"), None).await;
    let ok = f.registry.verify_api_key(&f.hasher, &secret).await.unwrap();
    assert_eq!(ok.key.key_id, record.key_id);
    assert_eq!(ok.tenant.unwrap().id.as_str(), "acme");
    // The stored record holds no trace of the key.
    let key = crate::store::api_key_key(record.tenant.as_ref(), &record.key_id).unwrap();
    let stored = f.registry.store.read(&key, None).await.unwrap();
    let text = String::from_utf8(stored.body).unwrap();
    let secret_part = secret.expose_secret().rsplit('_').next().unwrap();
    assert!(!text.contains(secret_part), "{text}");

    f.registry
        .revoke_api_key(Some(&TenantId::parse("acme").unwrap()), &record.key_id)
        .await
        .unwrap();
    assert_eq!(
        refused(f.registry.verify_api_key(&f.hasher, &secret).await),
        "revoked"
    );
}

#[tokio::test]
async fn wrong_secret_unknown_id_and_garbage_are_refused() {
    let f = Fixture::new().await;
    let (record, _) = f.key(Some("acme"), None).await;
    let forged = SecretString::from(format!(
        "lsk_{}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        record.key_id
    ));
    assert_eq!(
        refused(f.registry.verify_api_key(&f.hasher, &forged).await),
        "wrong secret"
    );
    let unknown =
        SecretString::from("lsk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        refused(f.registry.verify_api_key(&f.hasher, &unknown).await),
        "unknown key id"
    );
    let garbage = SecretString::from("Bearer nonsense");
    assert_eq!(
        refused(f.registry.verify_api_key(&f.hasher, &garbage).await),
        "not a Locksmith key"
    );
}

#[tokio::test]
async fn expiry_follows_the_clock() {
    let f = Fixture::new().await;
    let (_, secret) = f.key(Some("acme"), Some(Duration::from_secs(3600))).await;
    assert!(f.registry.verify_api_key(&f.hasher, &secret).await.is_ok());
    f.advance(Duration::from_secs(3600));
    assert_eq!(
        refused(f.registry.verify_api_key(&f.hasher, &secret).await),
        "expired"
    );
}

#[tokio::test]
async fn a_suspended_or_deleted_tenant_refuses_its_keys() {
    let f = Fixture::new().await;
    let (_, secret) = f.key(Some("beta"), None).await;
    let beta = TenantId::parse("beta").unwrap();
    let tenant = f.registry.get_tenant(&beta).await.unwrap();
    f.registry
        .update_tenant(
            &beta,
            tenant.version,
            locksmith_domain::TenantPatch {
                status: Some(TenantStatus::Suspended),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        refused(f.registry.verify_api_key(&f.hasher, &secret).await),
        "suspended"
    );
    let operator = locksmith_auth::Principal::Operator {
        subject: "api-key:test".into(),
    };
    f.registry
        .delete_tenant(&operator, &beta, None)
        .await
        .unwrap();
    // The key went with its tenant.
    assert_eq!(
        refused(f.registry.verify_api_key(&f.hasher, &secret).await),
        "unknown key id"
    );
}

#[tokio::test]
async fn last_used_is_written_at_most_once_per_granularity() {
    let f = Fixture::new().await;
    let (record, secret) = f.key(None, None).await;
    let key = crate::store::api_key_key(None, &record.key_id).unwrap();
    let version = || async { f.registry.store.read(&key, None).await.unwrap().version };
    f.registry.verify_api_key(&f.hasher, &secret).await.unwrap();
    let after_first = version().await;
    assert_eq!(after_first, 2, "the first use is recorded");
    for _ in 0..5 {
        f.registry.verify_api_key(&f.hasher, &secret).await.unwrap();
    }
    assert_eq!(
        version().await,
        after_first,
        "no write within the granularity"
    );
    f.advance(LAST_USED_GRANULARITY);
    f.registry.verify_api_key(&f.hasher, &secret).await.unwrap();
    assert_eq!(version().await, after_first + 1);
}

#[tokio::test]
async fn keys_are_listed_per_owner_and_revoked_only_by_their_owner() {
    let f = Fixture::new().await;
    let acme = TenantId::parse("acme").unwrap();
    let beta = TenantId::parse("beta").unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(f.key(Some("acme"), None).await.0.key_id);
    }
    f.key(Some("beta"), None).await;
    f.key(None, None).await;
    ids.sort();
    let first = f
        .registry
        .list_api_keys(Some(&acme), page_request(Some(&acme), 2, "").unwrap())
        .await
        .unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|k| k.key_id.clone())
            .collect::<Vec<_>>(),
        ids[..2]
    );
    let token = first.next_page_token.unwrap();
    // A token of acme's listing does not page beta's.
    assert!(page_request(Some(&beta), 2, &token).is_err());
    let rest = f
        .registry
        .list_api_keys(Some(&acme), page_request(Some(&acme), 2, &token).unwrap())
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_page_token.is_none());
    let operators = f
        .registry
        .list_api_keys(None, page_request(None, 0, "").unwrap())
        .await
        .unwrap();
    assert_eq!(operators.items.len(), 1);
    // beta cannot revoke acme's key: it is not there for beta.
    assert!(matches!(
        f.registry.revoke_api_key(Some(&beta), &ids[0]).await,
        Err(RegistryError::NotFound { .. })
    ));
}

#[tokio::test]
async fn bad_specs_are_refused_and_nothing_is_written() {
    let f = Fixture::new().await;
    let now = *f.now.lock().unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let base = KeySpec {
        tenant: Some(acme.clone()),
        display_name: "ci".into(),
        roles: Roles::of([Role::Write]),
        expire_time: None,
    };
    for (spec, field) in [
        (
            KeySpec {
                display_name: " ".into(),
                ..base.clone()
            },
            "display_name",
        ),
        (
            KeySpec {
                display_name: "a\u{7}".into(),
                ..base.clone()
            },
            "display_name",
        ),
        (
            KeySpec {
                display_name: "x".repeat(101),
                ..base.clone()
            },
            "display_name",
        ),
        (
            KeySpec {
                roles: Roles::default(),
                ..base.clone()
            },
            "roles",
        ),
        (
            KeySpec {
                tenant: None,
                ..base.clone()
            },
            "roles",
        ),
        (
            KeySpec {
                expire_time: Some(now),
                ..base.clone()
            },
            "expire_time",
        ),
    ] {
        match f.registry.create_api_key(&f.hasher, spec).await {
            Err(RegistryError::Invalid(invalid)) => assert_eq!(invalid.0[0].field, field),
            other => panic!("expected {field} to be refused, got {other:?}"),
        }
    }
    let missing = KeySpec {
        tenant: Some(TenantId::parse("nobody").unwrap()),
        ..base
    };
    assert!(matches!(
        f.registry.create_api_key(&f.hasher, missing).await,
        Err(RegistryError::NotFound { .. })
    ));
    let listed = f
        .registry
        .list_api_keys(Some(&acme), page_request(Some(&acme), 0, "").unwrap())
        .await
        .unwrap();
    assert!(listed.items.is_empty());
}
