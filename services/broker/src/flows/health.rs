//! Per-tenant connection health (seed 001's `GET /admin/health/tenants`):
//! each tenant's connections, at every owner under it, counted by health.
//!
//! How tenants and their connections are enumerated: a page of tenants
//! from the registry (its ListTenants, ordered by id; its page token is
//! ours, passed through), then, per tenant, the credential store's
//! ListTenantConnections, which walks that tenant's own folders (the
//! tenant's records, then each org's, bot's and user's that hold any) and
//! answers the records a thousand at a time. So a page costs one registry
//! call plus about one credential store call per tenant (more only for a
//! tenant with over a thousand connections), whatever the number of orgs,
//! bots and users, instead of a registry listing per org and a credential
//! store listing per member. Pages are at most [`MAX_TENANTS_PAGE`] tenants
//! because every connection of each is read to be counted.

use locksmith_auth::Principal;
use locksmith_domain::TenantId;
use locksmith_store::DocumentStore;
use time::OffsetDateTime;

use super::{Broker, invalid};
use crate::{
    catalog::AuthMode,
    error::BrokerError,
    record::{ConnectionState, Status},
};

/// An access token expiring this soon, with no refresh token to renew it,
/// makes its connection "expiring soon".
pub const EXPIRING_SOON: time::Duration = time::Duration::hours(24);
/// Tenants per page when the caller asks for none.
pub const DEFAULT_TENANTS_PAGE: i32 = 50;
/// Most tenants per page; larger requests are served this many.
pub const MAX_TENANTS_PAGE: i32 = 100;
/// Records per credential store call while counting one tenant.
const RECORDS_PAGE: i32 = 1000;

/// Where one connection stands, for the counts: exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Usable, and not about to stop being so on its own.
    Active,
    /// Active, but an OAuth authorization-code connection whose access
    /// token expires within [`EXPIRING_SOON`] (or has expired) and that
    /// holds no refresh token: it stops working unless the user authorizes
    /// again. One with a refresh token is renewed on its next use (and
    /// counted NEEDS_REAUTH or REFRESH_FAILING once that fails), so an
    /// expired access token alone is not counted here; nor are API keys,
    /// basic credentials or client credentials (fetched anew on demand).
    ExpiringSoon,
    /// The provider refused the refresh token.
    NeedsReauth,
    /// Refreshes fail for a transient reason.
    RefreshFailing,
}

/// The health of `state` at `now`.
pub fn health_of(state: &ConnectionState, now: OffsetDateTime) -> Health {
    match state.status {
        Status::NeedsReauth => Health::NeedsReauth,
        Status::RefreshFailing => Health::RefreshFailing,
        Status::Active
            if state.auth_mode == AuthMode::OAuth2AuthorizationCode
                && state.refresh_token.is_none()
                && state.expires_at.is_some_and(|at| at <= now + EXPIRING_SOON) =>
        {
            Health::ExpiringSoon
        }
        Status::Active => Health::Active,
    }
}

/// One tenant's connections by health; they add up to all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthCounts {
    /// [`Health::Active`].
    pub active: u32,
    /// [`Health::ExpiringSoon`].
    pub expiring_soon: u32,
    /// [`Health::NeedsReauth`].
    pub needs_reauth: u32,
    /// [`Health::RefreshFailing`].
    pub refresh_failing: u32,
}

impl HealthCounts {
    fn count(&mut self, health: Health) {
        let slot = match health {
            Health::Active => &mut self.active,
            Health::ExpiringSoon => &mut self.expiring_soon,
            Health::NeedsReauth => &mut self.needs_reauth,
            Health::RefreshFailing => &mut self.refresh_failing,
        };
        *slot = slot.saturating_add(1);
    }
}

/// One tenant's counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantHealth {
    /// The tenant.
    pub tenant: TenantId,
    /// Its connections by health.
    pub counts: HealthCounts,
}

/// One page of tenants' counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantHealthPage {
    /// By tenant id.
    pub tenants: Vec<TenantHealth>,
    /// Empty on the last page.
    pub next_page_token: String,
}

