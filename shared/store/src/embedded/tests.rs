//! What only the embedded backend promises (the shared contract is tested by
//! `conformance/embedded_tests.rs`): time from its clock, seeks not scans, and a file
//! that is private, durable, versioned and free of destroyed bytes.

use std::sync::Mutex;

use time::macros::datetime;

use super::*;
use crate::system_clock;

/// A clock the test moves by hand.
fn manual_clock(start: OffsetDateTime) -> (Clock, Arc<Mutex<OffsetDateTime>>) {
    let now = Arc::new(Mutex::new(start));
    let read = Arc::clone(&now);
    (Arc::new(move || *read.lock().unwrap()), now)
}

fn key(s: &str) -> Key {
    Key::parse(s).unwrap()
}

#[tokio::test]
async fn timestamps_come_from_the_clock() {
    let t1 = datetime!(2030-01-02 03:04:05.123456789 UTC);
    let t2 = datetime!(2030-06-01 00:00:00 UTC);
    let t3 = datetime!(2031-01-01 00:00:00 UTC);
    let (clock, now) = manual_clock(t1);
    let store = EmbeddedStore::in_memory(clock).unwrap();
    let k = key("tenants/t/config");
    assert_eq!(
        store.write(&k, b"one".to_vec(), Cas::CreateOnly).await,
        Ok(1)
    );
    *now.lock().unwrap() = t2;
    assert_eq!(
        store.write(&k, b"two".to_vec(), Cas::Version(1)).await,
        Ok(2)
    );
    *now.lock().unwrap() = t3;
    store.soft_delete(&k, &[1]).await.unwrap();

    let meta = store.metadata(&k).await.unwrap();
    assert_eq!(
        meta,
        Metadata {
            current_version: 2,
            created: t1,
            // A delete is not a write: `updated` stays at the last write.
            updated: t2,
            versions: vec![
                VersionInfo {
                    version: 1,
                    created: t1,
                    state: VersionState::Deleted
                },
                VersionInfo {
                    version: 2,
                    created: t2,
                    state: VersionState::Live
                },
            ],
        }
    );
    let doc = store.read(&k, None).await.unwrap();
    assert_eq!((doc.version, doc.created), (2, t2));
}

#[tokio::test]
async fn a_clock_past_what_the_store_records_is_refused_without_writing() {
    let (clock, _) = manual_clock(datetime!(2300-01-01 00:00:00 UTC));
    let store = EmbeddedStore::in_memory(clock).unwrap();
    let k = key("a");
    assert!(matches!(
        store.write(&k, vec![], Cas::None).await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(
        store.read(&k, None).await,
        Err(StoreError::NotFound { deleted: false })
    );
}

#[test]
fn listing_seeks_the_primary_key_and_never_scans() {
    let store = EmbeddedStore::in_memory(system_clock()).unwrap();
    let conn = store.conn.lock().unwrap();
    for stmt in [list::SEEK_AFTER, list::SEEK_FROM] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {stmt}"))
            .unwrap()
            .query_map(params!["a/", "a0"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(
            plan[0].starts_with("SEARCH documents USING PRIMARY KEY (key>"),
            "{plan:?}"
        );
    }
}

#[tokio::test]
async fn after_may_point_between_or_inside_entries() {
    let store = EmbeddedStore::in_memory(system_clock()).unwrap();
    for k in ["p/a", "p/a-x", "p/a/b", "p/a/c/d", "p/ab/c", "p/b"] {
        store.write(&key(k), vec![], Cas::CreateOnly).await.unwrap();
    }
    let p = key("p");
    let cursors = |after: &'static str| {
        let store = store.clone();
        let p = p.clone();
        async move {
            store
                .list(Some(&p), Some(after), 100)
                .await
                .unwrap()
                .iter()
                .map(Child::cursor)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(cursors("").await, ["a", "a-x", "a/", "ab/", "b"]);
    assert_eq!(cursors("a.").await, ["a/", "ab/", "b"]);
    // Inside the folder `a/`: the folder itself sorts before `a/b`.
    assert_eq!(cursors("a/b").await, ["ab/", "b"]);
    assert_eq!(cursors("a/").await, ["ab/", "b"]);
    assert_eq!(cursors("B").await, ["a", "a-x", "a/", "ab/", "b"]);
    assert_eq!(cursors("b").await, Vec::<String>::new());
    assert_eq!(cursors("~").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_file_store_is_private_in_wal_mode_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/store.db");
    let store = EmbeddedStore::open(&path, system_clock()).unwrap();
    let k = key("tenants/t/config");
    store
        .write(&k, b"kept".to_vec(), Cas::CreateOnly)
        .await
        .unwrap();
    {
        let conn = store.conn.lock().unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        let secure: i64 = conn
            .pragma_query_value(None, "secure_delete", |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync, secure), ("wal", 2, 1));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(store);
    let reopened = EmbeddedStore::open(&path, system_clock()).unwrap();
    let doc = reopened.read(&k, None).await.unwrap();
    assert_eq!((doc.version, doc.body.as_slice()), (1, b"kept".as_slice()));
    reopened.ping().await.unwrap();
}

#[test]
fn a_file_from_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(EmbeddedStore::open(&path, system_clock()).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 2)
        .unwrap();
    assert_eq!(
        EmbeddedStore::open(&path, system_clock()).err(),
        Some(StoreError::Corrupt(
            "schema version 2, this release reads 1".into()
        ))
    );
}

/// Whether `needle` occurs in any file of `dir` (the database, its WAL).
fn bytes_on_disk(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        data.windows(needle.len()).any(|w| w == needle)
    })
}

#[tokio::test]
async fn destroyed_and_deleted_bytes_leave_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.db"), system_clock()).unwrap();
    let (a, b) = (key("tenants/t/secret-a"), key("tenants/t/secret-b"));
    let marker_a = b"MARKER-A-7f3a9c1e-only-in-the-destroyed-version".to_vec();
    let marker_b = b"MARKER-B-2b8d4e6f-only-in-the-erased-key".to_vec();
    store
        .write(&a, marker_a.clone(), Cas::CreateOnly)
        .await
        .unwrap();
    store
        .write(&a, b"replacement".to_vec(), Cas::Version(1))
        .await
        .unwrap();
    store
        .write(&b, marker_b.clone(), Cas::CreateOnly)
        .await
        .unwrap();
    // The markers really reach the files, so their absence below means something.
    assert!(bytes_on_disk(dir.path(), &marker_a));
    assert!(bytes_on_disk(dir.path(), &marker_b));

    store.destroy(&a, &[1]).await.unwrap();
    store.delete_all(&b).await.unwrap();
    assert!(!bytes_on_disk(dir.path(), &marker_a));
    assert!(!bytes_on_disk(dir.path(), &marker_b));
    assert!(bytes_on_disk(dir.path(), b"replacement"));
}

#[tokio::test]
async fn versions_beyond_what_sqlite_stores_are_absent() {
    let store = EmbeddedStore::in_memory(system_clock()).unwrap();
    let k = key("a");
    store.write(&k, vec![], Cas::CreateOnly).await.unwrap();
    assert_eq!(
        store.read(&k, Some(u64::MAX)).await,
        Err(StoreError::NotFound { deleted: false })
    );
    assert_eq!(
        store.write(&k, vec![], Cas::Version(u64::MAX)).await,
        Err(StoreError::Conflict { current: 1 })
    );
    store.soft_delete(&k, &[u64::MAX]).await.unwrap();
    store.destroy(&k, &[u64::MAX]).await.unwrap();
    assert_eq!(store.read(&k, None).await.map(|d| d.version), Ok(1));
}
