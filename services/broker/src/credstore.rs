//! The broker's client of the credential store: connection records and
//! OAuth apps, over mTLS gRPC with the broker's certificate.
//!
//! # Public API (stable)
//!
//! ```text
//! CredstoreClient::new(Channel) -> Self
//! CredstoreClient::connect_lazy(url: &str, server_name: &str, tls: &TlsMaterial)
//!     -> Result<Self, BrokerError>
//! get(&self, principal: Option<&Principal>, at: &ConnectionRef)
//!     -> Result<Option<(ConnectionState, u64)>, BrokerError>
//! put(&self, principal: Option<&Principal>, at: &ConnectionRef, state: &ConnectionState,
//!     expected_version: u64 /* 0 = create only */) -> Result<u64, BrokerError /* VersionConflict */>
//! delete(&self, principal: Option<&Principal>, at: &ConnectionRef,
//!     expected_version: u64 /* 0 = any */) -> Result<(), BrokerError /* NotFound, VersionConflict */>
//! list(&self, principal: Option<&Principal>, owner: &Scope, page_size: i32, page_token: &str)
//!     -> Result<ConnectionPage { connections: Vec<ConnectionRef>, next_page_token: String }, BrokerError>
//! list_tenant(&self, principal: Option<&Principal>, tenant: &TenantId, page_size: i32, page_token: &str)
//!     -> Result<TenantRecords { records: Vec<(ConnectionRef, Result<ConnectionState, RecordError>)>,
//!                               next_page_token: String }, BrokerError>
//! oauth_app(&self, owner: &Scope, integration: &IntegrationId) -> Result<OAuthApp, BrokerError>
//! OAuthApp { client_id: String, client_secret: SecretString, scope: String /* answering scope */ }
//! ```
//!
//! `principal`: the caller's, forwarded so the credential store checks
//! tenant ownership and roles again (defence in depth); `None` when the
//! broker acts for itself (it then calls as `Principal::Service(broker)`):
//! the refresh protocol's own writes (lease, tokens), background work.
//!
//! OAuth apps are always resolved as the broker itself: the app's secret is
//! the broker's to use, never shown to the caller, and the walk up to the
//! `system` scope (the shared app) is not visible to tenant principals.

use locksmith_auth::Principal;
use locksmith_domain::{ConnectionRef, IntegrationId, Scope, TenantId};
use locksmith_proto::credstore::v1::{
    self as pb, credential_store_service_client::CredentialStoreServiceClient,
};
use locksmith_tls::TlsMaterial;
use secrecy::SecretString;
use tokio::sync::broadcast;
use tonic::transport::{Channel, Endpoint};

use crate::error::BrokerError;
use crate::record::{ConnectionState, RecordError};

/// The credential store as the broker uses it. Cheap to clone (one channel).
///
/// Every connection record written or erased through it is announced on
/// [`CredstoreClient::watch`]: the token proxy's cached credentials follow
/// (WatchConnectionChanges).
#[derive(Clone, Debug)]
pub struct CredstoreClient {
    inner: CredentialStoreServiceClient<Channel>,
    changes: broadcast::Sender<String>,
}

/// Changes a slow watcher may fall behind by before it is told to drop
/// everything it cached.
const CHANGES_BACKLOG: usize = 4096;

