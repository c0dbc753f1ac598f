//! The refresh protocol (design brief §4): a connection's tokens are
//! refreshed by exactly one caller at a time, across every broker replica,
//! and a new refresh token is never lost.
//!
//! # Public API (stable)
//!
//! ```text
//! RefreshConfig { skew: time::Duration, lease_ttl: Duration, poll_interval: Duration,
//!                 backoff_base: Duration, backoff_max: Duration }   (Default: 60 s, 30 s, 100 ms, 5 s, 5 min)
//! RefreshConfig::check(&self, egress_timeout: Duration) -> Result<(), BrokerError>  (call at start)
//! trait ProviderSource: Send + Sync { fn provider<'a>(&'a self, at: &'a ConnectionRef) -> ProviderFuture<'a> }
//!     (impl for Catalog: the shipped entries)
//! Refresher::new(credstore: CredstoreClient, egress: EgressClient,
//!                providers: Arc<dyn ProviderSource>, config: RefreshConfig) -> Result<Self, BrokerError>
//! Refresher::with_providers(self, providers: Arc<dyn ProviderSource>) -> Self
//! Refresher::holder(&self) -> &str
//! Refresher::access_token(&self, principal: &Principal, at: &ConnectionRef, now: OffsetDateTime)
//!     -> Result<AccessCredential { credential: SecretString, username: Option<String>,
//!                                  expires_at: Option<OffsetDateTime>, version: u64,
//!                                  inputs: BTreeMap<String, String> }, BrokerError>
//! Refresher::access_token_after_refusal(&self, principal: &Principal, at: &ConnectionRef,
//!     refused_version: u64, now: OffsetDateTime) -> Result<AccessCredential, BrokerError>
//! Refresher::refresh_now(&self, principal: &Principal, at: &ConnectionRef, now: OffsetDateTime)
//!     -> Result<ConnectionState, BrokerError>
//! ```
//!
//! # The protocol
//!
//! 1. **Single flight in the process.** Demands for one connection share one
//!    refresh: the first starts it as a spawned task (so a caller that hangs
//!    up cannot abandon a refresh half-way, with the provider's new refresh
//!    token in hand), the others wait for its outcome on a `watch` channel.
//! 2. **A lease across replicas.** The flight reads the record; if another
//!    holder's lease runs, it polls for the record's next version (every
//!    `poll_interval`, never past the lease's `until`) and then uses what the
//!    winner wrote. Otherwise it writes a lease (`holder`, `now + lease_ttl`)
//!    with check-and-set on the version read: of several replicas only one
//!    write succeeds; the others see a conflict and start over (and find the
//!    lease). A holder that died leaves a lease that lapses at `until`, and
//!    the next caller takes it.
//! 3. **Tokens written with check-and-set** on the version the lease write
//!    produced, lease cleared; a refresh answer without a refresh token keeps
//!    the old one.
//! 4. **Failures**: `invalid_grant` → status `needs_reauth` (lease released);
//!    a transient failure → `refresh_failing`, `failures + 1`, `retry-at`
//!    after an exponential backoff (lease released), and the old access token
//!    is still answered while it has not expired; any other error releases
//!    the lease and is answered.
//!
//! Only the holder calls the provider, so the provider call must end before
//! the lease lapses: it is bounded by `lease_ttl` minus a quarter (and the
//! egress client's own timeout should be well below that).
//!
//! **Time** is always the caller's `now`; while a flight runs, its clock is
//! that `now` plus the real time elapsed since (tokio's clock, so tests may
//! pause it). Leases and expiries are compared on that clock only.
//!
//! **Principals**: the first read of a demand is made with the caller's
//! principal, so the credential store checks the caller may see the
//! connection; the protocol's own reads and writes (lease, tokens, status)
//! are the broker's maintenance, made as the broker itself. Callers check the
//! role a call needs (`refresh_now` is a write) before calling.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locksmith_auth::Principal;
use locksmith_domain::ConnectionRef;
use locksmith_egress::EgressClient;
use secrecy::SecretString;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::catalog::{AuthMode, Catalog, Provider};
use crate::credstore::CredstoreClient;
use crate::error::BrokerError;
use crate::record::{ConnectionState, Status};

/// The future a [`ProviderSource`] answers.
pub type ProviderFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<Provider>, BrokerError>> + Send + 'a>>;

