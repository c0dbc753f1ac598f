//! Cases on one key at a time: check-and-set, versions, deletes.

use std::sync::Arc;

use super::{Case, Failure, Outcome};
use crate::{Cas, DocumentStore, Key, MAX_BODY_BYTES, StoreError, VersionState};

/// `(version, body)` of a read that must succeed.
async fn read_ok<S: DocumentStore>(
    c: Case,
    store: &S,
    key: &Key,
    version: Option<u64>,
) -> Result<(u64, Vec<u8>), Failure> {
    let doc = c.ok(
        &format!("read {key} {version:?}"),
        store.read(key, version).await,
    )?;
    Ok((doc.version, doc.body))
}

/// The states of every remembered version, oldest first.
async fn states<S: DocumentStore>(
    c: Case,
    store: &S,
    key: &Key,
) -> Result<Vec<(u64, VersionState)>, Failure> {
    let meta = c.ok(&format!("metadata {key}"), store.metadata(key).await)?;
    Ok(meta.versions.iter().map(|v| (v.version, v.state)).collect())
}

const GONE: StoreError = StoreError::NotFound { deleted: true };
const ABSENT: StoreError = StoreError::NotFound { deleted: false };

/// A create-only write succeeds once; the second answers the version it hit.
pub async fn create_only_twice_conflicts<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("create_only_twice_conflicts");
    let k = c.key("tenants/t/config")?;
    c.eq(
        "first create",
        store.write(&k, b"first".to_vec(), Cas::CreateOnly).await,
        Ok(1),
    )?;
    c.err(
        "second create",
        store.write(&k, b"second".to_vec(), Cas::CreateOnly).await,
        StoreError::Conflict { current: 1 },
    )?;
    c.err(
        "cas 0 is create-only",
        store.write(&k, b"third".to_vec(), Cas::Version(0)).await,
        StoreError::Conflict { current: 1 },
    )?;
    c.eq(
        "stored",
        read_ok(c, &store, &k, None).await?,
        (1, b"first".to_vec()),
    )?;
    c.eq(
        "versions",
        states(c, &store, &k).await?,
        vec![(1, VersionState::Live)],
    )
}

/// A write based on an old version is refused with the current one, and
/// writes nothing; on an absent key the current version is 0.
pub async fn stale_cas_conflicts_and_writes_nothing<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("stale_cas_conflicts_and_writes_nothing");
    let k = c.key("tenants/t/orgs/o/bots/b")?;
    c.err(
        "cas 1 on an absent key",
        store.write(&k, b"x".to_vec(), Cas::Version(1)).await,
        StoreError::Conflict { current: 0 },
    )?;
    c.err(
        "absent key stays absent",
        store.read(&k, None).await,
        ABSENT,
    )?;
    c.err("no metadata either", store.metadata(&k).await, ABSENT)?;

    c.eq(
        "create",
        store.write(&k, b"v1".to_vec(), Cas::CreateOnly).await,
        Ok(1),
    )?;
    c.eq(
        "update",
        store.write(&k, b"v2".to_vec(), Cas::Version(1)).await,
        Ok(2),
    )?;
    c.err(
        "stale",
        store.write(&k, b"stale".to_vec(), Cas::Version(1)).await,
        StoreError::Conflict { current: 2 },
    )?;
    c.err(
        "ahead",
        store.write(&k, b"ahead".to_vec(), Cas::Version(3)).await,
        StoreError::Conflict { current: 2 },
    )?;
    c.eq(
        "latest untouched",
        read_ok(c, &store, &k, None).await?,
        (2, b"v2".to_vec()),
    )?;
    let meta = c.ok("metadata", store.metadata(&k).await)?;
    c.eq("current version", meta.current_version, 2)?;
    c.eq(
        "no version added",
        meta.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2],
    )?;
    c.eq(
        "unconditional",
        store.write(&k, b"v3".to_vec(), Cas::None).await,
        Ok(3),
    )?;
    c.eq(
        "cas on it",
        store.write(&k, b"v4".to_vec(), Cas::Version(3)).await,
        Ok(4),
    )
}

