//! The steps of one flight (see the parent module for the protocol): read,
//! wait out another holder's lease, take the lease, call the provider, land
//! the outcome with check-and-set.

use std::time::Duration;

use locksmith_domain::ConnectionRef;
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use super::{Clock, Demand, Inner, Landed, Outcome, RefreshConfig, needs_reauth};
use crate::catalog::{AuthMode, Provider};
use crate::credstore::OAuthApp;
use crate::error::BrokerError;
use crate::record::{ConnectionState, Lease, Status};
use crate::token::{self, TokenError};

/// How many times a flight may start over (a conflict, a lapsed lease)
/// before it gives up; each round is a read and at most one lease wait.
const MAX_ROUNDS: usize = 16;

/// Whether `state`'s access token should be refreshed at `now`: missing,
/// or expiring within the skew window (at most half its lifetime, so a
/// short-lived token is not refreshed on every use).
pub(super) fn wants_refresh(
    config: &RefreshConfig,
    state: &ConnectionState,
    now: OffsetDateTime,
) -> bool {
    if state.access_token.is_none() {
        return true;
    }
    let Some(expires_at) = state.expires_at else {
        return false;
    };
    let lifetime = expires_at - state.updated_at;
    let skew = config.skew.min(lifetime / 2).max(time::Duration::ZERO);
    now + skew >= expires_at
}

fn backoff(config: &RefreshConfig, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    config
        .backoff_base
        .saturating_mul(factor)
        .min(config.backoff_max)
}

impl Inner {
    /// One flight. `stale` is the access token the demand found wanting: a
    /// record holding another one has been refreshed by someone else.
    pub(super) async fn refresh(
        &self,
        at: &ConnectionRef,
        clock: &Clock,
        demand: Demand,
        stale: Option<secrecy::SecretString>,
    ) -> Outcome {
        let provider = self.providers.provider(at).await?;
        let app = self.credstore.oauth_app(&at.scope, &at.integration).await?;
        for _ in 0..MAX_ROUNDS {
            let now = clock.now();
            let (state, version) = self
                .credstore
                .get(None, at)
                .await?
                .ok_or(BrokerError::NotFound("connection"))?;
            let current = state.access_token.as_ref().map(|t| t.expose_secret());
            let refreshed_since =
                current.is_some() && current != stale.as_ref().map(|t| t.expose_secret());
            if state.status == Status::NeedsReauth {
                return Ok(Landed {
                    state,
                    version,
                    failure: Some(needs_reauth(at)),
                });
            }
            if refreshed_since
                || (demand == Demand::Fresh && !wants_refresh(&self.config, &state, now))
            {
                return Ok(Landed {
                    state,
                    version,
                    failure: None,
                });
            }
            if let Some(lease) = state
                .lease
                .as_ref()
                .filter(|_| state.leased_by_other(&self.holder, now))
            {
                // Another replica is calling the provider: its tokens will
                // be the record's next version. Polls end at the lease's
                // expiry, when a holder that died is taken over.
                self.wait_for_next_version(at, clock, version, lease.until)
                    .await?;
                continue;
            }
            if demand == Demand::Fresh
                && state.status == Status::RefreshFailing
                && let Some(retry_at) = state.retry_at.filter(|r| *r > now)
            {
                let retry_after = Duration::try_from(retry_at - now).unwrap_or_default();
                return Ok(Landed {
                    state,
                    version,
                    failure: Some(BrokerError::Unavailable {
                        what: "the connection's refresh (backing off after provider failures)",
                        retry_after,
                    }),
                });
            }
            if state.auth_mode == AuthMode::OAuth2AuthorizationCode && state.refresh_token.is_none()
            {
                // Nothing to refresh with: only the user can mend it.
                let mut next = state;
                next.status = Status::NeedsReauth;
                next.lease = None;
                next.updated_at = token::whole_seconds(now);
                match self.credstore.put(None, at, &next, version).await {
                    Ok(version) => {
                        return Ok(Landed {
                            state: next,
                            version,
                            failure: Some(needs_reauth(at)),
                        });
                    }
                    Err(BrokerError::VersionConflict) => continue,
                    Err(e) => return Err(e),
                }
            }
            let inputs = provider
                .resolve_inputs(&state.inputs)
                .map_err(|e| BrokerError::from(TokenError::Endpoint(e.into())))?;
            let mut leased = state;
            leased.lease = Some(Lease {
                holder: self.holder.clone(),
                until: now + self.config.lease_ttl,
            });
            let lease_version = match self.credstore.put(None, at, &leased, version).await {
                Ok(v) => v,
                // Another replica moved first (its lease, or its tokens):
                // read again and follow it.
                Err(BrokerError::VersionConflict) => continue,
                Err(e) => return Err(e),
            };
            tracing::debug!(connection = %at, holder = %self.holder, "refresh lease taken");
            let result = self.call_provider(&provider, &inputs, &app, &leased).await;
            return self.land(at, clock, leased, lease_version, result).await;
        }
        Err(BrokerError::Unavailable {
            what: "the connection's refresh (too much contention)",
            retry_after: self.config.poll_interval,
        })
    }