/// Where the refresher finds a connection's provider: the shipped catalog,
/// plus (in the broker) the tenant's custom providers.
pub trait ProviderSource: Send + Sync {
    /// The provider of `at.integration` as seen by `at.scope`'s tenant;
    /// [`BrokerError::NotFound`] (`integration`) if there is none.
    fn provider<'a>(&'a self, at: &'a ConnectionRef) -> ProviderFuture<'a>;
}

impl ProviderSource for Catalog {
    fn provider<'a>(&'a self, at: &'a ConnectionRef) -> ProviderFuture<'a> {
        let found = self
            .get(at.integration.as_str())
            .map(Arc::clone)
            .ok_or(BrokerError::NotFound("integration"));
        Box::pin(std::future::ready(found))
    }
}

/// Tuning of the protocol.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// Refresh proactively when the access token expires within this (or
    /// within half its lifetime, if that is shorter: a provider issuing
    /// 30-second tokens must not be refreshed on every call).
    pub skew: time::Duration,
    /// How long a lease holds. Must exceed the egress timeout: only the
    /// holder may call the provider, and a lease that lapses mid-call lets
    /// a second refresh race the first.
    pub lease_ttl: Duration,
    /// How often a waiting replica reads the record again.
    pub poll_interval: Duration,
    /// First backoff after a transient failure; doubled per failure.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            skew: time::Duration::seconds(60),
            lease_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl RefreshConfig {
    /// Checks the lease outlives a provider call: the holder's call is cut
    /// at three quarters of the lease, and the egress client's own timeout
    /// (`[egress] timeout_ms`) must end it before that.
    pub fn check(&self, egress_timeout: Duration) -> Result<(), BrokerError> {
        if egress_timeout >= self.lease_ttl - self.lease_ttl / 4 {
            return Err(BrokerError::InvalidArgument {
                field: "refresh.lease_ttl_ms".into(),
                reason: format!(
                    "must exceed the egress timeout ({} ms) by a third at least",
                    egress_timeout.as_millis()
                ),
            });
        }
        Ok(())
    }
}

/// A usable credential.
pub struct AccessCredential {
    /// The access token, API key or password.
    pub credential: SecretString,
    /// The user name of a basic-auth connection.
    pub username: Option<String>,
    /// When the access token expires, if it does.
    pub expires_at: Option<OffsetDateTime>,
    /// The record version it was read from.
    pub version: u64,
    /// The connection's per-connection inputs (the API base URL needs them).
    pub inputs: BTreeMap<String, String>,
}

impl std::fmt::Debug for AccessCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessCredential")
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What a flight ends with: the record as it stands after it, and the
/// failure of the refresh if there was one (the old access token may still
/// be usable after a transient one).
#[derive(Clone)]
struct Landed {
    state: ConnectionState,
    version: u64,
    failure: Option<BrokerError>,
}

type Outcome = Result<Landed, BrokerError>;

/// Refreshes connections; one per broker process (or several in tests, one
/// per simulated broker). Cheap to clone.
#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

