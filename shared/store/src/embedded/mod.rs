//! The embedded backend: one SQLite file.
//!
//! Two tables mirror KV v2's layout: `documents` is the metadata (one row per
//! key: current version, created, updated), `versions` holds each version's
//! bytes (NULL once destroyed) and its soft-delete time. `documents` is a
//! WITHOUT ROWID table clustered on `key`, so listing one level is a series
//! of primary-key seeks (see `list.rs`), never a scan of the table.

mod list;

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use time::OffsetDateTime;

use crate::{
    Cas, Child, Clock, Document, DocumentStore, Key, Metadata, StoreError, VersionInfo,
    VersionState, check,
};

/// `PRAGMA user_version` of the schema below; a file with another one was
/// written by a different release and is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    key             TEXT PRIMARY KEY NOT NULL,
    current_version INTEGER NOT NULL CHECK (current_version >= 1),
    created         INTEGER NOT NULL,
    updated         INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    key        TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    body       BLOB,
    deleted_at INTEGER,
    created    INTEGER NOT NULL,
    PRIMARY KEY (key, version)
) STRICT;
";

/// How long a writer waits for another connection's lock (another process on
/// the same file) before answering [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Documents in a local SQLite file: WAL with `synchronous=FULL` (an
/// acknowledged write survives a power cut) and `secure_delete` (destroyed
/// bytes are overwritten, not left in free pages). Every operation is one
/// transaction on one connection, run off the async runtime.
#[derive(Clone)]
pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
    clock: Clock,
}

impl EmbeddedStore {
    /// Opens (creating if needed, mode 0600 on Unix) the database at `path`.
    pub fn open(path: &Path, clock: Clock) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
        }
        create_private_file(path)?;
        let conn = Connection::open(path).map_err(sql)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(sql)?;
        // Some filesystems cannot host WAL and SQLite silently keeps the old mode.
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{}: journal_mode is {mode}, not wal",
                path.display()
            )));
        }
        Self::init(conn, clock)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory(clock: Clock) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(sql)?, clock)
    }

    fn init(mut conn: Connection, clock: Clock) -> Result<Self, StoreError> {
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        match found {
            0 => {
                tx.execute_batch(SCHEMA).map_err(sql)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(sql)?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(StoreError::Corrupt(format!(
                    "schema version {other}, this release reads {SCHEMA_VERSION}"
                )));
            }
        }
        tx.commit().map_err(sql)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            clock,
        })
    }

    /// Runs `f` on the connection off the async runtime.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Clock) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let clock = Arc::clone(&self.clock);
        tokio::task::spawn_blocking(move || {
            // A panic inside an earlier closure dropped its transaction, which
            // rolled back: the connection is consistent, so keep using it.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard, &clock)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }

    /// Runs `f` in an IMMEDIATE transaction (the write lock up front, so two
    /// writers never both read a version and then race to bump it).
    async fn write_tx<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &Clock) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_conn(move |conn, clock| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let out = f(&tx, clock)?;
            tx.commit().map_err(sql)?;
            Ok(out)
        })
        .await
    }

    /// Applies `mark` to every listed version of `key` that exists, in one
    /// transaction.
    async fn mark(&self, key: &Key, versions: &[u64], mark: Mark) -> Result<(), StoreError> {
        let key = key.as_str().to_owned();
        // Versions past i64 cannot exist here; skipping them is what "absent" means.
        let versions: Vec<i64> = versions
            .iter()
            .filter_map(|v| i64::try_from(*v).ok())
            .collect();
        self.with_conn(move |conn, clock| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            {
                let mut stmt = tx.prepare(mark.sql()).map_err(sql)?;
                let now = nanos(clock())?;
                for v in versions {
                    match mark {
                        Mark::SoftDelete => stmt.execute(params![key, v, now]),
                        Mark::Undelete | Mark::Destroy => stmt.execute(params![key, v]),
                    }
                    .map_err(sql)?;
                }
            }
            tx.commit().map_err(sql)?;
            if mark == Mark::Destroy {
                purge_wal(conn);
            }
            Ok(())
        })
        .await
    }
}

/// A per-version state change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    SoftDelete,
    Undelete,
    Destroy,
}