/// Reads answer the latest or the asked version, bytes exactly as written.
pub async fn write_then_read_latest_and_given_version<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("write_then_read_latest_and_given_version");
    let k = c.key("system/secrets/db.password")?;
    let bodies: [Vec<u8>; 3] = [br#"{"n":1}"#.to_vec(), vec![0, 255, 1, 0], Vec::new()];
    for (i, body) in bodies.iter().enumerate() {
        let want = u64::try_from(i).map_err(|e| c.fail(e.to_string()))? + 1;
        c.eq(
            "write",
            store.write(&k, body.clone(), Cas::None).await,
            Ok(want),
        )?;
    }
    c.eq(
        "latest",
        read_ok(c, &store, &k, None).await?,
        (3, Vec::new()),
    )?;
    for (v, body) in (1..).zip(&bodies) {
        c.eq(
            "given",
            read_ok(c, &store, &k, Some(v)).await?,
            (v, body.clone()),
        )?;
    }
    c.err("past the latest", store.read(&k, Some(4)).await, ABSENT)?;
    let other = c.key("system/secrets/db")?;
    c.err(
        "a key's prefix is not a document",
        store.read(&other, None).await,
        ABSENT,
    )?;

    // Times are the store's: compare them with each other, never with ours.
    let meta = c.ok("metadata", store.metadata(&k).await)?;
    let created: Vec<_> = meta.versions.iter().map(|v| v.created).collect();
    c.eq("three versions", created.len(), 3)?;
    c.check(
        "versions in write order",
        created.windows(2).all(|w| w[0] <= w[1]),
    )?;
    c.eq(
        "key created with version 1",
        Some(meta.created),
        created.first().copied(),
    )?;
    c.eq(
        "updated by the last write",
        Some(meta.updated),
        created.last().copied(),
    )?;
    let doc = c.ok("read 2", store.read(&k, Some(2)).await)?;
    c.eq(
        "a read carries its version's time",
        Some(doc.created),
        created.get(1).copied(),
    )
}

/// Deleting or destroying versions never frees their numbers.
pub async fn version_numbers_are_never_reused<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("version_numbers_are_never_reused");
    let k = c.key("tenants/t/config")?;
    c.eq(
        "v1",
        store.write(&k, b"1".to_vec(), Cas::CreateOnly).await,
        Ok(1),
    )?;
    c.eq(
        "v2",
        store.write(&k, b"2".to_vec(), Cas::Version(1)).await,
        Ok(2),
    )?;
    c.ok("delete latest", store.soft_delete(&k, &[]).await)?;
    c.err("latest is deleted", store.read(&k, None).await, GONE)?;
    c.err(
        "create-only still conflicts",
        store.write(&k, b"x".to_vec(), Cas::CreateOnly).await,
        StoreError::Conflict { current: 2 },
    )?;
    c.eq(
        "v3 after a delete",
        store.write(&k, b"3".to_vec(), Cas::Version(2)).await,
        Ok(3),
    )?;
    c.ok("destroy latest", store.destroy(&k, &[3]).await)?;
    c.eq(
        "v4 after a destroy",
        store.write(&k, b"4".to_vec(), Cas::Version(3)).await,
        Ok(4),
    )?;
    c.err("v2 stays deleted", store.read(&k, Some(2)).await, GONE)?;
    c.err("v3 stays destroyed", store.read(&k, Some(3)).await, GONE)?;
    c.eq(
        "latest",
        read_ok(c, &store, &k, None).await?,
        (4, b"4".to_vec()),
    )?;
    c.eq(
        "versions",
        states(c, &store, &k).await?,
        vec![
            (1, VersionState::Live),
            (2, VersionState::Deleted),
            (3, VersionState::Destroyed),
            (4, VersionState::Live),
        ],
    )
}

/// Soft delete hides, undelete restores, destroy is final.
pub async fn soft_delete_undelete_and_destroy<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("soft_delete_undelete_and_destroy");
    let k = c.key("tenants/t/orgs/o/users/u/secrets/token")?;
    c.eq(
        "v1",
        store.write(&k, b"one".to_vec(), Cas::CreateOnly).await,
        Ok(1),
    )?;
    c.eq(
        "v2",
        store.write(&k, b"two".to_vec(), Cas::Version(1)).await,
        Ok(2),
    )?;

    c.ok("delete v1", store.soft_delete(&k, &[1]).await)?;
    c.err("v1 hidden", store.read(&k, Some(1)).await, GONE)?;
    c.eq(
        "v2 unaffected",
        read_ok(c, &store, &k, None).await?,
        (2, b"two".to_vec()),
    )?;
    c.ok("undelete v1", store.undelete(&k, &[1]).await)?;
    c.eq(
        "v1 back",
        read_ok(c, &store, &k, Some(1)).await?,
        (1, b"one".to_vec()),
    )?;

    c.ok("delete latest", store.soft_delete(&k, &[]).await)?;
    // The latest deleted is not found: a read never falls back to v1.
    c.err("latest hidden", store.read(&k, None).await, GONE)?;
    c.eq(
        "v1 still readable",
        read_ok(c, &store, &k, Some(1)).await?,
        (1, b"one".to_vec()),
    )?;
    c.ok("undelete v2", store.undelete(&k, &[2]).await)?;
    c.eq(
        "v2 back",
        read_ok(c, &store, &k, None).await?,
        (2, b"two".to_vec()),
    )?;

    c.ok("destroy v1", store.destroy(&k, &[1]).await)?;
    c.err("v1 destroyed", store.read(&k, Some(1)).await, GONE)?;
    c.ok("undelete v1 again", store.undelete(&k, &[1]).await)?;
    c.err(
        "undelete does not bring it back",
        store.read(&k, Some(1)).await,
        GONE,
    )?;
    c.ok(
        "soft delete of destroyed",
        store.soft_delete(&k, &[1]).await,
    )?;

    c.ok("delete v2", store.soft_delete(&k, &[2]).await)?;
    c.ok("destroy the deleted v2", store.destroy(&k, &[2]).await)?;
    c.ok("undelete v2 again", store.undelete(&k, &[2]).await)?;
    c.err("v2 destroyed", store.read(&k, None).await, GONE)?;
    c.eq(
        "versions",
        states(c, &store, &k).await?,
        vec![(1, VersionState::Destroyed), (2, VersionState::Destroyed)],
    )?;
    // Nothing readable, yet the key exists: listed, and create-only conflicts.
    let parent = k.parent();
    let listed = c.ok("list", store.list(parent.as_ref(), None, 10).await)?;
    c.eq(
        "still listed",
        listed,
        vec![crate::Child::Document("token".into())],
    )?;
    c.err(
        "create-only conflicts",
        store.write(&k, b"x".to_vec(), Cas::CreateOnly).await,
        StoreError::Conflict { current: 2 },
    )
}