    /// Polls the record until its version moves past `version` or the
    /// clock reaches `until`.
    async fn wait_for_next_version(
        &self,
        at: &ConnectionRef,
        clock: &Clock,
        version: u64,
        until: OffsetDateTime,
    ) -> Result<(), BrokerError> {
        loop {
            clock.sleep_until(until, self.config.poll_interval).await;
            match self.credstore.get(None, at).await? {
                Some((_, v)) if v != version => return Ok(()),
                Some(_) => {}
                None => return Err(BrokerError::NotFound("connection")),
            }
            if clock.now() >= until {
                return Ok(());
            }
        }
    }

    /// The provider call, bounded so that it ends before the lease lapses.
    async fn call_provider(
        &self,
        provider: &Provider,
        inputs: &crate::catalog::ConnectionInputs,
        app: &OAuthApp,
        state: &ConnectionState,
    ) -> Result<crate::catalog::TokenSet, TokenError> {
        let bound = self.config.lease_ttl - self.config.lease_ttl / 4;
        let call = async {
            match state.auth_mode {
                AuthMode::OAuth2ClientCredentials => {
                    let scopes = (!state.scopes.is_empty()).then_some(state.scopes.as_slice());
                    token::client_credentials(&self.egress, provider, inputs, app, scopes).await
                }
                _ => {
                    // Checked by the caller: a code connection here has one.
                    let refresh = state.refresh_token.as_ref().ok_or_else(|| {
                        TokenError::Endpoint(crate::catalog::EndpointError::NotApplicable {
                            integration: provider.id().to_string(),
                            mode: provider.auth_mode().as_str(),
                            what: "refresh token",
                        })
                    })?;
                    token::refresh(&self.egress, provider, inputs, app, refresh).await
                }
            }
        };
        match tokio::time::timeout(bound, call).await {
            Ok(result) => result,
            Err(_) => Err(TokenError::Egress(locksmith_egress::EgressError::Timeout {
                host: provider.id().to_string(),
                limit: bound,
            })),
        }
    }

