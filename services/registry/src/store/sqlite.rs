//! The embedded backend: one SQLite file. One table; the path column holds
//! the seed-000 style key and orders a tenant's subtree contiguously.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use locksmith_domain::Scope;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{RecordKind, RegistryStore, StoreError, StoredRecord};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    path    TEXT PRIMARY KEY NOT NULL,
    parent  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    body    BLOB NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS records_by_parent ON records (parent, kind, id);
CREATE INDEX IF NOT EXISTS records_by_kind ON records (kind, id);
";

/// The registry on a local SQLite file (WAL, synchronous=FULL: an
/// acknowledged write survives a crash).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(backend)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection off the async runtime.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
    }
}

/// The `kind` column of API key records.
const API_KEY_KIND: &str = "api_key";

impl SqliteStore {
    /// Replaces the row at `path` if it is at `expected_version` (check-and-set).
    async fn replace_row(
        &self,
        path: String,
        expected_version: u64,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            match version_of(&tx, &path)? {
                None => return Err(StoreError::NotFound),
                Some(current) if current != expected_version => {
                    return Err(StoreError::VersionConflict { current });
                }
                Some(_) => {}
            }
            tx.execute(
                "UPDATE records SET version = ?2, body = ?3 WHERE path = ?1",
                params![path, to_i64(expected_version + 1)?, body],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    /// Up to `limit` rows of `kind` directly under `parent_path`, by id.
    async fn list_rows(
        &self,
        parent_path: String,
        kind: &'static str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT version, body FROM records \
                     WHERE parent = ?1 AND kind = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(
                    params![parent_path, kind, after.unwrap_or_default(), limit],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
                )
                .map_err(backend)?;
            rows.map(|row| {
                let (v, body) = row.map_err(backend)?;
                Ok(StoredRecord {
                    version: u64::try_from(v)
                        .map_err(|_| StoreError::Backend("negative version".into()))?,
                    body,
                })
            })
            .collect()
        })
        .await
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend("version out of range".into()))
}

fn version_of(tx: &Connection, path: &str) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = tx
        .query_row("SELECT version FROM records WHERE path = ?1", [path], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend)?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

/// Bounds of the subtree strictly under `path`: every key starting with
/// `path/`. `'0'` is the byte after `'/'`, so `[path/, path0)` is exactly it.
fn subtree(path: &str) -> (String, String) {
    (format!("{path}/"), format!("{path}0"))
}

impl RegistryStore for SqliteStore {
    async fn create(&self, scope: Scope, body: Vec<u8>) -> Result<(), StoreError> {
        let kind =
            RecordKind::of(&scope).ok_or(StoreError::Backend("system is not a record".into()))?;
        let path = scope.storage_path();
        let parent = scope.parent().unwrap_or(Scope::System);
        let parent_path = parent.storage_path();
        let id = scope.leaf_id().to_owned();
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            if parent != Scope::System && version_of(&tx, &parent_path)?.is_none() {
                return Err(StoreError::ParentMissing);
            }
            if version_of(&tx, &path)?.is_some() {
                return Err(StoreError::AlreadyExists);
            }
            tx.execute(
                "INSERT INTO records (path, parent, kind, id, version, body) VALUES (?1, ?2, ?3, ?4, 1, ?5)",
                params![path, parent_path, kind.as_str(), id, body],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn get(&self, scope: Scope) -> Result<Option<StoredRecord>, StoreError> {
        let path = scope.storage_path();
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT version, body FROM records WHERE path = ?1",
                [path],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(backend)?
            .map(|(v, body)| {
                Ok(StoredRecord {
                    version: u64::try_from(v)
                        .map_err(|_| StoreError::Backend("negative version".into()))?,
                    body,
                })
            })
            .transpose()
        })
        .await
    }

    async fn update(
        &self,
        scope: Scope,
        expected_version: u64,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        let path = scope.storage_path();
        self.replace_row(path, expected_version, body).await
    }