/// Deletes of absent keys or versions succeed and change nothing, so a sweep
/// can be re-run.
pub async fn deletes_are_idempotent<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("deletes_are_idempotent");
    let absent = c.key("tenants/gone/config")?;
    c.ok(
        "soft delete absent key",
        store.soft_delete(&absent, &[]).await,
    )?;
    c.ok(
        "soft delete absent key v1",
        store.soft_delete(&absent, &[1]).await,
    )?;
    c.ok("undelete absent key", store.undelete(&absent, &[1]).await)?;
    c.ok("destroy absent key", store.destroy(&absent, &[1]).await)?;
    c.ok("delete_all absent key", store.delete_all(&absent).await)?;
    c.err("still absent", store.metadata(&absent).await, ABSENT)?;

    let k = c.key("tenants/t/config")?;
    c.eq(
        "v1",
        store.write(&k, b"one".to_vec(), Cas::CreateOnly).await,
        Ok(1),
    )?;
    c.ok("delete absent version", store.soft_delete(&k, &[9]).await)?;
    c.ok("undelete absent version", store.undelete(&k, &[9]).await)?;
    c.ok("destroy absent version", store.destroy(&k, &[9]).await)?;
    c.ok("undelete a live version", store.undelete(&k, &[1]).await)?;
    c.eq(
        "v1 untouched",
        read_ok(c, &store, &k, None).await?,
        (1, b"one".to_vec()),
    )?;
    c.ok("delete twice", store.soft_delete(&k, &[1]).await)?;
    c.ok("delete twice", store.soft_delete(&k, &[1]).await)?;
    c.ok("destroy twice", store.destroy(&k, &[1]).await)?;
    c.ok("destroy twice", store.destroy(&k, &[1]).await)?;
    c.eq(
        "no version appeared",
        states(c, &store, &k).await?,
        vec![(1, VersionState::Destroyed)],
    )?;
    c.ok("delete_all", store.delete_all(&k).await)?;
    c.ok("delete_all twice", store.delete_all(&k).await)?;
    c.err("gone", store.metadata(&k).await, ABSENT)
}

/// `delete_all` erases one key completely (and no other); the key then starts
/// again at version 1.
pub async fn delete_all_then_create_starts_at_one<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("delete_all_then_create_starts_at_one");
    let k = c.key("tenants/a")?;
    let child = c.key("tenants/a/config")?;
    let sibling = c.key("tenants/ab")?;
    for v in 1..=3 {
        c.eq(
            "write",
            store.write(&k, v.to_string().into_bytes(), Cas::None).await,
            Ok(v),
        )?;
    }
    c.ok("delete v1", store.soft_delete(&k, &[1]).await)?;
    c.ok("destroy v2", store.destroy(&k, &[2]).await)?;
    c.eq(
        "child",
        store.write(&child, b"c".to_vec(), Cas::CreateOnly).await,
        Ok(1),
    )?;
    c.eq(
        "sibling",
        store.write(&sibling, b"s".to_vec(), Cas::CreateOnly).await,
        Ok(1),
    )?;

    c.ok("delete_all", store.delete_all(&k).await)?;
    c.err("latest gone", store.read(&k, None).await, ABSENT)?;
    for v in 1..=3 {
        c.err("every version gone", store.read(&k, Some(v)).await, ABSENT)?;
    }
    c.err("metadata gone", store.metadata(&k).await, ABSENT)?;
    let tenants = c.key("tenants")?;
    let listed = c.ok("list", store.list(Some(&tenants), None, 10).await)?;
    c.eq(
        "only the folder and the sibling remain",
        listed.iter().map(crate::Child::cursor).collect::<Vec<_>>(),
        vec!["a/".to_owned(), "ab".to_owned()],
    )?;
    c.eq(
        "no cascade to children",
        read_ok(c, &store, &child, None).await?,
        (1, b"c".to_vec()),
    )?;
    c.eq(
        "nor to siblings",
        read_ok(c, &store, &sibling, None).await?,
        (1, b"s".to_vec()),
    )?;

    c.eq(
        "create again",
        store.write(&k, b"new".to_vec(), Cas::CreateOnly).await,
        Ok(1),
    )?;
    c.err(
        "old v2 does not resurface",
        store.read(&k, Some(2)).await,
        ABSENT,
    )?;
    c.eq(
        "fresh history",
        states(c, &store, &k).await?,
        vec![(1, VersionState::Live)],
    )
}

