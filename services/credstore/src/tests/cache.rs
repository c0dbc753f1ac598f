//! The resolve cache through the store: the same answers as without it for
//! every caller, invalidation by writes through this replica, bounded
//! staleness for writes through another, audit of cache hits.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::*;
use crate::CacheConfig;

/// A clock the test moves, in seconds after `at()`.
#[derive(Clone, Default)]
struct Hands(Arc<AtomicI64>);

impl Hands {
    fn clock(&self) -> Clock {
        let hands = self.0.clone();
        Arc::new(move || at() + time::Duration::seconds(hands.load(Ordering::SeqCst)))
    }
    fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

/// A replica over the fixture's documents with a 3 s cache and its own
/// clock and trail.
fn cached(fx: &Fx, hands: &Hands, ttl: Duration) -> (Store, Arc<MemoryAudit>) {
    let wrapper = MasterKeyWrapper::load(fx.dir.path().join("master.key")).unwrap();
    let audit = Arc::new(MemoryAudit::new());
    let cs = CredStore::new(fx.raw.clone(), wrapper, audit.clone(), hands.clock())
        .with_resolve_cache(CacheConfig {
            ttl,
            max_entries: 100,
        });
    (cs, audit)
}

const TTL: Duration = Duration::from_secs(3);

async fn put(cs: &Store, who: &Principal, at: &SecretRef, k: &str, v: &str) -> u64 {
    cs.put(who, at, &fields(&[(k, v)]), Cas::None)
        .await
        .unwrap()
}

/// (answering scope, version, value of `k`), or None for NOT_FOUND.
async fn resolved(cs: &Store, who: &Principal, at: &SecretRef) -> Option<(String, u64, String)> {
    match cs.resolve(who, at).await {
        Ok(s) => Some((
            s.secret_ref.scope.to_string(),
            s.version,
            value(&s, "model"),
        )),
        Err(CredError::NotFound(_)) => None,
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn a_cached_answer_is_the_callers_own_and_authorization_runs_every_time() {
    let fx = fixture().await;
    let hands = Hands::default();
    let (cs, _) = cached(&fx, &hands, TTL);
    let bot = sref(BOT, "llm");
    put(&cs, &operator(), &sref("system", "llm"), "model", "sys-1").await;

    // A service's walk reaches the system scope and is cached…
    let sys = Some(("system".to_owned(), 1, "sys-1".to_owned()));
    assert_eq!(resolved(&cs, &service(), &bot).await, sys);
    assert_eq!(resolved(&cs, &service(), &bot).await, sys);
    // …and a tenant principal resolving the same name is never handed it.
    for who in [workload("acme"), tenant("acme", &[Role::Read])] {
        assert_eq!(resolved(&cs, &who, &bot).await, None);
        assert_eq!(resolved(&cs, &who, &bot).await, None);
    }
    // Another tenant is refused on the cached entry as on storage, and a
    // tenant principal without a role is refused too.
    assert!(is_not_found(cs.resolve(&workload("beta"), &bot).await));
    assert!(matches!(
        cs.resolve(&tenant("acme", &[]), &bot).await,
        Err(CredError::PermissionDenied { .. })
    ));
    assert_eq!(resolved(&cs, &operator(), &bot).await, sys);
}

#[tokio::test]
async fn every_write_through_this_replica_is_seen_at_once() {
    let fx = fixture().await;
    let hands = Hands::default();
    let (cs, _) = cached(&fx, &hands, TTL);
    let w = workload("acme");
    let bot = sref(BOT, "llm");
    let org = sref("tenant/acme/org/sales", "llm");
    let system = sref("system", "llm");
    let svc = service();
    assert_eq!(resolved(&cs, &svc, &bot).await, None);
    assert_eq!(resolved(&cs, &w, &bot).await, None);

    put(&cs, &operator(), &system, "model", "sys-1").await;
    let sys1 = Some(("system".to_owned(), 1, "sys-1".to_owned()));
    assert_eq!(resolved(&cs, &svc, &bot).await, sys1);
    assert_eq!(resolved(&cs, &w, &bot).await, None);

    put(&cs, &w, &org, "model", "org-1").await;
    let org1 = Some(("tenant/acme/org/sales".to_owned(), 1, "org-1".to_owned()));
    assert_eq!(resolved(&cs, &svc, &bot).await, org1);
    assert_eq!(resolved(&cs, &w, &bot).await, org1);

    put(&cs, &w, &bot, "model", "bot-1").await;
    let bot1 = Some((BOT.to_owned(), 1, "bot-1".to_owned()));
    assert_eq!(resolved(&cs, &svc, &bot).await, bot1);
    put(&cs, &w, &bot, "model", "bot-2").await;
    assert_eq!(
        resolved(&cs, &svc, &bot).await,
        Some((BOT.to_owned(), 2, "bot-2".to_owned()))
    );
    // A write at a sibling or child scope changes nothing cached here.
    put(
        &cs,
        &w,
        &sref("tenant/acme/org/sales/bot/other", "llm"),
        "model",
        "x",
    )
    .await;

    cs.soft_delete(&w, &bot, &[]).await.unwrap();
    assert_eq!(resolved(&cs, &svc, &bot).await, None);
    cs.undelete(&w, &bot, &[2]).await.unwrap();
    assert_eq!(
        resolved(&cs, &svc, &bot).await,
        Some((BOT.to_owned(), 2, "bot-2".to_owned()))
    );
    cs.destroy(&w, &bot, &[2]).await.unwrap();
    assert_eq!(resolved(&cs, &svc, &bot).await, None);
    cs.purge(&w, &bot).await.unwrap();
    assert_eq!(resolved(&cs, &svc, &bot).await, org1);
    cs.purge(&w, &org).await.unwrap();
    assert_eq!(resolved(&cs, &svc, &bot).await, sys1);
    put(&cs, &operator(), &system, "model", "sys-2").await;
    assert_eq!(
        resolved(&cs, &svc, &bot).await,
        Some(("system".to_owned(), 2, "sys-2".to_owned()))
    );

    // Shredding drops the tenant's answers: nothing is served from memory.
    put(&cs, &w, &bot, "model", "bot-3").await;
    assert!(resolved(&cs, &svc, &bot).await.is_some());
    cs.shred_tenant_key(&operator(), &tid("acme"))
        .await
        .unwrap();
    assert_eq!(resolved(&cs, &svc, &bot).await, None);
    assert_eq!(cs.cache.len(), 0);
}

#[tokio::test]
async fn another_replicas_write_is_seen_within_the_ttl_and_hits_are_audited() {
    let fx = fixture().await;
    let hands = Hands::default();
    let (cs, audit) = cached(&fx, &hands, TTL);
    let other = fx.replica();
    let bot = sref(BOT, "llm");
    put(&other, &workload("acme"), &bot, "model", "v1").await;
    let v1 = Some((BOT.to_owned(), 1, "v1".to_owned()));
    assert_eq!(resolved(&cs, &service(), &bot).await, v1);

    put(&other, &workload("acme"), &bot, "model", "v2").await;
    hands.advance(2);
    // Still the answer read two seconds ago: proof it came from memory.
    assert_eq!(resolved(&cs, &service(), &bot).await, v1);
    hands.advance(1);
    assert_eq!(
        resolved(&cs, &service(), &bot).await,
        Some((BOT.to_owned(), 2, "v2".to_owned()))
    );

    // One event per resolve, hit or miss, naming the version answered.
    let events = audit.take();
    let resolves: Vec<_> = events
        .iter()
        .filter(|e| e.operation == Operation::Resolve)
        .map(|e| (e.version, e.answered_by.clone(), e.outcome.clone()))
        .collect();
    assert_eq!(
        resolves,
        [
            (Some(1), Some(BOT.to_owned()), Outcome::Ok),
            (Some(1), Some(BOT.to_owned()), Outcome::Ok),
            (Some(2), Some(BOT.to_owned()), Outcome::Ok),
        ]
    );
}

#[tokio::test]
async fn a_zero_ttl_reads_storage_every_time() {
    let fx = fixture().await;
    let hands = Hands::default();
    let (cs, _) = cached(&fx, &hands, Duration::ZERO);
    let other = fx.replica();
    let bot = sref(BOT, "llm");
    put(&other, &workload("acme"), &bot, "model", "v1").await;
    assert_eq!(resolved(&cs, &service(), &bot).await.map(|r| r.1), Some(1));
    put(&other, &workload("acme"), &bot, "model", "v2").await;
    assert_eq!(resolved(&cs, &service(), &bot).await.map(|r| r.1), Some(2));
    assert_eq!(cs.cache.len(), 0);
}
