//! Single-flight slots: a cached value per key, refilled by one caller at a
//! time while the others wait for that caller's result instead of asking
//! the peer themselves. The proxy's access-token cache and its tenant-quota
//! cache are both made of these, so a thousand concurrent calls on an
//! expired token become one call to the broker per proxy replica (and the
//! broker's own single flight and lease make that one token request).

use std::{
    borrow::Borrow,
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::error::ProxyError;

/// One key's cached value and its refill lock.
pub struct Slot<T> {
    current: RwLock<Option<Arc<T>>>,
    failure: RwLock<Option<ProxyError>>,
    /// Bumped by every refill, so a waiter can tell that someone refilled
    /// while it waited.
    generation: AtomicU64,
    /// Bumped by every [`Slot::invalidate`] (under `current`'s lock), so a
    /// refill that was under way keeps what it fetched out of the cache.
    epoch: AtomicU64,
    refilling: tokio::sync::Mutex<()>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            current: RwLock::new(None),
            failure: RwLock::new(None),
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            refilling: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T> Slot<T> {
    /// The cached value, if any (possibly stale: the caller judges).
    pub fn current(&self) -> Option<Arc<T>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the cached value, so the next caller refills. A refill under
    /// way still answers its own callers, but what it fetched may predate
    /// the change that called for this, so it is not kept.
    pub fn invalidate(&self) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        *current = None;
    }

    /// The cached value if `good` accepts it; else refills it with `fetch`,
    /// one caller at a time. A caller that waited while another refilled
    /// takes that refill's outcome, success or failure, without fetching.
    pub async fn get_or_refill<F, Fut>(
        &self,
        good: impl Fn(&T) -> bool,
        fetch: F,
    ) -> Result<Arc<T>, ProxyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ProxyError>>,
    {
        if let Some(value) = self.current().filter(|v| good(v)) {
            return Ok(value);
        }
        let seen = self.generation.load(Ordering::Acquire);
        let _refilling = self.refilling.lock().await;
        if let Some(value) = self.current().filter(|v| good(v)) {
            return Ok(value);
        }
        if self.generation.load(Ordering::Acquire) != seen
            && let Some(failure) = self
                .failure
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        {
            return Err(failure);
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let outcome = fetch().await.map(Arc::new);
        match &outcome {
            Ok(value) => {
                let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
                if self.epoch.load(Ordering::Acquire) == epoch {
                    *current = Some(Arc::clone(value));
                }
                drop(current);
                *self.failure.write().unwrap_or_else(PoisonError::into_inner) = None;
            }
            Err(e) => {
                *self.failure.write().unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        outcome
    }
}

/// Slots by key, at most `max` of them: past it, slots nobody holds are
/// dropped (their values are refetched on next use).
pub struct Slots<K, T> {
    slots: RwLock<HashMap<K, Arc<Slot<T>>>>,
    max: usize,
}

impl<K: Eq + Hash, T> Slots<K, T> {
    /// An empty set holding at most `max` slots.
    pub fn new(max: usize) -> Self {
        Self {
            slots: RwLock::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// The slot of `key`, created empty if needed. Borrowed keys (`&str`
    /// for `String`) cost no allocation when the slot exists.
    pub fn slot<Q>(&self, key: &Q) -> Arc<Slot<T>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(slot) = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Arc::clone(slot);
        }
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        if slots.len() >= self.max && !slots.contains_key(key) {
            // Only this map holds an idle slot: dropping it loses a cached
            // value, never a refill in progress.
            slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        Arc::clone(slots.entry(key.to_owned()).or_default())
    }
}

impl<K: Eq + Hash, T> Slots<K, T> {
    /// Drops `key`'s cached value, if it has a slot.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .map(Arc::clone);
        if let Some(slot) = slot {
            slot.invalidate();
        }
    }

    /// Drops every cached value.
    pub fn invalidate_all(&self) {
        let slots: Vec<Arc<Slot<T>>> = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(Arc::clone)
            .collect();
        for slot in slots {
            slot.invalidate();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn concurrent_misses_fetch_once_and_share_the_outcome() {
        let slot = Arc::new(Slot::<u32>::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let slot = Arc::clone(&slot);
            let fetches = Arc::clone(&fetches);
            tasks.push(tokio::spawn(async move {
                slot.get_or_refill(
                    |_| true,
                    || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok(7)
                    },
                )
                .await
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn waiters_share_a_failure_and_the_next_caller_tries_again() {
        let slot = Arc::new(Slot::<u32>::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let slot = Arc::clone(&slot);
            let fetches = Arc::clone(&fetches);
            tasks.push(tokio::spawn(async move {
                slot.get_or_refill(
                    |_| true,
                    || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Err::<u32, _>(ProxyError::NotFound("connection"))
                    },
                )
                .await
            }));
        }
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Err(ProxyError::NotFound(_))));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        let again = slot
            .get_or_refill(|_| true, || async { Ok(1) })
            .await
            .unwrap();
        assert_eq!(*again, 1);
    }

    #[tokio::test]
    async fn a_value_the_caller_rejects_is_refetched() {
        let slot = Slot::<u32>::default();
        slot.get_or_refill(|_| true, || async { Ok(1) })
            .await
            .unwrap();
        let v = slot
            .get_or_refill(|v| *v > 1, || async { Ok(2) })
            .await
            .unwrap();
        assert_eq!(*v, 2);
    }

    #[tokio::test]
    async fn an_invalidated_value_is_refetched_and_a_refill_under_way_is_not_kept() {
        let slot = Arc::new(Slot::<u32>::default());
        slot.get_or_refill(|_| true, || async { Ok(1) })
            .await
            .unwrap();
        slot.invalidate();
        assert!(slot.current().is_none());
        // A refill that started before an invalidation answers its caller
        // but leaves the slot empty.
        let (started, start) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let refill = tokio::spawn({
            let slot = Arc::clone(&slot);
            async move {
                slot.get_or_refill(
                    |_| true,
                    || async move {
                        started.send(()).unwrap();
                        released.await.unwrap();
                        Ok(2)
                    },
                )
                .await
            }
        });
        start.await.unwrap();
        slot.invalidate();
        release.send(()).unwrap();
        assert_eq!(*refill.await.unwrap().unwrap(), 2);
        assert!(slot.current().is_none(), "a pre-change refill was kept");
        let v = slot
            .get_or_refill(|_| true, || async { Ok(3) })
            .await
            .unwrap();
        assert_eq!(*v, 3);
        assert_eq!(slot.current().as_deref(), Some(&3));
    }

    #[tokio::test]
    async fn slots_are_invalidated_one_by_key_or_all() {
        let slots = Slots::<String, u32>::new(10);
        for key in ["a", "b"] {
            slots
                .slot(key)
                .get_or_refill(|_| true, || async { Ok(1) })
                .await
                .unwrap();
        }
        slots.invalidate("a");
        assert!(slots.slot("a").current().is_none());
        assert!(slots.slot("b").current().is_some());
        slots.invalidate("absent");
        slots.invalidate_all();
        assert!(slots.slot("b").current().is_none());
    }

    #[test]
    fn idle_slots_are_dropped_past_the_bound() {
        let slots = Slots::<u32, u32>::new(2);
        let held = slots.slot(&1);
        let _ = slots.slot(&2);
        let _ = slots.slot(&3);
        assert!(slots.slots.read().unwrap().len() <= 2);
        assert!(Arc::ptr_eq(&held, &slots.slot(&1)), "a held slot survives");
    }
}
