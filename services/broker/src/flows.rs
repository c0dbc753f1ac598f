//! The broker's calls, on domain types (the gRPC layer converts): starting
//! and completing an authorization-code flow, storing credentials without a
//! flow, showing, listing, refreshing and deleting connections.
//!
//! Every call checks its principal against the connection's tenant itself
//! (defence in depth, after the edge): another tenant's connection answers
//! NOT_FOUND exactly as an absent one, a missing role PERMISSION_DENIED. The
//! credential store checks again, as the principal is forwarded to it.
//!
//! Time is always a parameter (`now`), so expiry is tested without sleeping.

use std::{collections::BTreeMap, sync::Arc};

use futures::{StreamExt as _, TryStreamExt as _};
use locksmith_auth::{Access, Denied, Principal, Role, Roles};
use locksmith_domain::{ConnectionRef, IntegrationId, Scope, TenantId};
use locksmith_egress::EgressClient;
use locksmith_store::DocumentStore;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::{
    catalog::{AuthMode, AuthorizationRequest, Catalog, CredentialPlacement, InputError, Provider},
    config::{PublicUrl, ReturnUrlPolicy},
    credstore::CredstoreClient,
    custom::CustomProviders,
    error::BrokerError,
    record::ConnectionState,
    refresh::{AccessCredential, Refresher},
    state::{
        Expected, PendingAuthorization, PendingStore, Pkce, STATE_TTL, State, StateError,
        parse_owner,
    },
    token::{self, Revoked, TokenHint},
};

/// Most scopes one request may name, and the longest scope.
const MAX_SCOPES: usize = 64;
const MAX_SCOPE_LEN: usize = 256;
/// Longest return URL and credential value accepted.
const MAX_URL_LEN: usize = 2048;
const MAX_CREDENTIAL_LEN: usize = 8192;
/// How many times a create-or-replace re-reads after a concurrent write.
const WRITE_ATTEMPTS: usize = 3;

mod custom;
mod health;
mod owners;
mod types;

pub use custom::{MAX_DEFINITION_BYTES, SuiteEndpoints};
pub use health::{
    DEFAULT_TENANTS_PAGE, EXPIRING_SOON, Health, HealthCounts, MAX_TENANTS_PAGE, TenantHealth,
    TenantHealthPage, health_of,
};
use types::expected_credentials;
pub use types::{
    CompleteRequest, Completed, ConnectionList, ConnectionView, Credentials, FlowError,
    StartRequest, Started,
};

/// The broker: everything a call needs.
pub struct Broker<S> {
    catalog: Arc<Catalog>,
    /// Tenants' custom providers, behind the shipped catalog; also the
    /// refresher's source of providers.
    customs: Arc<CustomProviders<S>>,
    /// Endpoints of the suite no custom provider may point at.
    suite: SuiteEndpoints,
    pending: PendingStore<S>,
    credstore: CredstoreClient,
    egress: EgressClient,
    refresher: Refresher,
    public_url: PublicUrl,
    return_urls: ReturnUrlPolicy,
    /// The registry: owners must exist; the health counts' tenants.
    registry: Option<crate::registry::RegistryClient>,
}

/// Connection records read at once for one page of ListConnections.
const READS_IN_FLIGHT: usize = 16;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> BrokerError {
    BrokerError::InvalidArgument {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Whether `principal` may act on `scope` with `access`. Another tenant's
/// scope is `absent` (the caller cannot tell it from a missing one).
pub fn authorize(
    principal: &Principal,
    scope: &Scope,
    access: Access,
    absent: &'static str,
) -> Result<(), BrokerError> {
    let denied = match scope.tenant() {
        Some(tenant) => principal.authorize(tenant, access),
        None => principal.require_operator(),
    };
    denied.map_err(|d| match d {
        Denied::Invisible => BrokerError::NotFound(absent),
        Denied::Forbidden { needs } => BrokerError::PermissionDenied { needs },
    })
}

/// A connection resource name from the `name` field.
pub fn parse_connection(name: &str, field: &str) -> Result<ConnectionRef, BrokerError> {
    ConnectionRef::parse(name).map_err(|e| invalid(field, e.to_string()))
}

/// Requested scopes: bounded, no blanks or whitespace inside (a separator
/// inside one scope would smuggle another).
pub fn check_scopes(scopes: &[String], field: &str) -> Result<(), BrokerError> {
    if scopes.len() > MAX_SCOPES {
        return Err(invalid(field, format!("at most {MAX_SCOPES} scopes")));
    }
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty()
            || s.len() > MAX_SCOPE_LEN
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("must be 1 to {MAX_SCOPE_LEN} characters without spaces"),
            ));
        }
    }
    Ok(())
}