/// Twenty writers on one base version: exactly one wins. Then twenty creators
/// of one absent key: exactly one wins.
pub async fn concurrent_cas_writers_one_wins<S: DocumentStore>(store: S) -> Outcome {
    const WRITERS: usize = 20;
    let c = Case("concurrent_cas_writers_one_wins");
    let store = Arc::new(store);
    let k = c.key("tenants/t/config")?;
    c.eq(
        "base",
        store.write(&k, b"base".to_vec(), Cas::CreateOnly).await,
        Ok(1),
    )?;
    let created = c.key("tenants/u/config")?;

    for (key, cas, won, current) in [
        (&k, Cas::Version(1), 2, 2),
        (&created, Cas::CreateOnly, 1, 1),
    ] {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..WRITERS {
            let (store, key) = (Arc::clone(&store), key.clone());
            tasks.spawn(async move {
                let body = format!("writer {i}").into_bytes();
                (i, store.write(&key, body, cas).await)
            });
        }
        let mut winners = Vec::new();
        let mut conflicts = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined.map_err(|e| c.fail(format!("writer task: {e}")))? {
                (i, Ok(v)) if v == won => winners.push(i),
                (_, Err(StoreError::Conflict { current: seen })) if seen == current => {
                    conflicts += 1;
                }
                (_, other) => {
                    return Err(c.fail(format!("{cas:?}: unexpected outcome {other:?}")));
                }
            }
        }
        c.eq(&format!("{cas:?} winners"), winners.len(), 1)?;
        c.eq(&format!("{cas:?} conflicts"), conflicts, WRITERS - 1)?;
        let winner = winners
            .first()
            .map(|i| format!("writer {i}").into_bytes())
            .unwrap_or_default();
        c.eq(
            "the winner's write",
            read_ok(c, &*store, key, None).await?,
            (won, winner),
        )?;
        let versions = states(c, &*store, key).await?;
        c.eq(
            "one version per winner",
            versions.len(),
            usize::try_from(won).unwrap_or(0),
        )?;
    }
    Ok(())
}

/// Arguments no backend accepts are refused before anything is written.
pub async fn invalid_arguments_are_refused<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("invalid_arguments_are_refused");
    let k = c.key("tenants/t/config")?;
    let too_big = vec![b'x'; MAX_BODY_BYTES + 1];
    c.invalid(
        "body too big",
        store.write(&k, too_big, Cas::CreateOnly).await,
    )?;
    c.err("nothing written", store.metadata(&k).await, ABSENT)?;
    let biggest = vec![b'x'; MAX_BODY_BYTES];
    c.eq(
        "largest body",
        store.write(&k, biggest.clone(), Cas::CreateOnly).await,
        Ok(1),
    )?;
    c.eq(
        "read back",
        read_ok(c, &store, &k, None).await?,
        (1, biggest),
    )?;
    c.invalid("read version 0", store.read(&k, Some(0)).await)?;
    c.invalid("undelete nothing", store.undelete(&k, &[]).await)?;
    c.invalid("destroy nothing", store.destroy(&k, &[]).await)?;
    c.invalid("delete version 0", store.soft_delete(&k, &[0]).await)?;
    c.invalid("undelete version 0", store.undelete(&k, &[1, 0]).await)?;
    c.invalid("destroy version 0", store.destroy(&k, &[0, 1]).await)?;
    c.invalid("empty page", store.list(None, None, 0).await)?;
    c.eq(
        "nothing changed",
        states(c, &store, &k).await?,
        vec![(1, VersionState::Live)],
    )
}

/// A fresh store answers a health check.
pub async fn ping_answers<S: DocumentStore>(store: S) -> Outcome {
    let c = Case("ping_answers");
    c.ok("ping", store.ping().await)
}
