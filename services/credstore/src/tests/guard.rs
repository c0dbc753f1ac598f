//! Guards: tenant confinement, roles, the system scope, sealing at rest,
//! shredding, rotation, check-and-set, the catalogue, the audit trail.

use locksmith_crypto::{Owner, Sealed};
use locksmith_errors::{ApiError, ErrorCode};
use locksmith_store::{DocumentStore, Key, StoreError};

use super::*;
use crate::key_ring_path;

fn bot_llm() -> SecretFields {
    fields(&[
        ("provider", "openai"),
        ("model", "gpt-x"),
        ("api-key", "sk-acme-PLAINTEXT"),
    ])
}

async fn raw_body(fx: &Fx, path: &str) -> Vec<u8> {
    fx.raw
        .read(&Key::parse(path).unwrap(), None)
        .await
        .unwrap()
        .body
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn another_tenant_gets_not_found_on_every_operation_and_changes_nothing() {
    let fx = fixture().await;
    let acme = sref(BOT, "llm");
    fx.cs
        .put(&workload("acme"), &acme, &bot_llm(), Cas::CreateOnly)
        .await
        .unwrap();
    let absent = ApiError::from(
        fx.cs
            .get(&workload("acme"), &sref(BOT, "nothing"), None)
            .await
            .unwrap_err(),
    );

    for beta in [tenant("beta", &[Role::Admin]), workload("beta")] {
        let errors = vec![
            fx.cs.get(&beta, &acme, None).await.unwrap_err(),
            fx.cs.get(&beta, &acme, Some(1)).await.unwrap_err(),
            fx.cs
                .put(&beta, &acme, &bot_llm(), Cas::Version(1))
                .await
                .unwrap_err(),
            fx.cs.list(&beta, &acme.scope, None, 10).await.unwrap_err(),
            fx.cs.resolve(&beta, &acme).await.unwrap_err(),
            fx.cs.soft_delete(&beta, &acme, &[]).await.unwrap_err(),
            fx.cs.undelete(&beta, &acme, &[1]).await.unwrap_err(),
            fx.cs.destroy(&beta, &acme, &[1]).await.unwrap_err(),
        ];
        assert_eq!(errors.len(), 8);
        for e in errors {
            assert_eq!(ApiError::from(e), absent);
        }
    }
    let meta = fx
        .raw
        .metadata(&Key::parse(&acme.storage_path()).unwrap())
        .await
        .unwrap();
    assert_eq!(meta.current_version, 1);
    assert!(
        meta.versions
            .iter()
            .all(|v| v.state == locksmith_store::VersionState::Live)
    );
    let still = fx.cs.get(&workload("acme"), &acme, None).await.unwrap();
    assert_eq!(value(&still, "api-key"), "sk-acme-PLAINTEXT");
}

#[tokio::test]
async fn a_read_principal_cannot_write_or_delete() {
    let fx = fixture().await;
    let reader = tenant("acme", &[Role::Read]);
    let secret = sref(BOT, "llm");
    let err = fx
        .cs
        .put(&reader, &secret, &bot_llm(), Cas::CreateOnly)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CredError::PermissionDenied { needs } if needs == "the write role"),
        "{err:?}"
    );
    assert_eq!(ApiError::from(err).code, ErrorCode::PermissionDenied);
    assert!(is_not_found(fx.cs.get(&operator(), &secret, None).await));

    fx.cs
        .put(&workload("acme"), &secret, &bot_llm(), Cas::CreateOnly)
        .await
        .unwrap();
    assert!(matches!(
        fx.cs.soft_delete(&reader, &secret, &[]).await,
        Err(CredError::PermissionDenied { .. })
    ));
    assert_eq!(fx.cs.get(&reader, &secret, None).await.unwrap().version, 1);
}