/// The provider's `error` parameter as we repeat it: RFC 6749 error codes
/// are short ASCII words; anything else (it is attacker-controlled text on
/// an anonymous route) is not echoed.
pub fn provider_error_code(error: &str) -> String {
    let ok = !error.is_empty()
        && error.len() <= 64
        && error
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if ok {
        error.to_owned()
    } else {
        "invalid_error".to_owned()
    }
}

fn input_error(e: InputError) -> BrokerError {
    match e {
        InputError::Unknown(name) => {
            invalid(format!("inputs.{name}"), "is not an input of this provider")
        }
        InputError::Missing(name) => invalid(format!("inputs.{name}"), "is required"),
        InputError::NoMatch { name, pattern } => {
            invalid(format!("inputs.{name}"), format!("must match {pattern}"))
        }
        InputError::BadUrl(reason) => {
            invalid("inputs", format!("the URL built from them {reason}"))
        }
    }
}

fn state_error(e: StateError) -> BrokerError {
    match e {
        StateError::Unknown => invalid("state", "is unknown"),
        StateError::Expired => invalid("state", "has expired; start the authorization again"),
        StateError::Used => invalid("state", "was already used; start the authorization again"),
        StateError::IntegrationMismatch => invalid(
            "integration",
            "is not the integration the state was issued for",
        ),
        StateError::RedirectMismatch => invalid(
            "redirect_uri",
            "is not the redirect URI the state was issued for",
        ),
        StateError::Storage(e) => match e {
            locksmith_store::StoreError::Unavailable { .. } => BrokerError::Unavailable {
                what: "the broker's storage",
                retry_after: crate::error::RETRY_AFTER,
            },
            e => BrokerError::Internal(format!("pending authorizations: {e}")),
        },
        e @ (StateError::Crypto | StateError::Corrupt(_)) => {
            BrokerError::Internal(format!("pending authorizations: {e}"))
        }
    }
}

/// The principal the callback's writes are made as: the state is the
/// authority, and it names one tenant, so the credential store confines
/// the writes to that tenant (never the broker's every-tenant identity).
fn callback_principal(pending: &PendingAuthorization) -> Principal {
    let mut subject = format!("oauth-callback:{}", pending.subject);
    subject.truncate(subject.floor_char_boundary(500));
    Principal::Tenant {
        tenant: pending.tenant.clone(),
        roles: Roles::of([Role::Write]),
        subject,
    }
}

