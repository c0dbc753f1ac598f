//! Rotation with background re-encryption: under concurrent reads, resolves
//! and check-and-set writes; resumed from its marker; restarted by another
//! rotation; stopped by shredding and by shutdown.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use locksmith_crypto::{KeyVersion, Owner, Sealed};
use locksmith_store::{DocumentStore, Key, StoreError};

use super::*;
use crate::{CacheConfig, SweepReport, reencryption_marker_path, secret::oldest_key_version};

fn acme() -> Owner {
    Owner::Tenant(tid("acme"))
}

/// Every secret of acme the tests write: scope, name.
fn acme_secrets(count: usize) -> Vec<SecretRef> {
    let scopes = [
        "tenant/acme",
        "tenant/acme/org/sales",
        "tenant/acme/org/sales/bot/helper",
        "tenant/acme/org/sales/bot/other",
        "tenant/acme/org/ops/user/ann",
    ];
    (0..count)
        .map(|i| sref(scopes[i % scopes.len()], &format!("app/s{i:03}")))
        .collect()
}

async fn seed(cs: &Store, secrets: &[SecretRef]) {
    for (i, s) in secrets.iter().enumerate() {
        cs.put(
            &workload("acme"),
            s,
            &fields(&[("token", &format!("seed-{i}")), ("user", "u")]),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    }
}

/// The oldest key version any field of the stored latest version is
/// sealed with, read from the raw document (never decrypted here).
async fn sealed_with(fx: &Fx, s: &SecretRef) -> u32 {
    let path = s.storage_path();
    let doc = fx
        .raw
        .read(&Key::parse(&path).unwrap(), None)
        .await
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
    let versions: Vec<u32> = parsed["fields"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| {
            Sealed::parse(t.as_str().unwrap().to_owned())
                .unwrap()
                .key_version()
                .get()
        })
        .collect();
    assert!(!versions.is_empty());
    assert_eq!(
        oldest_key_version(&path, &doc.body)
            .unwrap()
            .map(KeyVersion::get),
        versions.iter().min().copied()
    );
    *versions.iter().min().unwrap()
}

async fn marker(fx: &Fx, owner: &Owner) -> Option<serde_json::Value> {
    let key = Key::parse(&reencryption_marker_path(owner)).unwrap();
    match fx.raw.read(&key, None).await {
        Ok(doc) => Some(serde_json::from_slice(&doc.body).unwrap()),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_reencrypts_everything_while_reads_and_writes_go_on() {
    let fx = fixture().await;
    // The cache on, so the test also shows rewrites invalidate it.
    let cs = Arc::new(
        CredStore::new(
            fx.raw.clone(),
            MasterKeyWrapper::load(fx.dir.path().join("master.key")).unwrap(),
            fx.audit.clone(),
            fx.clock.clone(),
        )
        .with_resolve_cache(CacheConfig {
            ttl: Duration::from_secs(60),
            max_entries: 1000,
        }),
    );
    let secrets = acme_secrets(150);
    seed(&cs, &secrets).await;
    let beta = sref("tenant/beta", "app/untouched");
    cs.put(
        &workload("beta"),
        &beta,
        &fields(&[("token", "b")]),
        Cas::CreateOnly,
    )
    .await
    .unwrap();
    let system = sref("system", "llm");
    cs.put(
        &operator(),
        &system,
        &fields(&[("model", "m")]),
        Cas::CreateOnly,
    )
    .await
    .unwrap();
    // Another service's record under the tenant: not a secret, not touched.
    let record = Key::parse("tenants/acme/config").unwrap();
    fx.raw
        .write(
            &record,
            br#"{"display_name":"Acme"}"#.to_vec(),
            Cas::CreateOnly,
        )
        .await
        .unwrap();
    // A soft-deleted latest version cannot be read, so it is left alone.
    let deleted = sref("tenant/acme", "app/deleted");
    cs.put(
        &workload("acme"),
        &deleted,
        &fields(&[("token", "d")]),
        Cas::CreateOnly,
    )
    .await
    .unwrap();
    cs.soft_delete(&workload("acme"), &deleted, &[])
        .await
        .unwrap();
    fx.audit.take();

    let key_version = cs
        .rotate_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    assert_eq!(key_version.get(), 2);
    // The sweep's marker is down before the key version is used.
    assert_eq!(
        marker(&fx, &acme()).await,
        Some(serde_json::json!({"target": 2, "after": null}))
    );

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    // Writers: each owns every fourth secret, writes with check-and-set on
    // the version it read, retries on conflict, remembers its last value.
    for w in 0..4usize {
        let (cs, done, conflicts) = (cs.clone(), done.clone(), conflicts.clone());
        let mine: Vec<SecretRef> = secrets.iter().skip(w).step_by(4).cloned().collect();
        load.push(tokio::spawn(async move {
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            let mut i = 0u64;
            while !done.load(Ordering::SeqCst) || i < 40 {
                let s = &mine[(i as usize) % mine.len()];
                let value = format!("w{w}-{i}");
                loop {
                    let read = cs.get(&workload("acme"), s, None).await.unwrap();
                    let new = fields(&[("token", &value), ("user", "u")]);
                    match cs
                        .put(&workload("acme"), s, &new, Cas::Version(read.version))
                        .await
                    {
                        Ok(_) => break,
                        Err(CredError::VersionConflict { .. }) => {
                            conflicts.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("write {}: {e:?}", s.resource_name()),
                    }
                }
                last.insert(s.resource_name(), value);
                i += 1;
            }
            last
        }));
    }
    // Readers: get and resolve everything, values must be whole and ours.
    let mut readers = Vec::new();
    for r in 0..4usize {
        let (cs, done, secrets) = (cs.clone(), done.clone(), secrets.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) || reads < 200 {
                let s = &secrets[(reads as usize * 7 + r) % secrets.len()];
                let got = if reads.is_multiple_of(2) {
                    cs.get(&tenant("acme", &[Role::Read]), s, None).await
                } else {
                    cs.resolve(&service(), s).await
                };
                let got = got.unwrap_or_else(|e| panic!("read {}: {e:?}", s.resource_name()));
                assert_eq!(got.secret_ref, *s);
                let token = value(&got, "token");
                assert!(
                    token.starts_with("seed-") || token.starts_with('w'),
                    "{token}"
                );
                assert_eq!(value(&got, "user"), "u");
                reads += 1;
            }
            reads
        }));
    }

    let report: SweepReport = tokio::spawn({
        let cs = cs.clone();
        async move { cs.reencrypt(&acme()).await }
    })
    .await
    .unwrap()
    .unwrap();
    done.store(true, Ordering::SeqCst);
    let mut last_written = BTreeMap::new();
    for task in load {
        last_written.extend(task.await.unwrap());
    }
    for task in readers {
        assert!(task.await.unwrap() >= 200);
    }

    assert_eq!(report.key_version, 2);
    assert!(!report.stopped);
    // Every acme secret was looked at; the deleted one was left.
    assert_eq!(report.examined, 151, "{report:?}");
    assert!(report.left >= 1, "{report:?}");
    assert!(report.rewritten >= 1, "{report:?}");

    // Afterwards: every latest version opens, holds the last value written,
    // and is sealed with the newest key version.
    for (i, s) in secrets.iter().enumerate() {
        assert_eq!(sealed_with(&fx, s).await, 2, "{}", s.resource_name());
        let got = cs.get(&operator(), s, None).await.unwrap();
        let want = last_written
            .get(&s.resource_name())
            .cloned()
            .unwrap_or_else(|| format!("seed-{i}"));
        assert_eq!(value(&got, "token"), want, "{}", s.resource_name());
        // The cache agrees with storage.
        let resolved = cs.resolve(&service(), s).await.unwrap();
        assert_eq!(resolved.version, got.version);
    }
    // Other owners and other records are untouched.
    assert_eq!(sealed_with(&fx, &beta).await, 1);
    assert_eq!(sealed_with(&fx, &system).await, 1);
    assert_eq!(fx.raw.metadata(&record).await.unwrap().current_version, 1);
    assert_eq!(marker(&fx, &acme()).await, None);
    // One audit event per rewrite attempt, by the store itself.
    let rewrites: Vec<_> = fx
        .audit
        .take()
        .into_iter()
        .filter(|e| e.operation == Operation::Reencrypt)
        .collect();
    assert_eq!(
        rewrites.len() as u64,
        report.rewritten + report.conflicts,
        "{report:?}"
    );
    assert!(rewrites.iter().all(|e| e.principal == "service credstore"));
    let json = serde_json::to_string(&rewrites).unwrap();
    assert!(!json.contains("seed-") && !json.contains("\"w0-"));
    eprintln!(
        "sweep {report:?}; writer conflicts {}",
        conflicts.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_sweep_resumes_from_its_marker_and_a_new_replica_finishes_it() {
    let fx = fixture().await;
    let secrets = acme_secrets(150);
    seed(&fx.cs, &secrets).await;
    fx.cs
        .rotate_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    // As if a sweep had saved its progress halfway and the process died.
    let mut paths: Vec<String> = secrets.iter().map(SecretRef::storage_path).collect();
    paths.sort();
    let key = Key::parse(&reencryption_marker_path(&acme())).unwrap();
    fx.raw
        .write(
            &key,
            serde_json::to_vec(&serde_json::json!({"target": 2, "after": paths[99]})).unwrap(),
            Cas::None,
        )
        .await
        .unwrap();

    let replica = Arc::new(fx.replica());
    assert_eq!(replica.resume_reencryption().await.unwrap(), 1);
    for _ in 0..500 {
        if !replica.reencrypting(&acme()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!replica.reencrypting(&acme()));
    // Only what came after the cursor was swept: it was honoured.
    let mut by_path: BTreeMap<String, u32> = BTreeMap::new();
    for s in &secrets {
        by_path.insert(s.storage_path(), sealed_with(&fx, s).await);
    }
    let swept: Vec<u32> = by_path.values().copied().collect();
    assert_eq!(&swept[..100], &[1; 100][..]);
    assert_eq!(&swept[100..], &[2; 50][..]);
    assert_eq!(marker(&fx, &acme()).await, None);

    // Sweeping again (a later rotation to the same version would) finishes it.
    let report = replica.reencrypt(&acme()).await.unwrap();
    assert_eq!((report.examined, report.rewritten), (150, 100));
    for s in &secrets {
        assert_eq!(sealed_with(&fx, s).await, 2);
    }
    // Nothing is pending any more.
    assert_eq!(replica.resume_reencryption().await.unwrap(), 0);
}

#[tokio::test]
async fn a_second_rotation_before_the_sweep_seals_everything_with_the_newest() {
    let fx = fixture().await;
    let secrets = acme_secrets(10);
    seed(&fx.cs, &secrets).await;
    fx.cs
        .rotate_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    let s0 = &secrets[0];
    fx.cs
        .put(
            &workload("acme"),
            s0,
            &fields(&[("token", "v2")]),
            Cas::None,
        )
        .await
        .unwrap();
    assert_eq!(sealed_with(&fx, s0).await, 2);
    let v3 = fx
        .cs
        .rotate_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    assert_eq!(v3.get(), 3);
    let report = fx.cs.reencrypt(&acme()).await.unwrap();
    assert_eq!(
        (report.key_version, report.examined, report.rewritten),
        (3, 10, 10)
    );
    for s in &secrets {
        assert_eq!(sealed_with(&fx, s).await, 3);
    }
    let got = fx.cs.get(&operator(), s0, None).await.unwrap();
    assert_eq!((got.version, value(&got, "token")), (3, "v2".to_owned()));
    // Nothing left to do: a second sweep only reads.
    let again = fx.cs.reencrypt(&acme()).await.unwrap();
    assert_eq!((again.examined, again.rewritten), (10, 0));
}

#[tokio::test]
async fn shredding_ends_a_pending_sweep_and_shutdown_stops_one() {
    let fx = fixture().await;
    let secrets = acme_secrets(5);
    seed(&fx.cs, &secrets).await;
    fx.cs
        .rotate_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    fx.cs.rotate_system_key(&operator()).await.unwrap();

    // Shutdown first: the sweep stops before any document, marker kept.
    let cs = Arc::new(fx.replica());
    cs.stop_reencryption().await;
    let report = cs.reencrypt(&Owner::System).await.unwrap();
    assert!(report.stopped);
    assert_eq!(report.examined, 0);
    assert_eq!(
        marker(&fx, &Owner::System).await,
        Some(serde_json::json!({"target": 2, "after": null}))
    );
    // A stopped store starts no more sweeps.
    cs.spawn_reencryption(acme());
    assert!(!cs.reencrypting(&acme()));

    fx.cs
        .shred_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    assert_eq!(marker(&fx, &acme()).await, None);
    // As if a sweep had saved its cursor just after the shred: the next
    // sweep finds no key and leaves no marker behind.
    fx.raw
        .write(
            &Key::parse(&reencryption_marker_path(&acme())).unwrap(),
            br#"{"target":2,"after":"tenants/acme/app/s000"}"#.to_vec(),
            Cas::None,
        )
        .await
        .unwrap();
    let report = fx.cs.reencrypt(&acme()).await.unwrap();
    assert_eq!((report.key_version, report.examined), (0, 0));
    assert_eq!(marker(&fx, &acme()).await, None);
    assert!(matches!(
        fx.cs.rotate_tenant_key(&operator(), &tid("acme")).await,
        Err(CredError::NotFound("key"))
    ));
}