#[tokio::test]
async fn system_scope_operators_write_services_read_tenants_neither() {
    let fx = fixture().await;
    let email = sref("system", "email");
    for who in [service(), workload("acme"), tenant("acme", &[Role::Admin])] {
        assert!(matches!(
            fx.cs
                .put(&who, &email, &system_email(), Cas::CreateOnly)
                .await,
            Err(CredError::PermissionDenied { .. })
        ));
    }
    assert_eq!(
        fx.cs
            .put(&operator(), &email, &system_email(), Cas::CreateOnly)
            .await
            .unwrap(),
        1
    );
    let read = fx.cs.get(&service(), &email, None).await.unwrap();
    assert_eq!(value(&read, "smtp-password"), "system-pass-1");
    assert!(matches!(
        fx.cs.get(&workload("acme"), &email, None).await,
        Err(CredError::PermissionDenied { .. })
    ));
    assert!(matches!(
        fx.cs
            .list(&tenant("acme", &[Role::Admin]), &Scope::System, None, 5)
            .await,
        Err(CredError::PermissionDenied { .. })
    ));
}

#[tokio::test]
async fn the_stored_document_holds_no_plaintext() {
    let fx = fixture().await;
    let secret = sref(BOT, "llm");
    fx.cs
        .put(&workload("acme"), &secret, &bot_llm(), Cas::CreateOnly)
        .await
        .unwrap();
    let body = raw_body(&fx, "tenants/acme/orgs/sales/bots/helper/llm").await;
    for plain in ["sk-acme-PLAINTEXT", "gpt-x", "openai"] {
        assert!(!contains(&body, plain), "{plain} stored in clear");
    }
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let stored = doc["fields"].as_object().unwrap();
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        ["api-key", "model", "provider"]
    );
    for text in stored.values() {
        assert!(text.as_str().unwrap().starts_with("lsk1:"));
    }
    assert_eq!(
        doc.as_object().unwrap().len(),
        1,
        "no version or plaintext beside fields"
    );
}