impl<S: DocumentStore> Broker<S> {
    /// A broker over its parts. Tenants' custom providers are kept in the
    /// pending authorizations' store; `refresher` is given them as its
    /// source of providers (shipped entries first), whatever it was built
    /// with.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        catalog: Arc<Catalog>,
        pending: PendingStore<S>,
        credstore: CredstoreClient,
        egress: EgressClient,
        refresher: Refresher,
        public_url: PublicUrl,
        return_urls: ReturnUrlPolicy,
    ) -> Self {
        let customs = Arc::new(CustomProviders::new(
            pending.shared_store(),
            Arc::clone(&catalog),
        ));
        let refresher = refresher.with_providers(customs.clone());
        Self {
            catalog,
            customs,
            suite: SuiteEndpoints::default(),
            pending,
            credstore,
            egress,
            refresher,
            public_url,
            return_urls,
            registry: None,
        }
    }

    /// Pending authorizations (health probes, purging).
    pub fn pending(&self) -> &PendingStore<S> {
        &self.pending
    }

    /// The provider of `integration` as `tenant` sees it: a shipped entry,
    /// else that tenant's custom provider (another tenant's is NOT_FOUND
    /// exactly as an absent one).
    async fn provider(
        &self,
        tenant: Option<&TenantId>,
        integration: &IntegrationId,
    ) -> Result<Arc<Provider>, BrokerError> {
        self.customs.lookup(tenant, integration).await
    }

    /// Starts an authorization-code flow for `request.owner`.
    pub async fn start_authorization(
        &self,
        principal: &Principal,
        request: StartRequest,
        now: OffsetDateTime,
    ) -> Result<Started, BrokerError> {
        let owner = parse_owner(&request.owner).ok_or_else(|| {
            invalid(
                "owner",
                "must be tenants/{t}, tenants/{t}/orgs/{o}, …/bots/{b} or …/users/{u}",
            )
        })?;
        let Some(tenant) = owner.tenant().cloned() else {
            return Err(invalid(
                "owner",
                "connections belong to a tenant or its members",
            ));
        };
        // A tenant principal of that tenant with the write role, or an
        // operator; a suite service acting for itself starts no user flow.
        if let Principal::Service { .. } = principal {
            return Err(BrokerError::PermissionDenied {
                needs: "a tenant principal or an operator".into(),
            });
        }
        authorize(principal, &owner, Access::Write, "owner")?;
        self.require_owner(principal, &owner).await?;
        let integration = IntegrationId::parse(&request.integration)
            .map_err(|e| invalid("integration", e.to_string()))?;
        let provider = self.provider(Some(&tenant), &integration).await?;
        if provider.auth_mode() != AuthMode::OAuth2AuthorizationCode {
            return Err(invalid(
                "integration",
                format!(
                    "{integration} uses {}: it has no authorization flow; store its credentials",
                    provider.auth_mode().as_str()
                ),
            ));
        }
        check_scopes(&request.scopes, "scopes")?;
        let return_url = self.check_return_url(&tenant, &request.return_url)?;
        let inputs = provider
            .resolve_inputs(&request.inputs)
            .map_err(input_error)?;
        let app = self.credstore.oauth_app(&owner, &integration).await?;
        let pkce = match provider.oauth2().is_some_and(|o| o.pkce()) {
            true => Some(Pkce::generate().map_err(state_error)?),
            false => None,
        };
        let redirect_uri = self.public_url.redirect_uri(integration.as_str());
        let state = State::generate().map_err(state_error)?;
        let scopes = (!request.scopes.is_empty()).then_some(request.scopes.as_slice());
        let url = provider
            .authorization_request_url(
                &inputs,
                &AuthorizationRequest {
                    client_id: &app.client_id,
                    redirect_uri: &redirect_uri,
                    state: state.expose(),
                    scopes,
                    code_challenge: pkce.as_ref().map(|p| p.challenge.as_str()),
                },
            )
            .map_err(|e| match e {
                crate::catalog::EndpointError::Input(e) => input_error(e),
                e => BrokerError::Internal(format!("authorization URL: {e}")),
            })?;
        let expires_at = now + STATE_TTL;
        let pending = PendingAuthorization {
            connection: ConnectionRef {
                scope: owner,
                integration,
            },
            tenant,
            subject: subject_of(principal),
            redirect_uri,
            return_url,
            inputs: inputs.as_map().clone(),
            scopes: request.scopes,
            pkce_verifier: pkce.map(|p| p.verifier),
            created_at: now,
            expires_at,
        };
        self.pending
            .issue(&state, &pending)
            .await
            .map_err(state_error)?;
        Ok(Started {
            authorization_url: url.into(),
            state,
            expires_at,
        })
    }

    fn check_return_url(
        &self,
        tenant: &TenantId,
        url: &str,
    ) -> Result<Option<String>, BrokerError> {
        if url.is_empty() {
            return Ok(None);
        }
        if url.len() > MAX_URL_LEN {
            return Err(invalid(
                "return_url",
                format!("longer than {MAX_URL_LEN} bytes"),
            ));
        }
        if !self.return_urls.permits(tenant, url) {
            return Err(invalid(
                "return_url",
                "is not on the tenant's allow-list of return URLs",
            ));
        }
        Ok(Some(url.to_owned()))
    }

    /// Completes a flow from the provider's redirect. The state is consumed
    /// whatever the outcome; nothing is stored unless tokens were obtained.
    /// A provider error or a refused code exchange is
    /// [`Completed::Refused`] when the flow has a return URL (the browser
    /// goes back there), else an error; an invalid state is always an error.
    pub async fn complete_authorization(
        &self,
        principal: &Principal,
        request: CompleteRequest,
        now: OffsetDateTime,
    ) -> Result<Completed, BrokerError> {
        let state =
            State::from_callback(&request.state).ok_or_else(|| state_error(StateError::Unknown))?;
        let expected = Expected {
            integration: &request.integration,
            redirect_uri: &request.redirect_uri,
            confined_to: principal.tenant(),
        };
        let pending = self
            .pending
            .consume(&state, &expected, now)
            .await
            .map_err(state_error)?;
        let at = pending.connection.clone();
        if !request.error.is_empty() {
            // The user (or the provider) declined: a clear answer, nothing
            // stored; the description is provider text and stays out.
            let code = provider_error_code(&request.error);
            tracing::info!(connection = %at, code = %code, "the provider ended the flow with an error");
            return Completed::refused(
                pending.return_url,
                FlowError::of_provider(&code),
                BrokerError::Provider {
                    integration: at.integration.to_string(),
                    status: 302,
                    code,
                },
            );
        }
        if request.code.expose_secret().is_empty() {
            return Err(invalid(
                "code",
                "is required when the provider reports no error",
            ));
        }
        let provider = self
            .provider(Some(&pending.tenant), &at.integration)
            .await?;
        let inputs = provider
            .resolve_inputs(&pending.inputs)
            .map_err(input_error)?;
        let app = self.credstore.oauth_app(&at.scope, &at.integration).await?;
        let tokens = token::exchange_code(
            &self.egress,
            &provider,
            &inputs,
            &app,
            &request.code,
            &pending.redirect_uri,
            pending.pkce_verifier.as_ref(),
        )
        .await
        .map_err(BrokerError::from);
        let tokens = match tokens {
            Ok(tokens) => tokens,
            // The provider (or the egress policy) refused the exchange.
            Err(e @ (BrokerError::Provider { .. } | BrokerError::Refused { .. })) => {
                tracing::info!(connection = %at, error = %e, "the code exchange was refused");
                return Completed::refused(pending.return_url, FlowError::ExchangeFailed, e);
            }
            Err(e) => return Err(e),
        };
        let requested = if pending.scopes.is_empty() {
            provider
                .oauth2()
                .map(|o| o.default_scopes().to_vec())
                .unwrap_or_default()
        } else {
            pending.scopes.clone()
        };
        let writer = callback_principal(&pending);
        let state = self
            .replace(
                &writer,
                &at,
                now,
                |old| {
                    let mut fresh = ConnectionState::new(
                        at.integration.clone(),
                        AuthMode::OAuth2AuthorizationCode,
                        old.map_or(now, |o| o.created_at),
                    );
                    fresh.scopes = requested.clone();
                    fresh.inputs = inputs.as_map().clone();
                    fresh
                },
                Some(tokens),
            )
            .await?;
        tracing::info!(connection = %at, "authorization completed");
        Ok(Completed::Connected {
            connection: ConnectionView::of(&at, &state),
            return_url: pending.return_url,
        })
    }

    /// Writes a new connection at `at` over whatever is there (create or
    /// replace, check-and-set on the version read; re-read and retried a
    /// few times when a concurrent write lands in between). `build` makes
    /// the new state from the old one; `tokens` are applied to it at `now`.
    async fn replace(
        &self,
        principal: &Principal,
        at: &ConnectionRef,
        now: OffsetDateTime,
        build: impl Fn(Option<&ConnectionState>) -> ConnectionState,
        mut tokens: Option<crate::catalog::TokenSet>,
    ) -> Result<ConnectionState, BrokerError> {
        let mut state = build(None);
        if let Some(t) = tokens.take() {
            token::apply_tokens(&mut state, t, now);
        }
        for attempt in 1..=WRITE_ATTEMPTS {
            let current = self.credstore.get(Some(principal), at).await?;
            let version = current.as_ref().map_or(0, |(_, v)| *v);
            let mut next = build(current.as_ref().map(|(s, _)| s));
            // Tokens, expiry, scopes and metadata as applied once above.
            next.access_token = state.access_token.clone();
            next.refresh_token = state.refresh_token.clone();
            next.expires_at = state.expires_at;
            next.scopes = state.scopes.clone();
            next.metadata = state.metadata.clone();
            next.updated_at = now;
            match self
                .credstore
                .put(Some(principal), at, &next, version)
                .await
            {
                Ok(_) => return Ok(next),
                Err(BrokerError::VersionConflict) if attempt < WRITE_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
        Err(BrokerError::VersionConflict)
    }

    /// Stores credentials without a flow.
    pub async fn store_credentials(
        &self,
        principal: &Principal,
        name: &str,
        credentials: Credentials,
        inputs: &BTreeMap<String, String>,
        now: OffsetDateTime,
    ) -> Result<ConnectionView, BrokerError> {
        let at = parse_connection(name, "name")?;
        authorize(principal, &at.scope, Access::Write, "connection")?;
        self.require_owner(principal, &at.scope).await?;
        let provider = self.provider(at.scope.tenant(), &at.integration).await?;
        let (mode, sent) = credentials.mode();
        if mode != provider.auth_mode() {
            return Err(invalid(
                sent,
                format!(
                    "{} uses {}: send {}",
                    at.integration,
                    provider.auth_mode().as_str(),
                    expected_credentials(provider.auth_mode())
                ),
            ));
        }
        let inputs = provider.resolve_inputs(inputs).map_err(input_error)?;
        let mut fresh = ConnectionState::new(at.integration.clone(), mode, now);
        fresh.inputs = inputs.as_map().clone();
        match credentials {
            Credentials::ApiKey(key) => {
                fresh.api_key = Some(check_secret(key, "api_key.key")?);
            }
            Credentials::Basic { username, password } => {
                if username.is_empty() || username.len() > 256 || username.contains(':') {
                    return Err(invalid(
                        "basic.username",
                        "must be 1 to 256 characters without ':'",
                    ));
                }
                fresh.username = Some(username);
                fresh.password = Some(check_secret(password, "basic.password")?);
            }
            Credentials::Tokens {
                access_token,
                refresh_token,
                expires_in,
                scopes,
            } => {
                check_scopes(&scopes, "tokens.scopes")?;
                fresh.access_token = Some(check_secret(access_token, "tokens.access_token")?);
                fresh.refresh_token = refresh_token
                    .filter(|r| !r.expose_secret().is_empty())
                    .map(|r| check_secret(r, "tokens.refresh_token"))
                    .transpose()?;
                let lifetime = match expires_in {
                    0 => provider.oauth2().and_then(|o| o.default_expires_in()),
                    s => Some(std::time::Duration::from_secs(u64::from(s))),
                };
                fresh.expires_at = lifetime.map(|l| now + l);
                fresh.scopes = scopes;
            }
            Credentials::ClientCredentials { scopes } => {
                check_scopes(&scopes, "client_credentials.scopes")?;
                // Tokens come on demand (GetAccessToken); the app must exist
                // now, so a connection that can never work is refused here.
                self.credstore.oauth_app(&at.scope, &at.integration).await?;
                fresh.scopes = if scopes.is_empty() {
                    provider
                        .oauth2()
                        .map(|o| o.default_scopes().to_vec())
                        .unwrap_or_default()
                } else {
                    scopes
                };
            }
        }
        let state = self
            .replace(
                principal,
                &at,
                now,
                |old| {
                    let mut next = fresh.clone();
                    if let Some(old) = old {
                        next.created_at = old.created_at;
                    }
                    next
                },
                None,
            )
            .await;
        // `replace` copies tokens from its first build; credentials other
        // than tokens were set on `fresh` itself.
        let state = state?;
        Ok(ConnectionView::of(&at, &state))
    }

    /// One connection's metadata.
    pub async fn get_connection(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<ConnectionView, BrokerError> {
        let at = parse_connection(name, "name")?;
        authorize(principal, &at.scope, Access::Read, "connection")?;
        let (state, _) = self
            .credstore
            .get(Some(principal), &at)
            .await?
            .ok_or(BrokerError::NotFound("connection"))?;
        Ok(ConnectionView::of(&at, &state))
    }

    /// One page of an owner's connections (metadata).
    pub async fn list_connections(
        &self,
        principal: &Principal,
        parent: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<ConnectionList, BrokerError> {
        let owner = parse_owner(parent).ok_or_else(|| {
            invalid(
                "parent",
                "must be tenants/{t}, tenants/{t}/orgs/{o}, …/bots/{b} or …/users/{u}",
            )
        })?;
        authorize(principal, &owner, Access::Read, "owner")?;
        if page_size < 0 {
            return Err(invalid("page_size", "must not be negative"));
        }
        let page = self
            .credstore
            .list(Some(principal), &owner, page_size, page_token)
            .await?;
        // The page's records are read a few at a time, in page order: a
        // page costs about one store round trip per READS_IN_FLIGHT records
        // instead of one per record.
        let reads = futures::stream::iter(page.connections)
            .map(|at| {
                // Owned, so the stream is Send across the gRPC handler.
                let (credstore, principal) = (self.credstore.clone(), principal.clone());
                async move {
                    let record = credstore.get(Some(&principal), &at).await?;
                    Ok::<_, BrokerError>(record.map(|(state, _)| ConnectionView::of(&at, &state)))
                }
            })
            .buffered(READS_IN_FLIGHT);
        // A record deleted between the listing and its read is skipped.
        let connections: Vec<ConnectionView> = reads
            .try_filter_map(|view| async move { Ok(view) })
            .try_collect()
            .await?;
        Ok(ConnectionList {
            connections,
            next_page_token: page.next_page_token,
        })
    }

    /// Revokes at the provider when it has an endpoint, then erases the
    /// record; answers whether the provider confirmed. A provider that
    /// cannot be reached does not keep the credentials alive here.
    pub async fn delete_connection(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<bool, BrokerError> {
        let at = parse_connection(name, "name")?;
        authorize(principal, &at.scope, Access::Write, "connection")?;
        let (state, version) = self
            .credstore
            .get(Some(principal), &at)
            .await?
            .ok_or(BrokerError::NotFound("connection"))?;
        let revoked = self.revoke(&at, &state).await;
        match self.credstore.delete(Some(principal), &at, version).await {
            // A refresh wrote meanwhile: its tokens go too (they belong to
            // the grant just revoked).
            Err(BrokerError::VersionConflict) => {
                self.credstore.delete(Some(principal), &at, 0).await?
            }
            other => other?,
        }
        tracing::info!(connection = %at, revoked, "connection deleted");
        Ok(revoked)
    }

    async fn revoke(&self, at: &ConnectionRef, state: &ConnectionState) -> bool {
        let Ok(provider) = self.provider(at.scope.tenant(), &at.integration).await else {
            return false;
        };
        if !provider.auth_mode().is_oauth2() {
            return false;
        }
        let Ok(inputs) = provider.resolve_inputs(&state.inputs) else {
            return false;
        };
        // The refresh token revokes the whole grant (RFC 7009 §2.1); the
        // bearer style takes the access token.
        let bearer = matches!(
            provider.revocation_url(&inputs),
            Ok(Some((_, crate::catalog::RevocationStyle::Bearer)))
        );
        let (token, hint) = match (&state.refresh_token, &state.access_token) {
            (Some(r), _) if !bearer => (r, TokenHint::RefreshToken),
            (_, Some(a)) => (a, TokenHint::AccessToken),
            (Some(r), None) => (r, TokenHint::RefreshToken),
            (None, None) => return false,
        };
        let app = match self.credstore.oauth_app(&at.scope, &at.integration).await {
            Ok(app) => app,
            Err(e) => {
                tracing::warn!(connection = %at, error = %e, "cannot revoke: no OAuth app");
                return false;
            }
        };
        match token::revoke(&self.egress, &provider, &inputs, &app, token, hint).await {
            Ok(Revoked::Done) => true,
            Ok(Revoked::NoEndpoint) => false,
            Err(e) => {
                tracing::warn!(connection = %at, error = %e, "revocation at the provider failed");
                false
            }
        }
    }

    /// Refreshes now (the refresh protocol).
    pub async fn refresh_connection(
        &self,
        principal: &Principal,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<ConnectionView, BrokerError> {
        let at = parse_connection(name, "name")?;
        authorize(principal, &at.scope, Access::Write, "connection")?;
        let state = self.refresher.refresh_now(principal, &at, now).await?;
        Ok(ConnectionView::of(&at, &state))
    }

    /// A usable credential and how the integration's API takes it (the
    /// token proxy's call). `refused_version` (0: none) names a credential
    /// the provider just refused: it is refreshed unless already replaced.
    pub async fn access_token(
        &self,
        principal: &Principal,
        name: &str,
        refused_version: u64,
        now: OffsetDateTime,
    ) -> Result<ProxyAccess, BrokerError> {
        let at = parse_connection(name, "name")?;
        authorize(principal, &at.scope, Access::Read, "connection")?;
        let provider = self.provider(at.scope.tenant(), &at.integration).await?;
        let credential = if refused_version == 0 {
            self.refresher.access_token(principal, &at, now).await?
        } else {
            self.refresher
                .access_token_after_refusal(principal, &at, refused_version, now)
                .await?
        };
        let api = match provider.api() {
            None => None,
            Some(api) => {
                let inputs = provider
                    .resolve_inputs(&credential.inputs)
                    .map_err(input_error)?;
                let base_url = provider.api_base_url(&inputs).map_err(|e| {
                    BrokerError::Internal(format!("the API base URL of {at} cannot be built: {e}"))
                })?;
                Some(ApiTarget {
                    base_url,
                    headers: api.headers().clone(),
                    placement: api.credential().clone(),
                })
            }
        };
        Ok(ProxyAccess { credential, api })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Names of connections whose records this replica writes or erases
    /// from now on (for WatchConnectionChanges).
    pub fn watch_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.credstore.watch()
    }
}

/// What the token proxy needs for one connection: the credential and,
/// when the integration declares an API, where and how to send it.
#[derive(Debug)]
pub struct ProxyAccess {
    /// The credential (its Debug shows no value).
    pub credential: AccessCredential,
    /// The integration's API; `None` when the catalog declares none (the
    /// proxy refuses to call it).
    pub api: Option<ApiTarget>,
}

/// How an integration's API is called for one connection.
#[derive(Debug)]
pub struct ApiTarget {
    /// The API's base URL, the connection's inputs substituted.
    pub base_url: reqwest::Url,
    /// Headers the API expects on every call.
    pub headers: http::HeaderMap,
    /// Where the credential goes.
    pub placement: CredentialPlacement,
}

/// Who a principal is, for the audit trail of a flow's writes.
fn subject_of(principal: &Principal) -> String {
    match principal {
        Principal::Operator { subject } | Principal::Tenant { subject, .. } => subject.clone(),
        Principal::Workload { tenant, name } => format!("workload:{tenant}/{name}"),
        Principal::Service { service } => format!("service:{service}"),
    }
}

fn check_secret(value: SecretString, field: &str) -> Result<SecretString, BrokerError> {
    let v = value.expose_secret();
    if v.is_empty() || v.len() > MAX_CREDENTIAL_LEN || v.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("must be 1 to {MAX_CREDENTIAL_LEN} characters without control characters"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
#[path = "flows_tests.rs"]
mod tests;
