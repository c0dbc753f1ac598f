//! The resolve cache: decrypted answers of [`crate::CredStore::resolve`],
//! kept for a bounded time so a hot name costs no storage round trip.
//!
//! # What a key captures
//!
//! Once the caller has passed the authorization check on the scope it asked
//! for (which runs on every call, cached or not), the walk's answer depends
//! on the principal in one way only: whether the system scope may be
//! visited (suite services and operators: yes; tenant principals and
//! workloads: never). Every tenant scope the walk visits belongs to the
//! tenant the caller was just authorized for. So an entry is keyed by
//! `(name, requested scope, sees system)`, and a tenant principal can never
//! be served an answer that a service's walk found at the system scope.
//!
//! # Invalidation
//!
//! A write of `name` at scope `S` (put, delete, undelete, destroy, purge, a
//! re-encryption rewrite) can change the answer of every resolve of `name`
//! from `S` or below it: those entries go at once, before the write's call
//! returns. A system write thus drops `name` at every scope; shredding or
//! provisioning a tenant's key drops everything of that tenant. Writes
//! through other replicas are seen once the entry expires (`ttl`).
//!
//! A resolve that read storage before a write but stores its answer after
//! the write's invalidation would bring the old answer back; every
//! invalidation therefore bumps an epoch, and an answer is stored only if
//! the epoch has not moved since its walk began.
//!
//! Both found secrets and "not found" are cached: a name that falls back to
//! nothing is as hot as one that is found.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use locksmith_domain::{Scope, TenantId, secrets::SecretRef};
use time::OffsetDateTime;

use crate::Secret;

/// How long answers are kept and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bounded staleness: how long an answer may be served after it was
    /// read. Zero disables the cache.
    pub ttl: Duration,
    /// Most answers kept; the oldest go first. Zero disables the cache.
    pub max_entries: usize,
}

impl CacheConfig {
    /// No caching: every resolve reads storage.
    pub const DISABLED: CacheConfig = CacheConfig {
        ttl: Duration::ZERO,
        max_entries: 0,
    };
}

/// A cached answer.
#[derive(Clone)]
pub(crate) enum Answer {
    /// The secret that answered (its scope is the answering scope).
    Found(Arc<Secret>),
    /// The walk found nothing (NOT_FOUND).
    Missing,
}

impl Answer {
    /// A fresh copy for the caller; the cached one stays in its zeroizing
    /// boxes, and so does the copy.
    pub(crate) fn to_secret(&self) -> Option<Secret> {
        match self {
            Answer::Found(s) => Some(Secret {
                secret_ref: s.secret_ref.clone(),
                version: s.version,
                created: s.created,
                fields: s.fields.clone(),
            }),
            Answer::Missing => None,
        }
    }
}

struct Entry {
    serial: u64,
    at: OffsetDateTime,
    answer: Answer,
}

/// Entries of one name at one scope: `[tenant view, system view]`.
#[derive(Default)]
struct Views([Option<Entry>; 2]);

/// Insertion order, for expiry and eviction. A token whose serial no longer
/// matches its slot (replaced or invalidated) is skipped.
struct Token {
    serial: u64,
    name: String,
    scope: Scope,
    sees_system: bool,
}

#[derive(Default)]
struct Inner {
    by_name: HashMap<String, HashMap<Scope, Views>>,
    order: VecDeque<Token>,
    len: usize,
    epoch: u64,
    serial: u64,
}

impl Inner {
    fn remove_token(&mut self, token: &Token) {
        let Some(scopes) = self.by_name.get_mut(&token.name) else {
            return;
        };
        if let Some(views) = scopes.get_mut(&token.scope) {
            let slot = &mut views.0[usize::from(token.sees_system)];
            if slot.as_ref().is_some_and(|e| e.serial == token.serial) {
                *slot = None;
                self.len -= 1;
            }
            if views.0.iter().all(Option::is_none) {
                scopes.remove(&token.scope);
            }
        }
        if scopes.is_empty() {
            self.by_name.remove(&token.name);
        }
    }

    fn is_live(&self, token: &Token) -> bool {
        self.by_name
            .get(&token.name)
            .and_then(|s| s.get(&token.scope))
            .and_then(|v| v.0[usize::from(token.sees_system)].as_ref())
            .is_some_and(|e| e.serial == token.serial)
    }

