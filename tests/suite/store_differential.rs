//! The embedded and the OpenBao store side by side: the same operations on
//! edge cases the conformance suite leaves open must answer alike (times
//! aside), and where KV v2 differs by design the difference is pinned here.

use std::fmt::Debug;

use locksmith_store::{Cas, DocumentStore, EmbeddedStore, Key, system_clock};

use crate::store_openbao::fresh_store;

fn k(s: &str) -> Key {
    Key::parse(s).unwrap()
}

/// Every outcome of a fixed script, as text without timestamps.
async fn transcript<S: DocumentStore>(store: &S) -> Vec<String> {
    let mut out = Vec::new();
    let mut rec = |label: &str, outcome: &dyn Debug| out.push(format!("{label}: {outcome:?}"));
    let (b, c, t) = (k("t/b"), k("t/c"), k("t"));

    rec("b v1", &store.write(&b, b"1".to_vec(), Cas::None).await);
    rec("destroy b1", &store.destroy(&b, &[1]).await);
    rec(
        "delete a destroyed latest",
        &store.soft_delete(&b, &[]).await,
    );
    let states = store.metadata(&b).await.map(|m| {
        m.versions
            .iter()
            .map(|v| (v.version, v.state))
            .collect::<Vec<_>>()
    });
    rec("stays destroyed", &states);
    rec("undelete destroyed", &store.undelete(&b, &[1]).await);
    rec("read b", &store.read(&b, None).await.map(|d| d.version));
    for name in ["a", "a/x", "a-y", "b/z", "c"] {
        let key = k(&format!("t/{name}"));
        rec(
            name,
            &store.write(&key, b"x".to_vec(), Cas::CreateOnly).await,
        );
    }
    // Cursors that are not entries: empty, between, inside, before, past.
    for after in ["", "a", "a/", "a0", "a-", "b/", "b/z", "zzz", "A", "~"] {
        let page = store.list(Some(&t), Some(after), 100).await;
        rec(&format!("after {after:?}"), &page);
    }
    rec("huge page", &store.list(Some(&t), None, 100_000).await);
    rec("under a document", &store.list(Some(&c), None, 10).await);
    let deep = store.read(&k("t/a/x/y"), None).await.map(|d| d.version);
    rec("below a document", &deep);
    // Versions past what KV can number exist nowhere.
    let huge = u64::MAX;
    rec(
        "cas huge",
        &store.write(&c, b"x".to_vec(), Cas::Version(huge)).await,
    );
    rec(
        "read huge",
        &store.read(&c, Some(huge)).await.map(|d| d.version),
    );
    rec(
        "read 2^40",
        &store.read(&c, Some(1 << 40)).await.map(|d| d.version),
    );
    rec("delete huge", &store.soft_delete(&c, &[huge]).await);
    rec("undelete huge", &store.undelete(&c, &[huge, 1]).await);
    rec("destroy huge", &store.destroy(&c, &[huge]).await);
    rec(
        "c untouched",
        &store.read(&c, None).await.map(|d| (d.version, d.body)),
    );
    rec("delete_all", &store.delete_all(&k("t/a")).await);
    rec("after delete_all", &store.list(Some(&t), None, 100).await);
    out
}

#[tokio::test]
async fn both_backends_answer_edge_cases_alike() {
    let embedded = transcript(&EmbeddedStore::in_memory(system_clock()).unwrap()).await;
    let openbao = transcript(&fresh_store()).await;
    assert_eq!((embedded.len(), openbao.len()), (33, 33));
    for (e, o) in embedded.iter().zip(&openbao) {
        assert_eq!(e, o, "embedded (left) and OpenBao (right) differ");
    }
    assert!(
        embedded
            .iter()
            .any(|l| l.starts_with("cas huge: Err(Conflict { current: 1 })"))
    );
}

/// KV keeps `max_versions` versions per key (10 by default) and forgets
/// older ones; the embedded store keeps every version. `Metadata` documents
/// this; a reader of an old version must expect `NotFound { deleted: false }`.
#[tokio::test]
async fn kv_forgets_versions_past_max_versions_the_embedded_store_keeps_them() {
    let embedded = EmbeddedStore::in_memory(system_clock()).unwrap();
    let openbao = fresh_store();
    let key = k("t/many");
    for v in 1..=11u8 {
        assert_eq!(
            embedded.write(&key, vec![v], Cas::None).await,
            Ok(u64::from(v))
        );
        assert_eq!(
            openbao.write(&key, vec![v], Cas::None).await,
            Ok(u64::from(v))
        );
    }
    let kept =
        |m: locksmith_store::Metadata| m.versions.iter().map(|v| v.version).collect::<Vec<_>>();
    assert_eq!(
        kept(embedded.metadata(&key).await.unwrap()),
        (1..=11).collect::<Vec<_>>()
    );
    assert_eq!(
        kept(openbao.metadata(&key).await.unwrap()),
        (2..=11).collect::<Vec<_>>()
    );
    assert_eq!(
        embedded.read(&key, Some(1)).await.map(|d| d.body),
        Ok(vec![1])
    );
    assert_eq!(
        openbao.read(&key, Some(1)).await,
        Err(locksmith_store::StoreError::NotFound { deleted: false })
    );
}
