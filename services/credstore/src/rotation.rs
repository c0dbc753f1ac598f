//! Re-encryption after a key rotation (see the crate docs): a sweep over an
//! owner's secret documents that rewrites each latest version sealed under
//! an older key version, with check-and-set, keeping its progress in a
//! marker document so that it can be resumed.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use locksmith_auth::Principal;
use locksmith_crypto::{KeyRing, KeyVersion, KeyWrapper, Owner};
use locksmith_domain::{
    MemberId, MemberKind, Scope, TenantId,
    secrets::{MAX_SEGMENTS, SecretName, SecretRef},
};
use locksmith_store::{Cas, Child, DocumentStore, Key, StoreError};
use locksmith_tls::ServiceName;
use serde::{Deserialize, Serialize};
use tokio::{sync::Notify, task::JoinSet};

use crate::{
    CredError, CredStore, Operation, Record,
    ops::{may_have_written, store_key},
    secret::{oldest_key_version, open_body, seal_body},
};

/// The progress marker is saved after this many documents: a resumed sweep
/// re-reads at most this many.
const CURSOR_EVERY: u64 = 64;
/// Rewrites of one secret lost to concurrent writers before the sweep
/// leaves it (those writers seal under the newest key anyway).
const CAS_ATTEMPTS: usize = 5;
/// A background sweep retries an unavailable store this many times, with
/// doubling pauses, before leaving the rest to the next start or rotation.
const RETRIES: u32 = 5;
const RETRY_BASE: Duration = Duration::from_millis(500);
/// Where the tenants' markers are listed at start-up.
const TENANT_MARKERS: &str = "keyrings/reencrypt/tenants";

/// Where a pending re-encryption of `owner` keeps its progress: beside the
/// key rings, outside `system/` and `tenants/`, so no secret reaches it.
pub fn reencryption_marker_path(owner: &Owner) -> String {
    match owner {
        Owner::Tenant(t) => format!("{TENANT_MARKERS}/{t}"),
        Owner::System => "keyrings/reencrypt/system".to_owned(),
    }
}

/// The marker: the key version the sweep aims at, and the storage path of
/// the last document done (storage paths are swept in byte order).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    target: u32,
    after: Option<String>,
}

/// What a sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// The key version everything was re-sealed with (0: the owner has no
    /// key any more, shredded during the sweep).
    pub key_version: u32,
    /// Passes over the owner's documents (another after a rotation during one).
    pub passes: u32,
    /// Secret documents looked at.
    pub examined: u64,
    /// Secrets rewritten under the newest key (one new version each).
    pub rewritten: u64,
    /// Rewrites refused by check-and-set because a writer got there first
    /// (the secret was then read again).
    pub conflicts: u64,
    /// Secrets left as they were: latest version deleted or gone, a value
    /// that does not open (logged by path), or lost to writers every time.
    pub left: u64,
    /// Stopped by shutdown before the end; resumed at the next start.
    pub stopped: bool,
}

/// This process's background sweeps.
#[derive(Default)]
pub(crate) struct Sweeps {
    /// Owners with a sweep running → whether another pass was asked for
    /// meanwhile (a second rotation).
    running: Mutex<HashMap<Owner, bool>>,
    tasks: Mutex<JoinSet<()>>,
    stopping: AtomicBool,
    wake: Notify,
}

