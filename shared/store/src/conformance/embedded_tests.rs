//! The embedded backend against the contract, through the public API only,
//! exactly as the OpenBao backend runs it (in the suite's integration
//! binary); and proof that the suite catches a backend that breaks the
//! contract. Unit tests of this crate, so the workspace keeps one
//! integration-test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{
    Cas, Child, Document, DocumentStore, EmbeddedStore, Key, Metadata, StoreError, conformance,
    system_clock,
};

/// The embedded store in memory.
mod in_memory {
    use super::*;

    crate::conformance_tests!(|| async { EmbeddedStore::in_memory(system_clock()).unwrap() });
}

/// The embedded store on a file: WAL, fsync and the file lock in the path.
mod on_disk {
    use super::*;

    crate::conformance_tests!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.db"), system_clock()).unwrap();
        OnDisk(store, dir)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_passes_on_the_embedded_store() {
    let outcome =
        conformance::run_all(|| async { EmbeddedStore::in_memory(system_clock()).unwrap() }).await;
    assert_eq!(outcome, Ok(()));
}

/// A file store that owns its temporary directory, removed when the test
/// drops the store.
struct OnDisk(EmbeddedStore, #[allow(dead_code)] tempfile::TempDir);

/// A backend that ignores check-and-set, the bug the suite exists to catch.
struct IgnoresCas(EmbeddedStore);

/// A backend whose destroy is only a soft delete: bytes come back.
struct DestroyIsSoft(EmbeddedStore);

/// Forwards every method but the ones a faulty backend overrides.
macro_rules! forward {
    ($ty:ident { write: $write:expr, destroy: $destroy:expr }) => {
        impl DocumentStore for $ty {
            async fn read(&self, key: &Key, version: Option<u64>) -> Result<Document, StoreError> {
                self.0.read(key, version).await
            }
            async fn write(&self, key: &Key, body: Vec<u8>, cas: Cas) -> Result<u64, StoreError> {
                let map: fn(Cas) -> Cas = $write;
                self.0.write(key, body, map(cas)).await
            }
            async fn metadata(&self, key: &Key) -> Result<Metadata, StoreError> {
                self.0.metadata(key).await
            }
            async fn list(
                &self,
                prefix: Option<&Key>,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<Child>, StoreError> {
                self.0.list(prefix, after, limit).await
            }
            async fn soft_delete(&self, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
                self.0.soft_delete(key, versions).await
            }
            async fn undelete(&self, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
                self.0.undelete(key, versions).await
            }
            async fn destroy(&self, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
                if $destroy {
                    self.0.soft_delete(key, versions).await
                } else {
                    self.0.destroy(key, versions).await
                }
            }
            async fn delete_all(&self, key: &Key) -> Result<(), StoreError> {
                self.0.delete_all(key).await
            }
            async fn ping(&self) -> Result<(), StoreError> {
                self.0.ping().await
            }
        }
    };
}

forward!(OnDisk {
    write: |cas| cas,
    destroy: false
});
forward!(IgnoresCas {
    write: |_| Cas::None,
    destroy: false
});
forward!(DestroyIsSoft {
    write: |cas| cas,
    destroy: true
});

fn embedded() -> EmbeddedStore {
    EmbeddedStore::in_memory(system_clock()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_store_that_ignores_cas() {
    let failure = conformance::create_only_twice_conflicts(IgnoresCas(embedded()))
        .await
        .unwrap_err();
    assert_eq!(failure.case, "create_only_twice_conflicts");
    assert_eq!(
        failure.detail,
        "second create: got Ok(2), want Err(Conflict { current: 1 })"
    );
    let failure = conformance::concurrent_cas_writers_one_wins(IgnoresCas(embedded()))
        .await
        .unwrap_err();
    assert_eq!(failure.case, "concurrent_cas_writers_one_wins");

    let failures = conformance::run_all(|| async { IgnoresCas(embedded()) })
        .await
        .unwrap_err();
    let cases: Vec<_> = failures.iter().map(|f| f.case).collect();
    assert_eq!(
        cases,
        [
            "create_only_twice_conflicts",
            "stale_cas_conflicts_and_writes_nothing",
            "version_numbers_are_never_reused",
            "soft_delete_undelete_and_destroy",
            "concurrent_cas_writers_one_wins",
        ]
    );
}

#[tokio::test]
async fn the_suite_catches_a_destroy_that_can_be_undone() {
    let failure = conformance::soft_delete_undelete_and_destroy(DestroyIsSoft(embedded()))
        .await
        .unwrap_err();
    // The body is gone from the message (only its length shows); the time varies.
    assert!(
        failure.detail.starts_with(
            "undelete does not bring it back: got Ok(Document { version: 1, created: "
        ),
        "{failure}"
    );
    assert!(
        failure
            .detail
            .ends_with("body_len: 3 }), want Err(NotFound { deleted: true })"),
        "{failure}"
    );
}
