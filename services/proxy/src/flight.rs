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
    refilling: tokio::sync::Mutex<()>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            current: RwLock::new(None),
            failure: RwLock::new(None),
            generation: AtomicU64::new(0),
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
        let outcome = fetch().await.map(Arc::new);
        match &outcome {
            Ok(value) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(value));
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