    /// Writes the outcome of the provider call over the leased version.
    async fn land(
        &self,
        at: &ConnectionRef,
        clock: &Clock,
        leased: ConnectionState,
        lease_version: u64,
        result: Result<crate::catalog::TokenSet, TokenError>,
    ) -> Outcome {
        let now = clock.now();
        let lease_until = leased.lease.as_ref().map_or(now, |l| l.until);
        let mut next = leased;
        next.lease = None;
        let failure = match result {
            Ok(tokens) => {
                token::apply_tokens(&mut next, tokens, now);
                return self
                    .write_tokens(at, clock, next, lease_version, lease_until)
                    .await;
            }
            Err(e) if e.is_invalid_grant() => {
                tracing::warn!(connection = %at, error = %e, "refresh refused: needs re-authorization");
                next.status = Status::NeedsReauth;
                next.updated_at = token::whole_seconds(now);
                needs_reauth(at)
            }
            Err(e) if e.is_transient() => {
                next.failures = next.failures.saturating_add(1);
                let backoff = backoff(&self.config, next.failures);
                next.status = Status::RefreshFailing;
                next.retry_at = Some(token::whole_seconds(now + backoff));
                tracing::warn!(connection = %at, error = %e, failures = next.failures, "refresh failed; backing off");
                BrokerError::Unavailable {
                    what: "the provider",
                    retry_after: backoff,
                }
            }
            Err(e) => {
                tracing::warn!(connection = %at, error = %e, "refresh failed");
                e.into()
            }
        };
        // Release the lease with the failure recorded. If the record moved
        // (the lease lapsed and another replica took over), it is theirs now.
        match self.credstore.put(None, at, &next, lease_version).await {
            Ok(version) => Ok(Landed {
                state: next,
                version,
                failure: Some(failure),
            }),
            Err(BrokerError::VersionConflict) => {
                let (state, version) = self
                    .credstore
                    .get(None, at)
                    .await?
                    .ok_or(BrokerError::NotFound("connection"))?;
                Ok(Landed {
                    state,
                    version,
                    failure: Some(failure),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Stores new tokens over the leased version. The provider has already
    /// consumed the old refresh token, so these tokens are the connection's
    /// only future: a conflict (the lease lapsed and the record moved) is
    /// resolved by writing them onto the newer version, and an unreachable
    /// store is retried until the lease's expiry.
    async fn write_tokens(
        &self,
        at: &ConnectionRef,
        clock: &Clock,
        next: ConnectionState,
        lease_version: u64,
        lease_until: OffsetDateTime,
    ) -> Outcome {
        let mut expected = lease_version;
        let mut to_write = next.clone();
        let mut pause = self.config.poll_interval;
        for _ in 0..MAX_ROUNDS {
            match self.credstore.put(None, at, &to_write, expected).await {
                Ok(version) => {
                    tracing::debug!(connection = %at, version, "refreshed tokens stored");
                    return Ok(Landed {
                        state: to_write,
                        version,
                        failure: None,
                    });
                }
                Err(BrokerError::VersionConflict) => {
                    let (current, version) = self
                        .credstore
                        .get(None, at)
                        .await?
                        .ok_or(BrokerError::NotFound("connection"))?;
                    tracing::warn!(connection = %at, "the record moved under a refresh lease; merging the new tokens");
                    to_write = merge_tokens(current, &next, &self.holder);
                    expected = version;
                }
                Err(e @ BrokerError::Unavailable { .. }) if clock.now() < lease_until => {
                    tracing::warn!(connection = %at, error = %e, "storing refreshed tokens; retrying");
                    clock.sleep_until(lease_until, pause).await;
                    pause = pause.saturating_mul(2);
                }
                Err(e) => {
                    tracing::error!(connection = %at, error = %e, "refreshed tokens could not be stored");
                    return Err(e);
                }
            }
        }
        Err(BrokerError::VersionConflict)
    }
}

/// `current` with `fresh`'s token fields; `current`'s lease kept unless it
/// is `holder`'s own.
fn merge_tokens(
    current: ConnectionState,
    fresh: &ConnectionState,
    holder: &str,
) -> ConnectionState {
    let mut merged = current;
    merged.access_token = fresh.access_token.clone();
    merged.refresh_token = fresh.refresh_token.clone();
    merged.expires_at = fresh.expires_at;
    merged.scopes = fresh.scopes.clone();
    merged.metadata = fresh.metadata.clone();
    merged.status = fresh.status;
    merged.failures = fresh.failures;
    merged.retry_at = fresh.retry_at;
    merged.updated_at = fresh.updated_at;
    if merged.lease.as_ref().is_some_and(|l| l.holder == holder) {
        merged.lease = None;
    }
    merged
}

#[cfg(test)]
mod tests {
    use locksmith_domain::IntegrationId;

    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(s).unwrap()
    }

    #[test]
    fn refresh_inside_the_skew_window_or_half_the_lifetime() {
        let config = RefreshConfig::default(); // skew 60 s
        let mut c = ConnectionState::new(
            IntegrationId::parse("github").unwrap(),
            AuthMode::OAuth2AuthorizationCode,
            at(0),
        );
        assert!(wants_refresh(&config, &c, at(0)), "no token yet");
        c.access_token = Some("t".into());
        assert!(!wants_refresh(&config, &c, at(1_000_000)), "never expires");
        c.expires_at = Some(at(3600));
        assert!(!wants_refresh(&config, &c, at(3539)));
        assert!(wants_refresh(&config, &c, at(3540)));
        // A 30-second token: the window is 15 s, not 60 s.
        c.updated_at = at(3570);
        assert!(!wants_refresh(&config, &c, at(3584)));
        assert!(wants_refresh(&config, &c, at(3585)));
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let config = RefreshConfig::default(); // 5 s, at most 300 s
        let secs: Vec<u64> = [1, 2, 3, 4, 6, 7, 40, u32::MAX]
            .into_iter()
            .map(|n| backoff(&config, n).as_secs())
            .collect();
        assert_eq!(secs, [5, 10, 20, 40, 160, 300, 300, 300]);
    }
}