impl Sweeps {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Sleeps for `pause` unless told to stop; answers whether to go on.
    async fn pause(&self, pause: Duration) -> bool {
        let woken = self.wake.notified();
        tokio::pin!(woken);
        // Registered before the flag is read, so a stop in between wakes us.
        woken.as_mut().enable();
        if self.stopping() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => !self.stopping(),
            () = woken => false,
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Owner, bool>> {
        // A plain map: no invariant a panicking holder could break.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Pass {
    Done,
    /// The key was rotated again during the pass: start over.
    Restart,
    Stopped,
    Shredded,
}

enum Node {
    Doc(String),
    Folder(String),
}

/// The deepest scope a storage path can be under, and the segments after
/// it (seed 000's layout, as `Scope::storage_path` writes it).
fn split_scope(path: &str) -> Option<(Scope, Vec<&str>)> {
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["system", rest @ ..] => Some((Scope::System, rest.to_vec())),
        ["tenants", t, rest @ ..] => {
            let tenant = TenantId::parse(t).ok()?;
            if let ["orgs", o, rest @ ..] = rest
                && let Ok(org) = MemberId::parse(o)
            {
                if let [kind, m, rest @ ..] = rest
                    && let Some(kind) = member_kind(kind)
                    && let Ok(id) = MemberId::parse(m)
                {
                    return Some((Scope::member(tenant, org, kind, id), rest.to_vec()));
                }
                return Some((Scope::Org { tenant, org }, rest.to_vec()));
            }
            Some((Scope::Tenant(tenant), rest.to_vec()))
        }
        _ => None,
    }
}

fn member_kind(segment: &str) -> Option<MemberKind> {
    match segment {
        "bots" => Some(MemberKind::Bot),
        "users" => Some(MemberKind::User),
        _ => None,
    }
}

/// The secret stored at `path`, if a secret is what lives there (not a
/// registry record, an API key, a connection…).
pub(crate) fn secret_at(path: &str) -> Option<SecretRef> {
    let (scope, rest) = split_scope(path)?;
    if rest.is_empty() {
        return None;
    }
    let name = SecretName::parse(&rest.join("/"), &scope).ok()?;
    Some(SecretRef { scope, name })
}

/// Whether any secret can be stored under the folder `path`, so the sweep
/// skips other services' records (`api-keys/`, `integrations/`…) unread.
pub(crate) fn may_hold_secrets(path: &str) -> bool {
    let Some((scope, rest)) = split_scope(path) else {
        return false;
    };
    match (&scope, rest.as_slice()) {
        (_, []) | (Scope::Tenant(_), ["orgs"]) | (Scope::Org { .. }, ["bots" | "users"]) => true,
        (_, [first, ..]) => rest.len() < MAX_SEGMENTS && SecretName::parse(first, &scope).is_ok(),
    }
}

fn marker_key(owner: &Owner) -> Result<Key, CredError> {
    store_key(&reencryption_marker_path(owner))
}

fn encode(marker: &Marker) -> Result<Vec<u8>, CredError> {
    serde_json::to_vec(marker).map_err(|e| CredError::Internal(format!("sweep marker: {e}")))
}

pub(crate) fn root_of(owner: &Owner) -> String {
    match owner {
        Owner::Tenant(t) => Scope::Tenant(t.clone()).storage_path(),
        Owner::System => Scope::System.storage_path(),
    }
}

impl<S: DocumentStore, W: KeyWrapper> CredStore<S, W> {
    /// Records that `owner`'s secrets are to be re-sealed under `target`
    /// (before that key version is stored; see `rotate`). Unconditional:
    /// the rotation is the one writer that resets the sweep.
    pub(crate) async fn mark_reencryption(
        &self,
        owner: &Owner,
        target: KeyVersion,
    ) -> Result<(), CredError> {
        let body = encode(&Marker {
            target: target.get(),
            after: None,
        })?;
        self.store
            .write(&marker_key(owner)?, body, Cas::None)
            .await?;
        Ok(())
    }

    /// Forgets `owner`'s pending sweep (its key is shredded).
    pub(crate) async fn unmark_reencryption(&self, owner: &Owner) -> Result<(), CredError> {
        self.store.delete_all(&marker_key(owner)?).await?;
        Ok(())
    }