struct Inner {
    holder: String,
    credstore: CredstoreClient,
    egress: EgressClient,
    providers: Arc<dyn ProviderSource>,
    config: RefreshConfig,
    /// Flights by connection resource name.
    flights: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("holder", &self.inner.holder)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Why a demand needs the provider, decided on the first read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Demand {
    /// A usable access token (refresh only if it is not fresh).
    Fresh,
    /// A refresh, even of a fresh token (unless someone refreshed since).
    Forced,
}

impl Refresher {
    /// A refresher with its own lease holder id (`broker-<uuid>`).
    pub fn new(
        credstore: CredstoreClient,
        egress: EgressClient,
        providers: Arc<dyn ProviderSource>,
        config: RefreshConfig,
    ) -> Result<Self, BrokerError> {
        if config.lease_ttl < Duration::from_millis(100)
            || config.poll_interval.is_zero()
            || config.poll_interval >= config.lease_ttl
        {
            return Err(BrokerError::InvalidArgument {
                field: "refresh".into(),
                reason: "lease_ttl must be at least 100 ms and poll_interval between 0 and it"
                    .into(),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                holder: format!("broker-{}", uuid::Uuid::new_v4().simple()),
                credstore,
                egress,
                providers,
                config,
                flights: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The same refresher (holder id, clients, tuning) finding providers in
    /// `providers` instead: the broker swaps in its tenant-aware source
    /// (shipped catalog plus custom providers) when it is built, before any
    /// flight, so callers keep building refreshers over the catalog.
    pub fn with_providers(self, providers: Arc<dyn ProviderSource>) -> Self {
        Self {
            inner: Arc::new(Inner {
                holder: self.inner.holder.clone(),
                credstore: self.inner.credstore.clone(),
                egress: self.inner.egress.clone(),
                providers,
                config: self.inner.config.clone(),
                flights: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// This refresher's lease holder id.
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// A usable credential for `at` at `now`: an API key or basic
    /// connection's stored one; an OAuth connection's access token, refreshed
    /// first when it expires within the skew window (authorization code) or
    /// has expired (client credentials: a new token is fetched).
    pub async fn access_token(
        &self,
        principal: &Principal,
        at: &ConnectionRef,
        now: OffsetDateTime,
    ) -> Result<AccessCredential, BrokerError> {
        let (state, version) = self
            .inner
            .credstore
            .get(Some(principal), at)
            .await?
            .ok_or(BrokerError::NotFound("connection"))?;
        match state.auth_mode {
            AuthMode::ApiKey => {
                let key = state.api_key.ok_or_else(|| missing("api-key"))?;
                return Ok(AccessCredential {
                    credential: key,
                    username: None,
                    expires_at: None,
                    version,
                    inputs: state.inputs,
                });
            }
            AuthMode::Basic => {
                return Ok(AccessCredential {
                    credential: state.password.ok_or_else(|| missing("password"))?,
                    username: Some(state.username.ok_or_else(|| missing("username"))?),
                    expires_at: None,
                    version,
                    inputs: state.inputs,
                });
            }
            AuthMode::OAuth2AuthorizationCode | AuthMode::OAuth2ClientCredentials => {}
        }
        if state.status == Status::NeedsReauth {
            return Err(needs_reauth(at));
        }
        if !protocol::wants_refresh(&self.inner.config, &state, now) {
            return credential(state, version);
        }
        let landed = self.fly(at, now, Demand::Fresh, &state).await?;
        match landed.failure {
            None => credential(landed.state, landed.version),
            // A transient failure (or a backoff) inside the skew window: the
            // old token is still good until it expires.
            Some(BrokerError::Unavailable { .. }) if usable_at(&landed.state, now) => {
                credential(landed.state, landed.version)
            }
            Some(e) => Err(e),
        }
    }

    /// Refreshes `at` now (an explicit request), unless another caller
    /// refreshed it since this one read it; answers the record after it.
    /// After the provider refused the credential read at `refused_version`
    /// (an HTTP 401 at the token proxy): a refreshed one, through the same
    /// flight and lease as every other refresh, unless the connection has
    /// moved past that version already (someone refreshed meanwhile); then
    /// the current one. API keys and basic credentials cannot be refreshed:
    /// their current value is answered.
    pub async fn access_token_after_refusal(
        &self,
        principal: &Principal,
        at: &ConnectionRef,
        refused_version: u64,
        now: OffsetDateTime,
    ) -> Result<AccessCredential, BrokerError> {
        let (state, version) = self
            .inner
            .credstore
            .get(Some(principal), at)
            .await?
            .ok_or(BrokerError::NotFound("connection"))?;
        if version > refused_version || !state.auth_mode.is_oauth2() {
            return self.access_token(principal, at, now).await;
        }
        if state.status == Status::NeedsReauth {
            return Err(needs_reauth(at));
        }
        let landed = self.fly(at, now, Demand::Forced, &state).await?;
        match landed.failure {
            None => credential(landed.state, landed.version),
            Some(e) => Err(e),
        }
    }

    /// Refreshes now, even a fresh token (unless someone refreshed since).
    pub async fn refresh_now(
        &self,
        principal: &Principal,
        at: &ConnectionRef,
        now: OffsetDateTime,
    ) -> Result<ConnectionState, BrokerError> {
        let (state, _) = self
            .inner
            .credstore
            .get(Some(principal), at)
            .await?
            .ok_or(BrokerError::NotFound("connection"))?;
        if !state.auth_mode.is_oauth2() {
            return Err(BrokerError::InvalidArgument {
                field: "integration".into(),
                reason: format!(
                    "{} connections ({}) have nothing to refresh",
                    state.integration,
                    state.auth_mode.as_str()
                ),
            });
        }
        let landed = self.fly(at, now, Demand::Forced, &state).await?;
        match landed.failure {
            None => Ok(landed.state),
            Some(e) => Err(e),
        }
    }

    /// Joins the connection's flight, or starts one.
    async fn fly(
        &self,
        at: &ConnectionRef,
        now: OffsetDateTime,
        demand: Demand,
        seen: &ConnectionState,
    ) -> Outcome {
        let key = at.resource_name();
        let stale = seen.access_token.clone();
        loop {
            let mut rx = {
                let mut flights = self
                    .inner
                    .flights
                    .lock()
                    .map_err(|_| BrokerError::Internal("refresh flights poisoned".into()))?;
                match flights.get(&key) {
                    // A flight whose task is alive: wait for it.
                    Some(rx) if rx.has_changed().is_ok() => rx.clone(),
                    _ => {
                        let (tx, rx) = watch::channel(None);
                        flights.insert(key.clone(), rx.clone());
                        let inner = Arc::clone(&self.inner);
                        let at = at.clone();
                        let key = key.clone();
                        let stale = stale.clone();
                        // Spawned: the refresh runs to its end even if
                        // every caller waiting for it goes away.
                        tokio::spawn(async move {
                            let clock = Clock::start(now);
                            let outcome = inner.refresh(&at, &clock, demand, stale).await;
                            // Remove the flight before publishing, so a
                            // demand arriving after the answer starts afresh
                            // from the record rather than reusing it.
                            if let Ok(mut flights) = inner.flights.lock()
                                && flights
                                    .get(&key)
                                    .is_some_and(|r| r.same_channel(&rx_of(&tx)))
                            {
                                flights.remove(&key);
                            }
                            let _ = tx.send(Some(outcome));
                        });
                        rx
                    }
                }
            };
            match rx.wait_for(Option::is_some).await {
                Ok(outcome) => {
                    if let Some(outcome) = outcome.as_ref() {
                        return outcome.clone();
                    }
                }
                // The flight's task died without an answer (a panic, the
                // runtime shutting down): start over.
                Err(_) => continue,
            }
        }
    }
}

/// A receiver of `tx`'s channel, to compare channels.
fn rx_of<T>(tx: &watch::Sender<T>) -> watch::Receiver<T> {
    tx.subscribe()
}

fn missing(field: &'static str) -> BrokerError {
    BrokerError::Internal(format!("the connection record has no `{field}`"))
}

fn needs_reauth(at: &ConnectionRef) -> BrokerError {
    BrokerError::NeedsReauth {
        connection: at.resource_name(),
    }
}

/// The access token, if it has not expired at `now`.
fn usable_at(state: &ConnectionState, now: OffsetDateTime) -> bool {
    state.fresh_at(now, time::Duration::ZERO)
}

fn credential(state: ConnectionState, version: u64) -> Result<AccessCredential, BrokerError> {
    Ok(AccessCredential {
        credential: state.access_token.ok_or_else(|| missing("access-token"))?,
        username: None,
        expires_at: state.expires_at,
        version,
        inputs: state.inputs,
    })
}

/// A flight's clock: the caller's `now` plus the real time elapsed since.
struct Clock {
    start_at: OffsetDateTime,
    started: tokio::time::Instant,
}

impl Clock {
    fn start(now: OffsetDateTime) -> Self {
        Self {
            start_at: now,
            started: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.start_at + self.started.elapsed()
    }

    /// Sleeps until `deadline` on this clock, or for `at_most`, whichever
    /// is sooner.
    async fn sleep_until(&self, deadline: OffsetDateTime, at_most: Duration) {
        let left = (deadline - self.now()).max(time::Duration::ZERO);
        let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
        tokio::time::sleep(left.min(at_most)).await;
    }
}

mod protocol;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_must_outlive_the_egress_timeout() {
        let config = RefreshConfig::default();
        assert!(config.check(Duration::from_secs(10)).is_ok());
        let err = config.check(Duration::from_millis(22_500)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refresh.lease_ttl_ms: must exceed the egress timeout (22500 ms) by a third at least"
        );
    }

    #[test]
    fn the_clock_is_the_callers_now_plus_elapsed_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
            let clock = Clock::start(at);
            assert_eq!(clock.now(), at);
            // Sleeps end at the deadline or after `at_most`, whichever is first.
            clock
                .sleep_until(at + Duration::from_secs(5), Duration::from_secs(1))
                .await;
            assert_eq!(clock.now(), at + Duration::from_secs(1));
            clock
                .sleep_until(at + Duration::from_millis(1500), Duration::from_secs(60))
                .await;
            assert_eq!(clock.now(), at + Duration::from_millis(1500));
            // A deadline already passed does not sleep.
            clock.sleep_until(at, Duration::from_secs(60)).await;
            assert_eq!(clock.now(), at + Duration::from_millis(1500));
        });
    }
}