impl<S: DocumentStore> Broker<S> {
    /// One page of tenants with their connections counted by health at
    /// `now`. Operators only.
    pub async fn tenant_health(
        &self,
        principal: &Principal,
        page_size: i32,
        page_token: &str,
        now: OffsetDateTime,
    ) -> Result<TenantHealthPage, BrokerError> {
        principal
            .require_operator()
            .map_err(|_| BrokerError::PermissionDenied {
                needs: "an operator admin key".into(),
            })?;
        let size = match page_size {
            0 => DEFAULT_TENANTS_PAGE,
            n if n < 0 => return Err(invalid("page_size", "must not be negative")),
            n => n.min(MAX_TENANTS_PAGE),
        };
        let registry = self.registry()?;
        let page = registry.list_tenants(principal, size, page_token).await?;
        let mut tenants = Vec::with_capacity(page.tenants.len());
        for tenant in page.tenants {
            let counts = self.count_tenant(principal, &tenant, now).await?;
            tenants.push(TenantHealth { tenant, counts });
        }
        Ok(TenantHealthPage {
            tenants,
            next_page_token: page.next_page_token,
        })
    }

    /// Every connection of `tenant`, counted.
    async fn count_tenant(
        &self,
        principal: &Principal,
        tenant: &TenantId,
        now: OffsetDateTime,
    ) -> Result<HealthCounts, BrokerError> {
        let mut counts = HealthCounts::default();
        let mut token = String::new();
        loop {
            let page = match self
                .credstore
                .list_tenant(Some(principal), tenant, RECORDS_PAGE, &token)
                .await
            {
                Ok(page) => page,
                // No key (being deleted, or shredded): it holds nothing.
                Err(BrokerError::NotFound(_)) => return Ok(counts),
                Err(e) => return Err(e),
            };
            for (at, state) in page.records {
                match state {
                    Ok(state) => counts.count(health_of(&state, now)),
                    // A record we cannot read is a bug to look into, not a
                    // reason to hide the tenant's other counts.
                    Err(e) => {
                        tracing::warn!(connection = %at, error = %e, "unreadable connection record left out of the health counts")
                    }
                }
            }
            if page.next_page_token.is_empty() {
                return Ok(counts);
            }
            token = page.next_page_token;
        }
    }
}

#[cfg(test)]
mod tests {
    use locksmith_domain::IntegrationId;
    use secrecy::SecretString;

    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(s).unwrap()
    }

    fn code_connection(expires_in: Option<i64>, refresh: bool) -> ConnectionState {
        let mut c = ConnectionState::new(
            IntegrationId::parse("github").unwrap(),
            AuthMode::OAuth2AuthorizationCode,
            at(0),
        );
        c.access_token = Some(SecretString::from("a"));
        c.refresh_token = refresh.then(|| SecretString::from("r"));
        c.expires_at = expires_in.map(|s| at(1_000_000 + s));
        c
    }

    #[test]
    fn each_connection_has_one_health_by_status_expiry_and_refresh_token() {
        let now = at(1_000_000);
        let day = EXPIRING_SOON.whole_seconds();
        for (expires_in, refresh, want) in [
            (Some(3600), false, Health::ExpiringSoon),
            (Some(day), false, Health::ExpiringSoon),
            (Some(-60), false, Health::ExpiringSoon),
            (Some(day + 1), false, Health::Active),
            (None, false, Health::Active),
            // Renewed on its next use, expired or not.
            (Some(3600), true, Health::Active),
            (Some(-60), true, Health::Active),
        ] {
            assert_eq!(
                health_of(&code_connection(expires_in, refresh), now),
                want,
                "{expires_in:?} {refresh}"
            );
        }
        let mut failing = code_connection(Some(3600), false);
        failing.status = Status::RefreshFailing;
        assert_eq!(health_of(&failing, now), Health::RefreshFailing);
        failing.status = Status::NeedsReauth;
        assert_eq!(health_of(&failing, now), Health::NeedsReauth);
        // Client credentials fetch a new token on demand.
        let mut cc = code_connection(Some(60), false);
        cc.auth_mode = AuthMode::OAuth2ClientCredentials;
        assert_eq!(health_of(&cc, now), Health::Active);
    }

    #[test]
    fn counts_add_up() {
        let mut counts = HealthCounts::default();
        for h in [
            Health::Active,
            Health::Active,
            Health::ExpiringSoon,
            Health::NeedsReauth,
            Health::RefreshFailing,
        ] {
            counts.count(h);
        }
        assert_eq!(
            counts,
            HealthCounts {
                active: 2,
                expiring_soon: 1,
                needs_reauth: 1,
                refresh_failing: 1,
            }
        );
    }
}