impl Mark {
    /// The statement for one version: `?1` key, `?2` version and, for a soft
    /// delete only, `?3` the time.
    /// Destroyed rows are never touched again: nothing brings them back.
    fn sql(self) -> &'static str {
        match self {
            Mark::SoftDelete => {
                "UPDATE versions SET deleted_at = ?3 \
                 WHERE key = ?1 AND version = ?2 AND body IS NOT NULL AND deleted_at IS NULL"
            }
            Mark::Undelete => {
                "UPDATE versions SET deleted_at = NULL \
                 WHERE key = ?1 AND version = ?2 AND body IS NOT NULL"
            }
            Mark::Destroy => {
                "UPDATE versions SET body = NULL \
                 WHERE key = ?1 AND version = ?2 AND body IS NOT NULL"
            }
        }
    }
}

/// Creates `path` readable by its owner only, if it does not exist yet: it
/// holds (encrypted) credentials and their metadata. SQLite gives its `-wal`
/// and `-shm` files the same mode.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| io_error(path, &e))?;
    Ok(())
}

fn io_error(path: &Path, e: &std::io::Error) -> StoreError {
    let msg = format!("{}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            StoreError::PermissionDenied(msg)
        }
        _ => StoreError::Unavailable(msg),
    }
}

/// Moves every WAL frame into the database and truncates the WAL, so the
/// page images that still held destroyed bytes leave the disk now rather than
/// at the next automatic checkpoint. Best effort: a reader in another process
/// can hold frames back, and the write itself has committed already.
fn purge_wal(conn: &Connection) {
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(0) => {}
        Ok(_) => tracing::warn!("WAL checkpoint after destroy was blocked by a reader"),
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint after destroy failed"),
    }
}

/// Classifies an SQLite error by what a caller can do about it.
fn sql(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    let msg = e.to_string();
    let rusqlite::Error::SqliteFailure(failure, _) = &e else {
        // Conversion and API errors: a row not of the shape we wrote.
        return StoreError::Corrupt(msg);
    };
    match failure.code {
        C::DatabaseBusy
        | C::DatabaseLocked
        | C::SystemIoFailure
        | C::DiskFull
        | C::CannotOpen
        | C::FileLockingProtocolFailed
        | C::OutOfMemory
        | C::OperationInterrupted
        | C::SchemaChanged => StoreError::Unavailable(msg),
        C::PermissionDenied | C::ReadOnly | C::AuthorizationForStatementDenied => {
            StoreError::PermissionDenied(msg)
        }
        C::TooBig => StoreError::Invalid(msg),
        _ => StoreError::Corrupt(msg),
    }
}

fn nanos(t: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| StoreError::Corrupt("the clock reads a time past 2262".into()))
}

fn time_at(n: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .map_err(|_| StoreError::Corrupt(format!("stored time {n} is out of range")))
}

fn version_from(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("stored version {v} is negative")))
}

fn version_to(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("version {v} is out of range")))
}