    /// Drops every entry of `name` at `within` or below it.
    fn drop_name(&mut self, name: &str, within: &Scope) {
        if let Some(scopes) = self.by_name.get_mut(name) {
            let before: usize = scopes.values().map(Views::count).sum();
            scopes.retain(|scope, _| !scope.ancestry().any(|a| a == *within));
            let after: usize = scopes.values().map(Views::count).sum();
            self.len -= before - after;
            if scopes.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    fn drop_where(&mut self, gone: impl Fn(&Scope) -> bool) {
        let mut removed = 0;
        self.by_name.retain(|_, scopes| {
            scopes.retain(|scope, views| {
                let drop = gone(scope);
                if drop {
                    removed += views.count();
                }
                !drop
            });
            !scopes.is_empty()
        });
        self.len -= removed;
    }
}

impl Views {
    fn count(&self) -> usize {
        self.0.iter().filter(|e| e.is_some()).count()
    }
}

/// The cache itself; every method is a no-op when disabled.
pub(crate) struct ResolveCache {
    config: CacheConfig,
    ttl: time::Duration,
    inner: Mutex<Inner>,
}

impl ResolveCache {
    pub(crate) fn new(config: CacheConfig) -> Self {
        Self {
            config,
            // A TTL beyond `time::Duration`'s range is "forever" in practice.
            ttl: time::Duration::try_from(config.ttl).unwrap_or(time::Duration::MAX),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn enabled(&self) -> bool {
        !self.config.ttl.is_zero() && self.config.max_entries > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent before any call
        // that could panic, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether an answer stored at `at` may still be served at `now`. A
    /// clock that went backwards expires it rather than extending it.
    fn fresh(&self, at: OffsetDateTime, now: OffsetDateTime) -> bool {
        let age = now - at;
        !age.is_negative() && age < self.ttl
    }

    /// The cached answer of resolving `name` from `scope`, if fresh.
    pub(crate) fn get(
        &self,
        scope: &Scope,
        name: &str,
        sees_system: bool,
        now: OffsetDateTime,
    ) -> Option<Answer> {
        if !self.enabled() {
            return None;
        }
        let inner = self.lock();
        let entry = inner.by_name.get(name)?.get(scope)?.0[usize::from(sees_system)].as_ref()?;
        self.fresh(entry.at, now).then(|| entry.answer.clone())
    }

    /// The epoch to pass to [`ResolveCache::put`]; take it before reading
    /// storage.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Stores the answer of a walk that began at `epoch`, unless a write
    /// invalidated anything since.
    pub(crate) fn put(
        &self,
        epoch: u64,
        asked: &SecretRef,
        sees_system: bool,
        answer: Answer,
        now: OffsetDateTime,
    ) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        // Expired entries and stale tokens go from the front; then the
        // oldest live ones while full.
        while let Some(front) = inner.order.front() {
            let expired = inner
                .by_name
                .get(&front.name)
                .and_then(|s| s.get(&front.scope))
                .and_then(|v| v.0[usize::from(front.sees_system)].as_ref())
                .is_none_or(|e| e.serial != front.serial || !self.fresh(e.at, now));
            // Replacing an entry needs no room.
            let replacing = inner
                .by_name
                .get(asked.name.as_str())
                .and_then(|s| s.get(&asked.scope))
                .is_some_and(|v| v.0[usize::from(sees_system)].is_some());
            if !expired && (replacing || inner.len < self.config.max_entries) {
                break;
            }
            if let Some(token) = inner.order.pop_front() {
                inner.remove_token(&token);
            }
        }
        inner.serial += 1;
        let serial = inner.serial;
        let name = asked.name.as_str();
        let slot = &mut inner
            .by_name
            .entry(name.to_owned())
            .or_default()
            .entry(asked.scope.clone())
            .or_default()
            .0[usize::from(sees_system)];
        let added = slot.is_none();
        *slot = Some(Entry {
            serial,
            at: now,
            answer,
        });
        if added {
            inner.len += 1;
        }
        inner.order.push_back(Token {
            serial,
            name: name.to_owned(),
            scope: asked.scope.clone(),
            sees_system,
        });
        // Invalidations leave tokens behind; keep the queue proportional to
        // the entries.
        if inner.order.len() > 2 * self.config.max_entries + 16 {
            let order = std::mem::take(&mut inner.order);
            inner.order = order.into_iter().filter(|t| inner.is_live(t)).collect();
        }
    }

    /// A write of `name` at `scope` happened (or may have): drops every
    /// answer it could change.
    pub(crate) fn invalidate(&self, scope: &Scope, name: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.drop_name(name, scope);
    }

    /// `tenant`'s key changed (shredded, provisioned): drops all its answers.
    pub(crate) fn invalidate_tenant(&self, tenant: &TenantId) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.drop_where(|scope| scope.tenant() == Some(tenant));
    }

    /// Drops everything (the system key changed: every fallback may).
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.drop_where(|_| true);
        inner.order.clear();
    }

    /// How many answers are held (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }
}

#[cfg(test)]
mod tests {
    use locksmith_domain::secrets::SecretName;

    use super::*;

    fn sref(scope: &str, name: &str) -> SecretRef {
        let scope = Scope::parse(scope).unwrap();
        let name = SecretName::parse(name, &scope).unwrap();
        SecretRef { scope, name }
    }

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap()
    }

    fn found(at: &SecretRef, version: u64) -> Answer {
        Answer::Found(Arc::new(Secret {
            secret_ref: at.clone(),
            version,
            created: t(0),
            fields: [("k", "v")].into_iter().collect(),
        }))
    }

    fn version(a: Option<Answer>) -> Option<u64> {
        match a? {
            Answer::Found(s) => Some(s.version),
            Answer::Missing => Some(0),
        }
    }

    fn cache(ttl_s: u64, max: usize) -> ResolveCache {
        ResolveCache::new(CacheConfig {
            ttl: Duration::from_secs(ttl_s),
            max_entries: max,
        })
    }

    const BOT: &str = "tenant/acme/org/sales/bot/helper";

    #[test]
    fn entries_expire_after_the_ttl_and_when_the_clock_goes_back() {
        let c = cache(3, 10);
        let bot = sref(BOT, "llm");
        c.put(c.epoch(), &bot, true, found(&bot, 1), t(10));
        assert_eq!(version(c.get(&bot.scope, "llm", true, t(12))), Some(1));
        assert_eq!(version(c.get(&bot.scope, "llm", true, t(13))), None);
        assert_eq!(version(c.get(&bot.scope, "llm", true, t(9))), None);
        // The view is part of the key.
        assert_eq!(version(c.get(&bot.scope, "llm", false, t(11))), None);
    }

    #[test]
    fn a_write_drops_the_name_at_its_scope_and_below_only() {
        let c = cache(60, 100);
        let bot = sref(BOT, "llm");
        let other_bot = sref("tenant/acme/org/sales/bot/other", "llm");
        let org = sref("tenant/acme/org/sales", "llm");
        let beta = sref("tenant/beta", "llm");
        let email = sref(BOT, "email");
        for (i, at) in [&bot, &other_bot, &org, &beta, &email].iter().enumerate() {
            c.put(c.epoch(), at, true, found(at, i as u64 + 1), t(0));
            c.put(c.epoch(), at, false, Answer::Missing, t(0));
        }
        assert_eq!(c.len(), 10);
        c.invalidate(
            &Scope::parse("tenant/acme/org/sales/bot/other").unwrap(),
            "llm",
        );
        assert_eq!(version(c.get(&other_bot.scope, "llm", true, t(1))), None);
        assert_eq!(version(c.get(&bot.scope, "llm", true, t(1))), Some(1));
        assert_eq!(c.len(), 8);
        c.invalidate(&org.scope, "llm");
        assert_eq!(version(c.get(&bot.scope, "llm", false, t(1))), None);
        assert_eq!(version(c.get(&beta.scope, "llm", true, t(1))), Some(4));
        assert_eq!(version(c.get(&email.scope, "email", true, t(1))), Some(5));
        assert_eq!(c.len(), 4);
        c.invalidate(&Scope::System, "llm");
        assert_eq!(version(c.get(&beta.scope, "llm", true, t(1))), None);
        assert_eq!(version(c.get(&email.scope, "email", false, t(1))), Some(0));
        c.invalidate_tenant(&TenantId::parse("acme").unwrap());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn an_answer_read_before_a_write_is_not_stored_after_it() {
        let c = cache(60, 10);
        let bot = sref(BOT, "llm");
        let epoch = c.epoch();
        c.invalidate(&bot.scope, "llm");
        c.put(epoch, &bot, true, found(&bot, 1), t(0));
        assert_eq!(version(c.get(&bot.scope, "llm", true, t(0))), None);
        c.put(c.epoch(), &bot, true, found(&bot, 2), t(0));
        assert_eq!(version(c.get(&bot.scope, "llm", true, t(0))), Some(2));
    }

    #[test]
    fn the_oldest_entries_go_when_full_and_tokens_stay_bounded() {
        let c = cache(60, 3);
        let names = ["a", "b", "c", "d"];
        for (i, n) in names.iter().enumerate() {
            let at = sref("tenant/acme", n);
            c.put(c.epoch(), &at, true, found(&at, 1), t(i as i64));
        }
        assert_eq!(c.len(), 3);
        let acme = Scope::parse("tenant/acme").unwrap();
        assert_eq!(version(c.get(&acme, "a", true, t(5))), None);
        assert_eq!(version(c.get(&acme, "d", true, t(5))), Some(1));
        // Re-storing the same key many times keeps one entry and a bounded queue.
        let at = sref("tenant/acme", "d");
        for i in 0..100 {
            c.put(c.epoch(), &at, true, found(&at, i), t(6));
        }
        assert_eq!(c.len(), 3);
        assert!(c.lock().order.len() <= 2 * 3 + 16);
        assert_eq!(version(c.get(&acme, "d", true, t(7))), Some(99));
        c.clear();
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_disabled_cache_keeps_nothing() {
        let c = ResolveCache::new(CacheConfig::DISABLED);
        let bot = sref(BOT, "llm");
        c.put(c.epoch(), &bot, true, found(&bot, 1), t(0));
        assert_eq!(version(c.get(&bot.scope, "llm", true, t(0))), None);
        assert_eq!(c.len(), 0);
    }
}
