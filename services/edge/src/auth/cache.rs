//! A small time-bounded cache for verification results. The bound is the
//! point: a revoked API key or a suspended tenant is refused by every edge
//! replica within `ttl`, and at once by the replica that revoked it
//! ([`TtlCache::remove_where`]).

use std::{
    collections::HashMap,
    hash::Hash,
    sync::RwLock,
    time::{Duration, Instant},
};

/// Entries expire `ttl` after they were stored, or earlier if asked.
pub struct TtlCache<K, V> {
    entries: RwLock<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    max_entries: usize,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// A cache keeping entries at most `ttl`, and at most `max_entries` of them.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            ttl,
            max_entries,
        }
    }

    /// The value for `key`, if stored and not expired at `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.entries.read().ok()?;
        let (value, until) = entries.get(key)?;
        (now < *until).then(|| value.clone())
    }

    /// Stores `value` until `now + ttl`, or until `not_after` if sooner.
    /// With a zero ttl nothing is kept.
    pub fn insert(&self, key: K, value: V, now: Instant, not_after: Option<Instant>) {
        if self.ttl.is_zero() {
            return;
        }
        let until = match not_after {
            Some(limit) => limit.min(now + self.ttl),
            None => now + self.ttl,
        };
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= self.max_entries {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= self.max_entries {
                // Still full of live entries: start over rather than grow.
                // Callers then verify again, which is correct, only slower.
                entries.clear();
            }
        }
        entries.insert(key, (value, until));
    }

    /// Drops every entry whose value matches.
    pub fn remove_where(&self, mut matches: impl FnMut(&V) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, (value, _)| !matches(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_dropped() {
        let cache = TtlCache::new(Duration::from_secs(5), 10);
        let t0 = Instant::now();
        cache.insert("a", 1, t0, None);
        cache.insert("b", 2, t0, Some(t0 + Duration::from_secs(1)));
        assert_eq!(cache.get(&"a", t0 + Duration::from_millis(4999)), Some(1));
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(5)), None);
        assert_eq!(cache.get(&"b", t0 + Duration::from_secs(1)), None);
        cache.remove_where(|v| *v == 1);
        assert_eq!(cache.get(&"a", t0), None);
    }

    #[test]
    fn a_zero_ttl_keeps_nothing_and_size_is_bounded() {
        let off = TtlCache::new(Duration::ZERO, 10);
        let t0 = Instant::now();
        off.insert(1, 1, t0, None);
        assert_eq!(off.get(&1, t0), None);
        let small = TtlCache::new(Duration::from_secs(5), 2);
        for k in 0..5 {
            small.insert(k, k, t0, None);
        }
        assert!(small.entries.read().unwrap().len() <= 2);
        assert_eq!(small.get(&4, t0), Some(4));
    }
}