fn current_version(tx: &Connection, key: &str) -> Result<Option<u64>, StoreError> {
    tx.query_row(
        "SELECT current_version FROM documents WHERE key = ?1",
        [key],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map_err(sql)?
    .map(version_from)
    .transpose()
}

/// A `versions` row's state: destroyed wins over deleted.
fn state_of(destroyed: bool, deleted_at: Option<i64>) -> VersionState {
    match (destroyed, deleted_at) {
        (true, _) => VersionState::Destroyed,
        (false, Some(_)) => VersionState::Deleted,
        (false, None) => VersionState::Live,
    }
}

impl DocumentStore for EmbeddedStore {
    async fn read(&self, key: &Key, version: Option<u64>) -> Result<Document, StoreError> {
        let wanted = match version {
            Some(v) => {
                check::version(v)?;
                match i64::try_from(v) {
                    Ok(v) => Some(v),
                    Err(_) => return Err(StoreError::NotFound { deleted: false }),
                }
            }
            None => None,
        };
        let key = key.as_str().to_owned();
        self.with_conn(move |conn, _| {
            // One statement, so the current version and its row are read together.
            type Row = (Option<i64>, Option<Vec<u8>>, Option<i64>, Option<i64>);
            let row: Option<Row> = conn
                .query_row(
                    "SELECT v.version, v.body, v.deleted_at, v.created \
                     FROM documents d LEFT JOIN versions v \
                       ON v.key = d.key AND v.version = COALESCE(?2, d.current_version) \
                     WHERE d.key = ?1",
                    params![key, wanted],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(sql)?;
            match row {
                None | Some((None, ..)) => Err(StoreError::NotFound { deleted: false }),
                Some((Some(version), Some(body), None, Some(created))) => Ok(Document {
                    version: version_from(version)?,
                    created: time_at(created)?,
                    body,
                }),
                Some((Some(_), _, _, Some(_))) => Err(StoreError::NotFound { deleted: true }),
                Some((Some(_), _, _, None)) => {
                    Err(StoreError::Corrupt("version row without a time".into()))
                }
            }
        })
        .await
    }

    async fn write(&self, key: &Key, body: Vec<u8>, cas: Cas) -> Result<u64, StoreError> {
        check::body(&body)?;
        let key = key.as_str().to_owned();
        self.write_tx(move |tx, clock| {
            let current = current_version(tx, &key)?;
            let found = current.unwrap_or(0);
            let allowed = match cas {
                Cas::CreateOnly => current.is_none(),
                Cas::Version(expected) => expected == found,
                Cas::None => true,
            };
            if !allowed {
                return Err(StoreError::Conflict { current: found });
            }
            let next = found
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt("version counter exhausted".into()))?;
            let now = nanos(clock())?;
            tx.execute(
                "INSERT INTO documents (key, current_version, created, updated) \
                 VALUES (?1, ?2, ?3, ?3) \
                 ON CONFLICT (key) DO UPDATE SET \
                   current_version = excluded.current_version, updated = excluded.updated",
                params![key, version_to(next)?, now],
            )
            .map_err(sql)?;
            tx.execute(
                "INSERT INTO versions (key, version, body, deleted_at, created) \
                 VALUES (?1, ?2, ?3, NULL, ?4)",
                params![key, version_to(next)?, body, now],
            )
            .map_err(sql)?;
            Ok(next)
        })
        .await
    }

    async fn metadata(&self, key: &Key) -> Result<Metadata, StoreError> {
        let key = key.as_str().to_owned();
        self.with_conn(move |conn, _| {
            // A read transaction: the document row and its versions from one snapshot.
            let tx = conn.transaction().map_err(sql)?;
            let Some((current, created, updated)) = tx
                .query_row(
                    "SELECT current_version, created, updated FROM documents WHERE key = ?1",
                    [&key],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()
                .map_err(sql)?
            else {
                return Err(StoreError::NotFound { deleted: false });
            };
            let mut stmt = tx
                .prepare(
                    "SELECT version, body IS NULL, deleted_at, created FROM versions \
                     WHERE key = ?1 ORDER BY version",
                )
                .map_err(sql)?;
            let versions = stmt
                .query_map([&key], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, bool>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(sql)?
                .map(|row| {
                    let (version, destroyed, deleted_at, created) = row.map_err(sql)?;
                    Ok(VersionInfo {
                        version: version_from(version)?,
                        created: time_at(created)?,
                        state: state_of(destroyed, deleted_at),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Metadata {
                current_version: version_from(current)?,
                created: time_at(created)?,
                updated: time_at(updated)?,
                versions,
            })
        })
        .await
    }

    async fn list(
        &self,
        prefix: Option<&Key>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Child>, StoreError> {
        check::limit(limit)?;
        let prefix = prefix.map(|p| p.as_str().to_owned());
        let after = after.map(str::to_owned);
        self.with_conn(move |conn, _| {
            let tx = conn.transaction().map_err(sql)?;
            list::children(&tx, prefix.as_deref(), after.as_deref(), limit)
        })
        .await
    }

    async fn soft_delete(&self, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
        check::versions(versions, false)?;
        if versions.is_empty() {
            let key = key.as_str().to_owned();
            // The current version, read under the same write lock that marks it.
            return self
                .write_tx(move |tx, clock| {
                    tx.execute(
                        "UPDATE versions SET deleted_at = ?2 \
                         WHERE key = ?1 AND body IS NOT NULL AND deleted_at IS NULL \
                           AND version = (SELECT current_version FROM documents WHERE key = ?1)",
                        params![key, nanos(clock())?],
                    )
                    .map_err(sql)?;
                    Ok(())
                })
                .await;
        }
        self.mark(key, versions, Mark::SoftDelete).await
    }

    async fn undelete(&self, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
        check::versions(versions, true)?;
        self.mark(key, versions, Mark::Undelete).await
    }

    async fn destroy(&self, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
        check::versions(versions, true)?;
        self.mark(key, versions, Mark::Destroy).await
    }

    async fn delete_all(&self, key: &Key) -> Result<(), StoreError> {
        let key = key.as_str().to_owned();
        self.with_conn(move |conn, _| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            tx.execute("DELETE FROM versions WHERE key = ?1", [&key])
                .map_err(sql)?;
            tx.execute("DELETE FROM documents WHERE key = ?1", [&key])
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
            purge_wal(conn);
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Touch the file, not just the library: `SELECT 1` would answer with the disk gone.
        self.with_conn(|conn, _| {
            conn.query_row("SELECT count(*) FROM documents WHERE key = ''", [], |_| {
                Ok(())
            })
            .map_err(sql)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