/// An OAuth app (client id and secret) resolved for an owner.
pub struct OAuthApp {
    /// `client-id`.
    pub client_id: String,
    /// `client-secret`.
    pub client_secret: SecretString,
    /// The scope whose app answered (`system`, `tenants/acme`), for logs.
    pub scope: String,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// One page of an owner's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPage {
    /// Sorted by integration.
    pub connections: Vec<ConnectionRef>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// One page of a tenant's connection records, at every owner under it.
#[derive(Debug)]
pub struct TenantRecords {
    /// Each record decoded, or why it could not be (one bad record does not
    /// hide the others).
    pub records: Vec<(ConnectionRef, Result<ConnectionState, RecordError>)>,
    /// Empty on the last page.
    pub next_page_token: String,
}

fn request<T>(message: T, principal: Option<&Principal>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(p) = principal {
        locksmith_auth::forward(&mut request, p);
    }
    request
}

impl CredstoreClient {
    /// A client over `channel` (built with the broker's certificate).
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: CredentialStoreServiceClient::new(channel),
            changes: broadcast::channel(CHANGES_BACKLOG).0,
        }
    }

    /// The resource names of connection records written or erased through
    /// this client (and its clones) from now on.
    pub fn watch(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    fn changed(&self, at: &ConnectionRef) {
        // No watcher is fine: nothing cached anywhere to drop.
        let _ = self.changes.send(at.resource_name());
    }

    /// A client of the credential store at `url` (`https://host:port`),
    /// verified as `server_name`, presenting `tls`'s certificate. Connects
    /// on first use, so the broker starts while the store is down.
    pub fn connect_lazy(
        url: &str,
        server_name: &str,
        tls: &TlsMaterial,
    ) -> Result<Self, BrokerError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| BrokerError::Internal(format!("credential store URL: {e}")))?
            .tls_config(tls.client_tls(server_name))
            .map_err(|e| BrokerError::Internal(format!("credential store TLS: {e}")))?
            .connect_lazy();
        Ok(Self::new(channel))
    }

    /// The latest version of a connection record, decoded; `None` if there
    /// is none (or it is not the principal's to see: the store answers both
    /// alike).
    pub async fn get(
        &self,
        principal: Option<&Principal>,
        at: &ConnectionRef,
    ) -> Result<Option<(ConnectionState, u64)>, BrokerError> {
        let message = pb::GetConnectionRequest {
            name: at.resource_name(),
        };
        match self
            .inner
            .clone()
            .get_connection(request(message, principal))
            .await
        {
            Ok(answer) => {
                let connection = answer.into_inner().connection.ok_or_else(|| {
                    BrokerError::Internal("GetConnection answered no record".into())
                })?;
                let state = ConnectionState::from_fields(connection.fields)?;
                Ok(Some((state, connection.version)))
            }
            Err(status) => match BrokerError::from_credstore(&status) {
                BrokerError::NotFound(_) => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Writes `state` as the record's next version if the record is at
    /// `expected_version` (0: only if there is none); answers the version
    /// written. [`BrokerError::VersionConflict`] when it moved meanwhile.
    pub async fn put(
        &self,
        principal: Option<&Principal>,
        at: &ConnectionRef,
        state: &ConnectionState,
        expected_version: u64,
    ) -> Result<u64, BrokerError> {
        let message = pb::PutConnectionRequest {
            name: at.resource_name(),
            fields: state.to_fields(),
            expected_version,
        };
        let answer = self
            .inner
            .clone()
            .put_connection(request(message, principal))
            .await
            .map_err(|s| BrokerError::from_credstore(&s))?;
        self.changed(at);
        Ok(answer.into_inner().version)
    }

    /// Erases a connection record with its history, if it is at
    /// `expected_version` (0: whatever its version).
    pub async fn delete(
        &self,
        principal: Option<&Principal>,
        at: &ConnectionRef,
        expected_version: u64,
    ) -> Result<(), BrokerError> {
        let message = pb::DeleteConnectionRequest {
            name: at.resource_name(),
            expected_version,
        };
        self.inner
            .clone()
            .delete_connection(request(message, principal))
            .await
            .map_err(|s| BrokerError::from_credstore(&s))?;
        self.changed(at);
        Ok(())
    }

    /// One page of `owner`'s connection records (names only).
    pub async fn list(
        &self,
        principal: Option<&Principal>,
        owner: &Scope,
        page_size: i32,
        page_token: &str,
    ) -> Result<ConnectionPage, BrokerError> {
        let message = pb::ListConnectionsRequest {
            parent: owner.storage_path(),
            page_size,
            page_token: page_token.to_owned(),
        };
        let answer = self
            .inner
            .clone()
            .list_connections(request(message, principal))
            .await
            .map_err(|s| BrokerError::from_credstore(&s))?
            .into_inner();
        let connections = answer
            .names
            .iter()
            .map(|name| {
                ConnectionRef::parse(name).map_err(|_| {
                    BrokerError::Internal("ListConnections answered a malformed name".into())
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ConnectionPage {
            connections,
            next_page_token: answer.next_page_token,
        })
    }

    /// One page of `tenant`'s connection records at every owner under it
    /// (the tenant, its orgs, bots and users), decoded: the health counts'
    /// read. Operators (and the broker itself) only.
    pub async fn list_tenant(
        &self,
        principal: Option<&Principal>,
        tenant: &TenantId,
        page_size: i32,
        page_token: &str,
    ) -> Result<TenantRecords, BrokerError> {
        let message = pb::ListTenantConnectionsRequest {
            parent: Scope::Tenant(tenant.clone()).storage_path(),
            page_size,
            page_token: page_token.to_owned(),
        };
        let answer = self
            .inner
            .clone()
            .list_tenant_connections(request(message, principal))
            .await
            .map_err(|s| BrokerError::from_credstore(&s))?
            .into_inner();
        let records = answer
            .connections
            .into_iter()
            .map(|c| {
                let at = ConnectionRef::parse(&c.name).map_err(|_| {
                    BrokerError::Internal("ListTenantConnections answered a malformed name".into())
                })?;
                Ok((at, ConnectionState::from_fields(c.fields)))
            })
            .collect::<Result<_, BrokerError>>()?;
        Ok(TenantRecords {
            records,
            next_page_token: answer.next_page_token,
        })
    }

    /// The OAuth app for `integration` as seen from `owner`: the secret
    /// `oauth-apps/{integration}` resolved from `owner` upwards (a tenant or
    /// an org may bring its own app; everyone else gets the system one).
    /// [`BrokerError::NotFound`] (`oauth app`) when no scope has one.
    pub async fn oauth_app(
        &self,
        owner: &Scope,
        integration: &IntegrationId,
    ) -> Result<OAuthApp, BrokerError> {
        let message = pb::ResolveSecretRequest {
            name: format!("{}/secrets/oauth-apps/{integration}", owner.storage_path()),
        };
        let answer = match self
            .inner
            .clone()
            .resolve_secret(request(message, None))
            .await
        {
            Ok(answer) => answer.into_inner(),
            Err(status) => {
                return Err(match BrokerError::from_credstore(&status) {
                    BrokerError::NotFound(_) => BrokerError::NotFound("oauth app"),
                    e => e,
                });
            }
        };
        let scope = answer.answering_scope;
        let mut fields = answer
            .secret
            .ok_or_else(|| BrokerError::Internal("ResolveSecret answered no secret".into()))?
            .fields;
        let mut take = |name: &str| {
            fields
                .remove(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    // The app is configuration an operator or tenant wrote:
                    // say which scope's app is incomplete, never a value.
                    BrokerError::Internal(format!(
                        "the OAuth app oauth-apps/{integration} at {scope} has no `{name}`"
                    ))
                })
        };
        let client_id = take("client-id")?;
        let client_secret = SecretString::from(take("client-secret")?);
        Ok(OAuthApp {
            client_id,
            client_secret,
            scope,
        })
    }
}