#[tokio::test]
async fn a_sealed_document_copied_to_another_path_does_not_decrypt() {
    let fx = fixture().await;
    fx.cs
        .put(
            &workload("acme"),
            &sref(BOT, "llm"),
            &bot_llm(),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let body = raw_body(&fx, "tenants/acme/orgs/sales/bots/helper/llm").await;
    for (scope_s, path) in [
        (
            "tenant/acme/org/sales/bot/other",
            "tenants/acme/orgs/sales/bots/other/llm",
        ),
        (
            "tenant/beta/org/sales/bot/helper",
            "tenants/beta/orgs/sales/bots/helper/llm",
        ),
    ] {
        fx.raw
            .write(&Key::parse(path).unwrap(), body.clone(), Cas::CreateOnly)
            .await
            .unwrap();
        let err = fx
            .cs
            .get(&operator(), &sref(scope_s, "llm"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CredError::Internal(why) if why.contains(path) && why.contains("cannot be decrypted")),
            "{err:?}"
        );
        // Neither the value nor the cause reaches the caller.
        assert_eq!(ApiError::from(err), ApiError::internal());
    }
}

#[tokio::test]
async fn shredding_makes_a_kept_copy_undecryptable_even_under_a_new_key() {
    let fx = fixture().await;
    let secret = sref(BOT, "llm");
    let path = secret.storage_path();
    fx.cs
        .put(&workload("acme"), &secret, &bot_llm(), Cas::CreateOnly)
        .await
        .unwrap();
    let kept = raw_body(&fx, &path).await;
    fx.audit.take();

    fx.cs
        .shred_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    // Idempotent, so a deletion sweep can run it again.
    fx.cs
        .shred_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    let ring_key = Key::parse(&key_ring_path(&Owner::Tenant(tid("acme")))).unwrap();
    assert_eq!(
        fx.raw.metadata(&ring_key).await,
        Err(StoreError::NotFound { deleted: false })
    );
    assert!(is_not_found(fx.cs.get(&operator(), &secret, None).await));
    assert!(is_not_found(fx.cs.resolve(&service(), &secret).await));
    assert!(is_not_found(
        fx.cs.list(&operator(), &secret.scope, None, 5).await
    ));
    assert!(is_not_found(
        fx.cs.put(&operator(), &secret, &bot_llm(), Cas::None).await
    ));
    // beta is untouched.
    fx.cs
        .put(
            &workload("beta"),
            &sref("tenant/beta", "x"),
            &fields(&[("k", "v")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();

    fx.cs
        .provision_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    fx.raw
        .write(&Key::parse(&path).unwrap(), kept, Cas::None)
        .await
        .unwrap();
    for reader in [
        fx.cs.get(&operator(), &secret, None).await,
        fx.replica().get(&operator(), &secret, None).await,
    ] {
        assert!(matches!(reader, Err(CredError::Internal(_))), "{reader:?}");
    }
    let shreds: Vec<_> = fx
        .audit
        .take()
        .into_iter()
        .filter(|e| e.operation == Operation::ShredKey)
        .collect();
    assert_eq!(shreds.len(), 2);
    assert_eq!(shreds[0].resource, "keyrings/tenants/acme");
}

#[tokio::test]
async fn values_sealed_before_and_after_rotation_both_read_on_every_replica() {
    let fx = fixture().await;
    let replica = fx.replica();
    let before = sref(BOT, "llm");
    let after = sref("tenant/acme", "after");
    fx.cs
        .put(&workload("acme"), &before, &bot_llm(), Cas::CreateOnly)
        .await
        .unwrap();
    // The replica caches key version 1 now.
    replica.get(&operator(), &before, None).await.unwrap();

    fx.cs
        .rotate_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    fx.cs
        .put(
            &workload("acme"),
            &after,
            &fields(&[("k", "after-v")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    let version_of = |body: &[u8], field: &str| {
        let doc: serde_json::Value = serde_json::from_slice(body).unwrap();
        Sealed::parse(doc["fields"][field].as_str().unwrap().to_owned())
            .unwrap()
            .key_version()
            .get()
    };
    assert_eq!(
        version_of(&raw_body(&fx, &before.storage_path()).await, "api-key"),
        1
    );
    assert_eq!(
        version_of(&raw_body(&fx, &after.storage_path()).await, "k"),
        2
    );

    for cs in [&fx.cs, &replica] {
        let old = cs.get(&operator(), &before, None).await.unwrap();
        assert_eq!(value(&old, "api-key"), "sk-acme-PLAINTEXT");
        let new = cs.get(&operator(), &after, None).await.unwrap();
        assert_eq!(value(&new, "k"), "after-v");
    }
    assert!(matches!(
        fx.cs
            .rotate_tenant_key(&workload("acme"), &tid("acme"))
            .await,
        Err(CredError::PermissionDenied { .. })
    ));
    assert!(matches!(
        fx.cs.rotate_tenant_key(&operator(), &tid("gamma")).await,
        Err(CredError::NotFound("key"))
    ));
    assert!(matches!(
        fx.cs.provision_tenant_key(&operator(), &tid("acme")).await,
        Err(CredError::AlreadyExists("key"))
    ));
}

#[tokio::test]
async fn a_stale_cas_is_a_conflict_and_writes_nothing() {
    let fx = fixture().await;
    let secret = sref(BOT, "llm");
    let w = workload("acme");
    assert_eq!(
        fx.cs
            .put(&w, &secret, &bot_llm(), Cas::CreateOnly)
            .await
            .unwrap(),
        1
    );
    let v2 = fields(&[("api-key", "second")]);
    assert_eq!(
        fx.cs.put(&w, &secret, &v2, Cas::Version(1)).await.unwrap(),
        2
    );

    let stale = fields(&[("api-key", "stale")]);
    let err = fx
        .cs
        .put(&w, &secret, &stale, Cas::Version(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CredError::VersionConflict { current: 2 }),
        "{err:?}"
    );
    assert_eq!(ApiError::from(err).code, ErrorCode::VersionConflict);
    assert!(matches!(
        fx.cs.put(&w, &secret, &stale, Cas::CreateOnly).await,
        Err(CredError::VersionConflict { current: 2 })
    ));
    let now = fx.cs.get(&w, &secret, None).await.unwrap();
    assert_eq!(
        (now.version, value(&now, "api-key")),
        (2, "second".to_owned())
    );
    let first = fx.cs.get(&w, &secret, Some(1)).await.unwrap();
    assert_eq!(value(&first, "api-key"), "sk-acme-PLAINTEXT");
    assert!(matches!(
        fx.cs.get(&w, &secret, Some(0)).await,
        Err(CredError::InvalidArgument {
            field: "version",
            ..
        })
    ));
}

#[tokio::test]
async fn catalogue_violations_name_the_field_and_write_nothing() {
    let fx = fixture().await;
    let secret = sref(BOT, "email");
    let bad = fields(&[
        ("smtp-port", "abc"),
        ("smtp-password", "pw-PLAINTEXT"),
        ("colour", "red"),
    ]);
    let err = fx
        .cs
        .put(&workload("acme"), &secret, &bad, Cas::CreateOnly)
        .await
        .unwrap_err();
    let api = ApiError::from(err);
    assert_eq!(api.code, ErrorCode::InvalidArgument);
    let named: Vec<&str> = api.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(named, ["fields.colour", "fields.smtp-port"]);
    assert!(!api.detail.contains("abc") && !api.detail.contains("pw-PLAINTEXT"));
    assert_eq!(
        fx.raw
            .metadata(&Key::parse(&secret.storage_path()).unwrap())
            .await,
        Err(StoreError::NotFound { deleted: false })
    );
}

#[tokio::test]
async fn a_tenant_without_a_key_holds_no_secret() {
    let fx = fixture().await;
    let secret = sref("tenant/gamma", "x");
    assert!(is_not_found(
        fx.cs
            .put(
                &operator(),
                &secret,
                &fields(&[("k", "v")]),
                Cas::CreateOnly
            )
            .await
    ));
    assert_eq!(
        fx.raw
            .metadata(&Key::parse("tenants/gamma/x").unwrap())
            .await,
        Err(StoreError::NotFound { deleted: false })
    );
}

#[tokio::test]
async fn every_operation_leaves_one_audit_event_without_the_value() {
    let fx = fixture().await;
    let w = workload("acme");
    let secret = sref(BOT, "llm");
    let beta = workload("beta");
    let steps: Vec<(Operation, Option<ErrorCode>)> = vec![
        (Operation::Put, None),
        (Operation::Get, None),
        (Operation::Get, Some(ErrorCode::NotFound)),
        (Operation::Resolve, None),
        (Operation::List, None),
        (Operation::SoftDelete, None),
        (Operation::Undelete, None),
        (Operation::Destroy, None),
        (Operation::Put, Some(ErrorCode::InvalidArgument)),
        (Operation::RotateKey, None),
        (Operation::Purge, None),
    ];
    let mut trail = Vec::new();
    for i in 0..steps.len() {
        match i {
            0 => {
                let _ = fx.cs.put(&w, &secret, &bot_llm(), Cas::CreateOnly).await;
            }
            1 => {
                let _ = fx.cs.get(&w, &secret, None).await;
            }
            2 => {
                let _ = fx.cs.get(&beta, &secret, None).await;
            }
            3 => {
                let _ = fx.cs.resolve(&service(), &secret).await;
            }
            4 => {
                let _ = fx.cs.list(&w, &secret.scope, None, 5).await;
            }
            5 => {
                let _ = fx.cs.soft_delete(&w, &secret, &[1]).await;
            }
            6 => {
                let _ = fx.cs.undelete(&w, &secret, &[1]).await;
            }
            7 => {
                let _ = fx.cs.destroy(&w, &secret, &[1]).await;
            }
            8 => {
                let bad = fields(&[("nope", "sk-acme-PLAINTEXT")]);
                let _ = fx.cs.put(&w, &secret, &bad, Cas::None).await;
            }
            9 => {
                let _ = fx.cs.rotate_tenant_key(&operator(), &tid("acme")).await;
            }
            _ => {
                let _ = fx.cs.purge(&w, &secret).await;
            }
        }
        let events = fx.audit.take();
        assert_eq!(events.len(), 1, "step {i}: {events:?}");
        trail.extend(events);
    }
    for ((op, failed), event) in steps.iter().zip(&trail) {
        assert_eq!(event.operation, *op);
        let want = failed.map_or(Outcome::Ok, |c| Outcome::Failed(c.to_string()));
        assert_eq!(event.outcome, want, "{event:?}");
        assert_eq!(event.at, at());
    }
    assert_eq!(trail[0].principal, "workload acme/bot-runtime");
    assert_eq!(
        trail[0].resource,
        "tenants/acme/orgs/sales/bots/helper/secrets/llm"
    );
    assert_eq!(trail[0].version, Some(1));
    assert_eq!(trail[2].principal, "workload beta/bot-runtime");
    assert_eq!(trail[3].answered_by.as_deref(), Some(BOT));
    let json = serde_json::to_string(&trail).unwrap();
    for plain in ["sk-acme-PLAINTEXT", "gpt-x", "openai"] {
        assert!(!json.contains(plain), "{plain} in the audit trail");
    }
}