    async fn delete(&self, scope: Scope, expected_version: Option<u64>) -> Result<(), StoreError> {
        let path = scope.storage_path();
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            match (version_of(&tx, &path)?, expected_version) {
                (None, _) => return Err(StoreError::NotFound),
                (Some(current), Some(expected)) if current != expected => {
                    return Err(StoreError::VersionConflict { current });
                }
                _ => {}
            }
            let (lo, hi) = subtree(&path);
            tx.execute(
                "DELETE FROM records WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
                params![path, lo, hi],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn list(
        &self,
        parent: Scope,
        kind: RecordKind,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.list_rows(parent.storage_path(), kind.as_str(), after, limit)
            .await
    }

    async fn create_api_key(
        &self,
        path: String,
        key_id: String,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        let parent = path
            .rsplit_once("/api-keys/")
            .map(|(parent, _)| parent.to_owned())
            .ok_or_else(|| StoreError::Backend("not an API key path".into()))?;
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            if parent != "system" && version_of(&tx, &parent)?.is_none() {
                return Err(StoreError::ParentMissing);
            }
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM records WHERE kind = ?1 AND id = ?2",
                    params![API_KEY_KIND, key_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if taken.is_some() {
                return Err(StoreError::AlreadyExists);
            }
            tx.execute(
                "INSERT INTO records (path, parent, kind, id, version, body) VALUES (?1, ?2, ?3, ?4, 1, ?5)",
                params![path, parent, API_KEY_KIND, key_id, body],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn get_api_key(&self, key_id: String) -> Result<Option<StoredRecord>, StoreError> {
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT version, body FROM records WHERE kind = ?1 AND id = ?2",
                params![API_KEY_KIND, key_id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(backend)?
            .map(|(v, body)| {
                Ok(StoredRecord {
                    version: u64::try_from(v)
                        .map_err(|_| StoreError::Backend("negative version".into()))?,
                    body,
                })
            })
            .transpose()
        })
        .await
    }

    async fn update_api_key(
        &self,
        path: String,
        expected_version: u64,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.replace_row(path, expected_version, body).await
    }

    async fn list_api_keys(
        &self,
        owner_path: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.list_rows(owner_path, API_KEY_KIND, after, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[tokio::test]
    async fn create_get_update_with_check_and_set() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .create(scope("tenant/a"), b"v1".to_vec())
            .await
            .unwrap();
        assert!(matches!(
            store.create(scope("tenant/a"), b"again".to_vec()).await,
            Err(StoreError::AlreadyExists)
        ));
        store
            .update(scope("tenant/a"), 1, b"v2".to_vec())
            .await
            .unwrap();
        assert!(matches!(
            store.update(scope("tenant/a"), 1, b"stale".to_vec()).await,
            Err(StoreError::VersionConflict { current: 2 })
        ));
        let got = store.get(scope("tenant/a")).await.unwrap().unwrap();
        assert_eq!((got.version, got.body.as_slice()), (2, b"v2".as_slice()));
    }

    #[tokio::test]
    async fn members_need_their_parent_and_die_with_it() {
        let store = SqliteStore::in_memory().unwrap();
        assert!(matches!(
            store.create(scope("tenant/a/org/o"), vec![]).await,
            Err(StoreError::ParentMissing)
        ));
        store.create(scope("tenant/a"), vec![]).await.unwrap();
        store.create(scope("tenant/ab"), vec![]).await.unwrap();
        store.create(scope("tenant/a/org/o"), vec![]).await.unwrap();
        store
            .create(scope("tenant/a/org/o/bot/b"), vec![])
            .await
            .unwrap();
        store
            .create(scope("tenant/ab/org/o"), vec![])
            .await
            .unwrap();
        store.delete(scope("tenant/a"), Some(1)).await.unwrap();
        assert!(
            store
                .get(scope("tenant/a/org/o/bot/b"))
                .await
                .unwrap()
                .is_none()
        );
        // A tenant whose id merely starts with "a" is untouched.
        assert!(store.get(scope("tenant/ab/org/o")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn lists_children_of_one_kind_in_pages() {
        let store = SqliteStore::in_memory().unwrap();
        store.create(scope("tenant/t"), vec![]).await.unwrap();
        store.create(scope("tenant/t/org/o"), vec![]).await.unwrap();
        for b in ["b3", "b1", "b2"] {
            store
                .create(
                    scope(&format!("tenant/t/org/o/bot/{b}")),
                    b.as_bytes().to_vec(),
                )
                .await
                .unwrap();
        }
        store
            .create(scope("tenant/t/org/o/user/u1"), vec![])
            .await
            .unwrap();
        let bots = RecordKind::Member(locksmith_domain::MemberKind::Bot);
        let page = store
            .list(scope("tenant/t/org/o"), bots, None, 2)
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>(),
            [b"b1", b"b2"]
        );
        let rest = store
            .list(scope("tenant/t/org/o"), bots, Some("b2".into()), 2)
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
    }
}
