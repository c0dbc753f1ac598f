//! Per-tenant rate limits, enforced alike at the edge and at the token
//! proxy: each tenant's `requests_per_minute`
//! quota from the registry (0 = the deployment default), enforced with
//! governor's GCRA, per edge replica. With N replicas behind a balancer a
//! tenant can get up to N × its quota; set the quota (or the default) to the
//! suite-wide figure divided by the replica count.
//!
//! Answers carry the IETF `RateLimit-Policy` / `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers), and a refusal `Retry-After`.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::{InMemoryState, NotKeyed},
};
use http::{HeaderMap, HeaderValue};
use locksmith_domain::TenantId;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// The policy name in the `RateLimit*` headers.
const POLICY: &str = "tenant";

/// The outcome of one request against its tenant's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Requests per minute allowed.
    pub limit: u32,
    /// Requests left in the current window.
    pub remaining: u32,
    /// `Some` when refused: how long until one more request is allowed.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// Adds `RateLimit-Policy` and `RateLimit` to `headers`.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let reset = self.retry_after.map_or(0, whole_seconds_up);
        let policy = format!("\"{POLICY}\";q={};w=60", self.limit);
        let state = format!("\"{POLICY}\";r={};t={reset}", self.remaining);
        if let (Ok(p), Ok(s)) = (
            HeaderValue::from_str(&policy),
            HeaderValue::from_str(&state),
        ) {
            headers.insert("ratelimit-policy", p);
            headers.insert("ratelimit", s);
        }
    }
}

/// Rounds up to whole seconds, at least 1: `Retry-After: 0` invites a storm.
pub fn whole_seconds_up(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// One tenant's limiter and the quota reading it was made for.
struct TenantLimiter {
    per_minute: NonZeroU32,
    seen: Instant,
    limiter: Arc<Limiter>,
}

/// Every tenant's limiter on this replica.
pub struct RateLimits {
    default_per_minute: NonZeroU32,
    limiters: RwLock<HashMap<TenantId, TenantLimiter>>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Limits with `default_per_minute` for tenants whose quota is 0.
    pub fn new(default_per_minute: NonZeroU32) -> Self {
        Self {
            default_per_minute,
            limiters: RwLock::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// The tenant's limiter. A quota that differs from the limiter's
    /// replaces it only when it was read from the registry after the
    /// limiter's own reading: callers verified at different times carry
    /// different readings, and alternating between them must not restart
    /// the window on every request.
    fn limiter(&self, tenant: &TenantId, per_minute: NonZeroU32, seen: Instant) -> Arc<Limiter> {
        if let Ok(map) = self.limiters.read()
            && let Some(current) = map.get(tenant)
            && (current.per_minute == per_minute || seen <= current.seen)
        {
            return Arc::clone(&current.limiter);
        }
        let Ok(mut map) = self.limiters.write() else {
            return Arc::new(self.new_limiter(per_minute));
        };
        match map.get(tenant) {
            Some(current) if current.per_minute == per_minute || seen <= current.seen => {
                Arc::clone(&current.limiter)
            }
            _ => {
                // A changed quota starts a fresh window: the new figure applies at once.
                let limiter = Arc::new(self.new_limiter(per_minute));
                map.insert(
                    tenant.clone(),
                    TenantLimiter {
                        per_minute,
                        seen,
                        limiter: Arc::clone(&limiter),
                    },
                );
                limiter
            }
        }
    }

    fn new_limiter(&self, per_minute: NonZeroU32) -> Limiter {
        RateLimiter::direct_with_clock(Quota::per_minute(per_minute), self.clock.clone())
            .with_middleware::<StateInformationMiddleware>()
    }

    /// Counts one request of `tenant`, whose quota was read as
    /// `quota_per_minute` at `seen`.
    pub fn check(&self, tenant: &TenantId, quota_per_minute: u32, seen: Instant) -> Decision {
        let per_minute = NonZeroU32::new(quota_per_minute).unwrap_or(self.default_per_minute);
        let limiter = self.limiter(tenant, per_minute, seen);
        match limiter.check() {
            Ok(snapshot) => Decision {
                limit: per_minute.get(),
                remaining: snapshot.remaining_burst_capacity(),
                retry_after: None,
            },
            Err(not_until) => Decision {
                limit: per_minute.get(),
                remaining: 0,
                retry_after: Some(not_until.wait_time_from(self.clock.now())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_over_its_quota_is_refused_and_others_are_not() {
        let limits = RateLimits::new(NonZeroU32::new(1000).unwrap());
        let acme = TenantId::parse("acme").unwrap();
        let beta = TenantId::parse("beta").unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            let d = limits.check(&acme, 3, t0);
            assert_eq!((d.limit, d.remaining, d.retry_after), (3, 2 - i, None));
        }
        let refused = limits.check(&acme, 3, t0);
        assert_eq!(refused.remaining, 0);
        let wait = refused.retry_after.unwrap();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // beta has its own bucket, and the default when its quota is 0.
        let d = limits.check(&beta, 0, t0);
        assert_eq!((d.limit, d.retry_after), (1000, None));
    }

    #[test]
    fn an_older_quota_reading_never_restarts_the_window() {
        let limits = RateLimits::new(NonZeroU32::new(1000).unwrap());
        let acme = TenantId::parse("acme").unwrap();
        let old = Instant::now();
        let new = old + Duration::from_secs(1);
        // Two credentials verified at different times carry different readings.
        for _ in 0..2 {
            assert_eq!(limits.check(&acme, 2, new).retry_after, None);
        }
        for _ in 0..5 {
            assert!(limits.check(&acme, 3, old).retry_after.is_some());
            assert!(limits.check(&acme, 2, new).retry_after.is_some());
        }
        // A newer reading of a changed quota applies at once.
        let newer = new + Duration::from_secs(1);
        assert_eq!(limits.check(&acme, 10, newer).retry_after, None);
    }

    #[test]
    fn headers_follow_the_draft() {
        let mut headers = HeaderMap::new();
        Decision {
            limit: 60,
            remaining: 0,
            retry_after: Some(Duration::from_millis(1500)),
        }
        .write_headers(&mut headers);
        assert_eq!(headers["ratelimit-policy"], "\"tenant\";q=60;w=60");
        assert_eq!(headers["ratelimit"], "\"tenant\";r=0;t=2");
        assert_eq!(whole_seconds_up(Duration::ZERO), 1);
    }
}