    async fn read_marker(&self, key: &Key) -> Result<Option<(u64, Marker)>, CredError> {
        match self.store.read(key, None).await {
            Ok(doc) => match serde_json::from_slice::<Marker>(&doc.body) {
                Ok(marker) => Ok(Some((doc.version, marker))),
                Err(e) => {
                    // Progress only: starting over is always correct.
                    tracing::warn!(error = %e, "sweep marker unreadable; starting over");
                    Ok(Some((
                        doc.version,
                        Marker {
                            target: 0,
                            after: None,
                        },
                    )))
                }
            },
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-seals every secret of `owner` whose latest version is sealed under
    /// an older key version than the newest, and answers what it did.
    /// Resumes from the marker if it aims at the same key version; runs
    /// another pass if the key is rotated meanwhile. No principal: this is
    /// the store's own maintenance, started by a rotation or at start-up,
    /// and each rewrite is audited as `service credstore`.
    pub async fn reencrypt(&self, owner: &Owner) -> Result<SweepReport, CredError> {
        let marker_at = marker_key(owner)?;
        let mut report = SweepReport::default();
        loop {
            report.passes += 1;
            // From the store, not the cache: another replica may have rotated.
            let Some(ring) = self.load_ring(owner).await? else {
                return self.shredded(owner, report).await;
            };
            let target = ring.current().version();
            report.key_version = target.get();
            let mut marker = self.read_marker(&marker_at).await?;
            // A cursor is only good for the key version it was made for.
            let start = match &marker {
                Some((_, m)) if m.target == target.get() => m.after.clone(),
                _ => None,
            };
            let pass = self
                .sweep_pass(owner, &ring, start, &marker_at, &mut marker, &mut report)
                .await?;
            match pass {
                Pass::Done => {}
                Pass::Restart => continue,
                Pass::Stopped => {
                    report.stopped = true;
                    return Ok(report);
                }
                Pass::Shredded => return self.shredded(owner, report).await,
            }
            match self.load_ring(owner).await? {
                None => return self.shredded(owner, report).await,
                Some(fresh) if fresh.current().version() > target => continue,
                Some(_) => {}
            }
            match self.read_marker(&marker_at).await? {
                // A rotation whose key version is not stored yet (or failed):
                // it starts its own sweep once stored; the next start finds it.
                Some((_, m)) if m.target > target.get() => {}
                Some(_) => self.store.delete_all(&marker_at).await?,
                None => {}
            }
            return Ok(report);
        }
    }

    /// Ends a sweep whose owner has no key (shredded meanwhile). A cursor
    /// saved after the shred erased the marker would outlive the tenant, so
    /// the marker goes again.
    async fn shredded(
        &self,
        owner: &Owner,
        mut report: SweepReport,
    ) -> Result<SweepReport, CredError> {
        self.unmark_reencryption(owner).await?;
        report.key_version = 0;
        Ok(report)
    }

    /// One depth-first walk of the owner's documents in the store's order
    /// (byte order of storage paths), skipping everything up to `start`.
    async fn sweep_pass(
        &self,
        owner: &Owner,
        ring: &KeyRing,
        start: Option<String>,
        marker_at: &Key,
        marker: &mut Option<(u64, Marker)>,
        report: &mut SweepReport,
    ) -> Result<Pass, CredError> {
        let target = ring.current().version();
        let after = start.as_deref();
        let mut stack = vec![Node::Folder(root_of(owner))];
        let mut last: Option<String> = None;
        let mut since_saved = 0;
        while let Some(node) = stack.pop() {
            if self.sweeps.stopping() {
                if last.is_some() {
                    self.save_cursor(marker_at, marker, target, last).await?;
                }
                return Ok(Pass::Stopped);
            }
            match node {
                Node::Doc(path) => {
                    if after.is_some_and(|a| path.as_str() <= a) {
                        continue;
                    }
                    let Some(secret) = secret_at(&path) else {
                        continue;
                    };
                    // Shredded (stop: nothing may keep the key alive) or
                    // rotated again here (this pass aims too low).
                    match self.ring(owner).await? {
                        None => return Ok(Pass::Shredded),
                        Some(now) if now.current().version() > target => {
                            return Ok(Pass::Restart);
                        }
                        Some(_) => {}
                    }
                    self.reencrypt_one(owner, ring, &secret, &path, report)
                        .await?;
                    last = Some(path);
                    since_saved += 1;
                    if since_saved >= CURSOR_EVERY {
                        since_saved = 0;
                        if !self
                            .save_cursor(marker_at, marker, target, last.clone())
                            .await?
                        {
                            return Ok(Pass::Restart);
                        }
                    }
                }
                Node::Folder(path) => {
                    let folder = format!("{path}/");
                    if let Some(a) = after
                        && a > folder.as_str()
                        && !a.starts_with(&folder)
                    {
                        continue;
                    }
                    if !may_hold_secrets(&path) {
                        continue;
                    }
                    let children = self.children(&store_key(&path)?).await?;
                    for child in children.into_iter().rev() {
                        let full = format!("{path}/{}", child.name());
                        stack.push(match child {
                            Child::Document(_) => Node::Doc(full),
                            Child::Folder(_) => Node::Folder(full),
                        });
                    }
                }
            }
        }
        Ok(Pass::Done)
    }

    /// Saves the cursor; answers false if a newer rotation reset the marker
    /// meanwhile (the pass must start over under the new key).
    async fn save_cursor(
        &self,
        marker_at: &Key,
        marker: &mut Option<(u64, Marker)>,
        target: KeyVersion,
        after: Option<String>,
    ) -> Result<bool, CredError> {
        let next = Marker {
            target: target.get(),
            after,
        };
        let cas = marker
            .as_ref()
            .map_or(Cas::CreateOnly, |(v, _)| Cas::Version(*v));
        match self.store.write(marker_at, encode(&next)?, cas).await {
            Ok(version) => {
                *marker = Some((version, next));
                Ok(true)
            }
            Err(StoreError::Conflict { .. }) => {
                // A rotation, or a sweep on another replica, wrote it.
                *marker = self.read_marker(marker_at).await?;
                Ok(!matches!(marker, Some((_, m)) if m.target > target.get()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Re-seals one secret if its latest version needs it, with
    /// check-and-set on the version read; a lost race is read again.
    async fn reencrypt_one(
        &self,
        owner: &Owner,
        ring: &KeyRing,
        secret: &SecretRef,
        path: &str,
        report: &mut SweepReport,
    ) -> Result<(), CredError> {
        let key = store_key(path)?;
        let target = ring.current().version();
        let sweeper = Principal::Service {
            service: ServiceName::CredentialStore,
        };
        report.examined += 1;
        for _ in 0..CAS_ATTEMPTS {
            let doc = match self.store.read(&key, None).await {
                Ok(doc) => doc,
                // Purged meanwhile, or a soft-deleted latest version: there
                // is nothing readable to rewrite.
                Err(StoreError::NotFound { .. }) => {
                    report.left += 1;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            match oldest_key_version(path, &doc.body) {
                Ok(None) => return Ok(()),
                Ok(Some(v)) if v >= target => return Ok(()),
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(path, error = %e, "not re-encrypted: unreadable document");
                    report.left += 1;
                    return Ok(());
                }
            }
            let fields = match open_body(ring, owner, path, &doc.body) {
                Ok(fields) => fields,
                Err(e) => {
                    tracing::warn!(path, error = %e, "not re-encrypted: the document does not open");
                    report.left += 1;
                    return Ok(());
                }
            };
            let body = seal_body(ring, owner, path, &fields)?;
            let result = self
                .store
                .write(&key, body, Cas::Version(doc.version))
                .await
                .map_err(CredError::from);
            // A new version: cached answers naming the old one must go.
            if may_have_written(&result) {
                self.cache.invalidate(&secret.scope, secret.name.as_str());
            }
            let mut record = Record::new(&sweeper, Operation::Reencrypt, secret.resource_name());
            record.version = result.as_ref().ok().copied();
            self.audit(record, &result).await;
            match result {
                Ok(_) => {
                    report.rewritten += 1;
                    return Ok(());
                }
                Err(CredError::VersionConflict { .. }) => report.conflicts += 1,
                Err(e) => return Err(e),
            }
        }
        report.left += 1;
        Ok(())
    }

    /// Asks this process to stop its sweeps (each saves its progress at the
    /// next document) and waits until they have. For shutdown, before the
    /// audit trail is closed.
    pub async fn stop_reencryption(&self) {
        self.sweeps.stopping.store(true, Ordering::Release);
        self.sweeps.wake.notify_waiters();
        let mut tasks = std::mem::take(
            &mut *self
                .sweeps
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        while tasks.join_next().await.is_some() {}
    }
}

impl<S: DocumentStore, W: KeyWrapper + 'static> CredStore<S, W> {
    /// Runs [`CredStore::reencrypt`] for `owner` in the background. If one
    /// is running already, it makes another pass when done (so a second
    /// rotation is covered). Failures are logged; the marker keeps what is
    /// left for the next start.
    pub fn spawn_reencryption(self: &Arc<Self>, owner: Owner) {
        {
            let mut running = self.sweeps.running();
            if let Some(again) = running.get_mut(&owner) {
                *again = true;
                return;
            }
            if self.sweeps.stopping() {
                return;
            }
            running.insert(owner.clone(), false);
        }
        let this = Arc::clone(self);
        let mut tasks = self
            .sweeps
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Reap finished sweeps so the set does not grow with every rotation.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move { this.sweep_task(owner).await });
    }

    /// Starts a sweep for every owner whose marker says one is pending (at
    /// start-up); answers how many.
    pub async fn resume_reencryption(self: &Arc<Self>) -> Result<usize, CredError> {
        let mut owners = Vec::new();
        if self
            .read_marker(&marker_key(&Owner::System)?)
            .await?
            .is_some()
        {
            owners.push(Owner::System);
        }
        for child in self.children(&store_key(TENANT_MARKERS)?).await? {
            if let Child::Document(name) = child
                && let Ok(tenant) = TenantId::parse(&name)
            {
                owners.push(Owner::Tenant(tenant));
            }
        }
        let count = owners.len();
        for owner in owners {
            self.spawn_reencryption(owner);
        }
        Ok(count)
    }

    /// Whether a background sweep of `owner` is running (for tests).
    #[cfg(test)]
    pub(crate) fn reencrypting(&self, owner: &Owner) -> bool {
        self.sweeps.running().contains_key(owner)
    }

    async fn sweep_task(&self, owner: Owner) {
        let mut failures = 0;
        loop {
            let mut stop = false;
            match self.reencrypt(&owner).await {
                Ok(report) => {
                    failures = 0;
                    stop = report.stopped;
                    tracing::info!(
                        owner = %owner,
                        key_version = report.key_version,
                        examined = report.examined,
                        rewritten = report.rewritten,
                        conflicts = report.conflicts,
                        left = report.left,
                        stopped = report.stopped,
                        "re-encryption sweep ended"
                    );
                }
                Err(CredError::Unavailable(why)) if failures < RETRIES => {
                    failures += 1;
                    tracing::warn!(owner = %owner, error = %why, "re-encryption sweep paused: storage unavailable");
                    if self.sweeps.pause(RETRY_BASE * 2u32.pow(failures)).await {
                        continue;
                    }
                    stop = true;
                }
                Err(e) => {
                    tracing::warn!(
                        owner = %owner, error = %e,
                        "re-encryption sweep stopped; it resumes at the next start or rotation"
                    );
                }
            }
            let again = {
                let mut running = self.sweeps.running();
                match running.get_mut(&owner) {
                    Some(again) if *again && !stop && !self.sweeps.stopping() => {
                        *again = false;
                        true
                    }
                    _ => {
                        running.remove(&owner);
                        false
                    }
                }
            };
            if !again {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_paths_are_told_apart_from_other_records() {
        let secret = |p: &str| secret_at(p).map(|s| s.resource_name());
        assert_eq!(
            secret("tenants/acme/orgs/sales/bots/helper/llm").as_deref(),
            Some("tenants/acme/orgs/sales/bots/helper/secrets/llm")
        );
        assert_eq!(
            secret("tenants/acme/infrastructure/email").as_deref(),
            Some("tenants/acme/secrets/infrastructure/email")
        );
        assert_eq!(
            secret("tenants/acme/orgs/sales/users/ann/oauth/github").as_deref(),
            Some("tenants/acme/orgs/sales/users/ann/secrets/oauth/github")
        );
        assert_eq!(
            secret("system/email").as_deref(),
            Some("system/secrets/email")
        );
        for record in [
            "tenants/acme/config",
            "tenants/acme/orgs/sales",
            "tenants/acme/orgs/sales/config",
            "tenants/acme/orgs/sales/bots/helper/config",
            "tenants/acme/api-keys/k1",
            "system/api-keys/k1",
            "keyrings/tenants/acme",
            "tenants/ACME/x",
        ] {
            assert_eq!(secret(record), None, "{record}");
        }
        assert!(may_hold_secrets("tenants/acme"));
        assert!(may_hold_secrets("tenants/acme/orgs"));
        assert!(may_hold_secrets("tenants/acme/orgs/sales/bots"));
        assert!(may_hold_secrets("tenants/acme/api"));
        assert!(!may_hold_secrets("tenants/acme/api-keys"));
        assert!(!may_hold_secrets("tenants/acme/integrations"));
        assert!(!may_hold_secrets("tenants/acme/orgs/sales/integrations"));
        assert!(!may_hold_secrets("system/api-keys"));
    }
}
