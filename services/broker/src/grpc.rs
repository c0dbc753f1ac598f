//! The gRPC face of the broker (`locksmith.broker.v1.OAuthBrokerService`):
//! each RPC converts its request to domain values, calls [`Broker`] with the
//! caller's [`Principal`] and the current time, and converts the answer
//! back. Prost types stay in this module. Which caller kinds reach which
//! RPC is the transport's allow-list (server.rs); whose connections a call
//! reaches is decided by the flows, per principal.

use std::sync::Arc;

use futures::StreamExt as _;
use locksmith_auth::Principal;
use locksmith_domain::TenantId;
use locksmith_proto::broker::v1::{
    self as pb, o_auth_broker_service_server::OAuthBrokerService,
    store_credentials_request::Credentials as PbCredentials,
};
use locksmith_store::{Clock, DocumentStore};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::{
    catalog::{AuthMode, CredentialPlacement},
    custom::CustomProviderView,
    error::BrokerError,
    flows::{ApiTarget, Broker, CompleteRequest, ConnectionView, Credentials, StartRequest},
    record::Status as ConnectionStatus,
};

/// The tonic service.
pub struct BrokerApi<S> {
    broker: Arc<Broker<S>>,
    clock: Clock,
}

impl<S> BrokerApi<S> {
    /// Serves `broker`, reading the time from `clock`.
    pub fn new(broker: Arc<Broker<S>>, clock: Clock) -> Self {
        Self { broker, clock }
    }

    fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }
}

type Rpc<T> = Result<Response<T>, Status>;

fn status(e: BrokerError) -> Status {
    e.into()
}

fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        // Always below 10^9, so it fits.
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

fn auth_mode(mode: AuthMode) -> pb::AuthMode {
    match mode {
        AuthMode::OAuth2AuthorizationCode => pb::AuthMode::Oauth2Code,
        AuthMode::OAuth2ClientCredentials => pb::AuthMode::Oauth2ClientCredentials,
        AuthMode::ApiKey => pb::AuthMode::ApiKey,
        AuthMode::Basic => pb::AuthMode::Basic,
    }
}

fn connection_status(s: ConnectionStatus) -> pb::ConnectionStatus {
    match s {
        ConnectionStatus::Active => pb::ConnectionStatus::Active,
        ConnectionStatus::NeedsReauth => pb::ConnectionStatus::NeedsReauth,
        ConnectionStatus::RefreshFailing => pb::ConnectionStatus::RefreshFailing,
    }
}

/// The wire form of a connection: metadata only, by construction (the view
/// holds no token).
pub fn connection(view: ConnectionView) -> pb::Connection {
    pb::Connection {
        name: view.name,
        integration: view.integration,
        auth_mode: auth_mode(view.auth_mode).into(),
        status: connection_status(view.status).into(),
        scopes: view.scopes,
        expire_time: view.expires_at.map(timestamp),
        metadata: view.metadata.into_iter().collect(),
        create_time: Some(timestamp(view.created_at)),
        update_time: Some(timestamp(view.updated_at)),
        has_refresh_token: view.has_refresh_token,
    }
}

/// The wire form of a custom provider.
fn custom_provider(view: CustomProviderView) -> pb::CustomProvider {
    pb::CustomProvider {
        name: view.name,
        definition: view.definition,
        version: view.version,
        create_time: Some(timestamp(view.created_at)),
        update_time: Some(timestamp(view.updated_at)),
    }
}

/// The domain form of StoreCredentials' `credentials`, naming the field
/// when it is missing.
fn credentials(c: Option<PbCredentials>) -> Result<Credentials, BrokerError> {
    Ok(match c {
        Some(PbCredentials::ApiKey(k)) => Credentials::ApiKey(SecretString::from(k.key)),
        Some(PbCredentials::Basic(b)) => Credentials::Basic {
            username: b.username,
            password: SecretString::from(b.password),
        },
        Some(PbCredentials::Tokens(t)) => Credentials::Tokens {
            access_token: SecretString::from(t.access_token),
            refresh_token: Some(SecretString::from(t.refresh_token)),
            expires_in: t.expires_in,
            scopes: t.scopes,
        },
        Some(PbCredentials::ClientCredentials(c)) => {
            Credentials::ClientCredentials { scopes: c.scopes }
        }
        None => {
            return Err(BrokerError::InvalidArgument {
                field: "credentials".into(),
                reason: "one of api_key, basic, tokens or client_credentials is required".into(),
            });
        }
    })
}

#[tonic::async_trait]
impl<S: DocumentStore> OAuthBrokerService for BrokerApi<S> {
    async fn start_authorization(
        &self,
        request: Request<pb::StartAuthorizationRequest>,
    ) -> Rpc<pb::StartAuthorizationResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let started = self
            .broker
            .start_authorization(
                &principal,
                StartRequest {
                    owner: r.owner,
                    integration: r.integration,
                    scopes: r.scopes,
                    return_url: r.return_url,
                    inputs: r.inputs.into_iter().collect(),
                },
                self.now(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::StartAuthorizationResponse {
            authorization_url: started.authorization_url,
            state: started.state.expose().to_owned(),
            expire_time: Some(timestamp(started.expires_at)),
        }))
    }

    async fn complete_authorization(
        &self,
        request: Request<pb::CompleteAuthorizationRequest>,
    ) -> Rpc<pb::CompleteAuthorizationResponse> {
        use crate::flows::{Completed, FlowError};
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        // `error_description` is provider-controlled text: neither stored,
        // logged nor answered.
        let completed = self
            .broker
            .complete_authorization(
                &principal,
                CompleteRequest {
                    integration: r.integration,
                    state: r.state,
                    code: SecretString::from(r.code),
                    error: r.error,
                    redirect_uri: r.redirect_uri,
                },
                self.now(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(match completed {
            Completed::Connected {
                connection: view,
                return_url,
            } => pb::CompleteAuthorizationResponse {
                connection: Some(connection(view)),
                return_url: return_url.unwrap_or_default(),
                error: None,
            },
            Completed::Refused { error, return_url } => {
                let code = match error {
                    FlowError::AccessDenied => pb::FlowErrorCode::AccessDenied,
                    FlowError::ProviderError => pb::FlowErrorCode::ProviderError,
                    FlowError::ExchangeFailed => pb::FlowErrorCode::ExchangeFailed,
                };
                pb::CompleteAuthorizationResponse {
                    connection: None,
                    return_url,
                    error: Some(pb::FlowError { code: code.into() }),
                }
            }
        }))
    }

    async fn store_credentials(
        &self,
        request: Request<pb::StoreCredentialsRequest>,
    ) -> Rpc<pb::StoreCredentialsResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let creds = credentials(r.credentials).map_err(status)?;
        let inputs = r.inputs.into_iter().collect();
        let view = self
            .broker
            .store_credentials(&principal, &r.name, creds, &inputs, self.now())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::StoreCredentialsResponse {
            connection: Some(connection(view)),
        }))
    }

    async fn get_connection(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> Rpc<pb::GetConnectionResponse> {
        let principal = Principal::of(&request)?.clone();
        let view = self
            .broker
            .get_connection(&principal, &request.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetConnectionResponse {
            connection: Some(connection(view)),
        }))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Rpc<pb::ListConnectionsResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.get_ref();
        let list = self
            .broker
            .list_connections(&principal, &r.parent, r.page_size, &r.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListConnectionsResponse {
            connections: list.connections.into_iter().map(connection).collect(),
            next_page_token: list.next_page_token,
        }))
    }

    async fn refresh_connection(
        &self,
        request: Request<pb::RefreshConnectionRequest>,
    ) -> Rpc<pb::RefreshConnectionResponse> {
        let principal = Principal::of(&request)?.clone();
        let view = self
            .broker
            .refresh_connection(&principal, &request.get_ref().name, self.now())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RefreshConnectionResponse {
            connection: Some(connection(view)),
        }))
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Rpc<pb::DeleteConnectionResponse> {
        let principal = Principal::of(&request)?.clone();
        let revoked = self
            .broker
            .delete_connection(&principal, &request.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteConnectionResponse {
            revoked_at_provider: revoked,
        }))
    }

    async fn get_access_token(
        &self,
        request: Request<pb::GetAccessTokenRequest>,
    ) -> Rpc<pb::GetAccessTokenResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.get_ref();
        let access = self
            .broker
            .access_token(&principal, &r.name, r.refused_version, self.now())
            .await
            .map_err(status)?;
        let got = &access.credential;
        // Basic connections are injected as `user:password` (the proto's
        // contract); the proxy base64-encodes it.
        let credential = match &got.username {
            Some(user) => format!("{user}:{}", got.credential.expose_secret()),
            None => got.credential.expose_secret().to_owned(),
        };
        Ok(Response::new(pb::GetAccessTokenResponse {
            credential,
            expire_time: got.expires_at.map(timestamp),
            version: got.version,
            api: access.api.as_ref().map(api_endpoint),
        }))
    }

    async fn create_custom_provider(
        &self,
        request: Request<pb::CreateCustomProviderRequest>,
    ) -> Rpc<pb::CreateCustomProviderResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let view = self
            .broker
            .create_custom_provider(&principal, &r.name, r.definition, self.now())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateCustomProviderResponse {
            provider: Some(custom_provider(view)),
        }))
    }

    async fn get_custom_provider(
        &self,
        request: Request<pb::GetCustomProviderRequest>,
    ) -> Rpc<pb::GetCustomProviderResponse> {
        let principal = Principal::of(&request)?.clone();
        let view = self
            .broker
            .get_custom_provider(&principal, &request.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetCustomProviderResponse {
            provider: Some(custom_provider(view)),
        }))
    }

    async fn list_custom_providers(
        &self,
        request: Request<pb::ListCustomProvidersRequest>,
    ) -> Rpc<pb::ListCustomProvidersResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.get_ref();
        let list = self
            .broker
            .list_custom_providers(&principal, &r.parent, r.page_size, &r.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListCustomProvidersResponse {
            providers: list.providers.into_iter().map(custom_provider).collect(),
            next_page_token: list.next_page_token,
        }))
    }

    async fn update_custom_provider(
        &self,
        request: Request<pb::UpdateCustomProviderRequest>,
    ) -> Rpc<pb::UpdateCustomProviderResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.into_inner();
        let view = self
            .broker
            .update_custom_provider(
                &principal,
                &r.name,
                r.definition,
                r.expected_version,
                self.now(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateCustomProviderResponse {
            provider: Some(custom_provider(view)),
        }))
    }

    async fn delete_custom_provider(
        &self,
        request: Request<pb::DeleteCustomProviderRequest>,
    ) -> Rpc<pb::DeleteCustomProviderResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.get_ref();
        self.broker
            .delete_custom_provider(&principal, &r.name, r.expected_version)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteCustomProviderResponse {}))
    }

    async fn list_tenant_health(
        &self,
        request: Request<pb::ListTenantHealthRequest>,
    ) -> Rpc<pb::ListTenantHealthResponse> {
        let principal = Principal::of(&request)?.clone();
        let r = request.get_ref();
        let page = self
            .broker
            .tenant_health(&principal, r.page_size, &r.page_token, self.now())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListTenantHealthResponse {
            tenants: page
                .tenants
                .into_iter()
                .map(|t| pb::TenantHealth {
                    tenant: format!("tenants/{}", t.tenant),
                    active: t.counts.active,
                    expiring_soon: t.counts.expiring_soon,
                    needs_reauth: t.counts.needs_reauth,
                    refresh_failing: t.counts.refresh_failing,
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type WatchConnectionChangesStream = ChangeStream;

    async fn watch_connection_changes(
        &self,
        _: Request<pb::WatchConnectionChangesRequest>,
    ) -> Rpc<Self::WatchConnectionChangesStream> {
        Ok(Response::new(change_stream(self.broker.watch_changes())))
    }

    async fn erase_tenant_providers(
        &self,
        request: Request<pb::EraseTenantProvidersRequest>,
    ) -> Rpc<pb::EraseTenantProvidersResponse> {
        let tenant = TenantId::parse(&request.get_ref().tenant).map_err(|_| {
            status(BrokerError::InvalidArgument {
                field: "tenant".into(),
                reason: "must be a tenant id (lowercase letters, digits and dashes)".into(),
            })
        })?;
        let erased = self
            .broker
            .erase_tenant_providers(&tenant)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::EraseTenantProvidersResponse {
            erased: i32::try_from(erased).unwrap_or(i32::MAX),
        }))
    }
}

/// WatchConnectionChanges' answer.
pub type ChangeStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::WatchConnectionChangesResponse, Status>> + Send>,
>;

/// Most names in one message: changes that arrive together go together.
const CHANGES_PER_MESSAGE: usize = 256;

/// A reset first (the watcher may have missed changes before it
/// subscribed), then the names as they come, batched when they come
/// together; a reset again whenever the watcher fell behind.
fn change_stream(changes: broadcast::Receiver<String>) -> ChangeStream {
    let first = pb::WatchConnectionChangesResponse {
        names: Vec::new(),
        reset: true,
    };
    let rest = futures::stream::unfold(changes, |mut changes| async move {
        let mut message = pb::WatchConnectionChangesResponse::default();
        match changes.recv().await {
            Ok(name) => message.names.push(name),
            Err(broadcast::error::RecvError::Lagged(_)) => message.reset = true,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
        while message.names.len() < CHANGES_PER_MESSAGE {
            match changes.try_recv() {
                Ok(name) => message.names.push(name),
                Err(broadcast::error::TryRecvError::Lagged(_)) => message.reset = true,
                Err(_) => break,
            }
        }
        Some((Ok(message), changes))
    });
    Box::pin(futures::stream::once(async { Ok(first) }).chain(rest))
}

/// How the proxy calls the integration's API, on the wire.
fn api_endpoint(api: &ApiTarget) -> pb::ApiEndpoint {
    use pb::CredentialLocation as L;
    let (location, name, prefix) = match &api.placement {
        CredentialPlacement::Bearer => (L::Bearer, String::new(), String::new()),
        CredentialPlacement::Header { name, prefix } => {
            (L::Header, name.as_str().to_owned(), prefix.clone())
        }
        CredentialPlacement::Query { name } => (L::Query, name.clone(), String::new()),
        CredentialPlacement::Basic => (L::Basic, String::new(), String::new()),
    };
    pb::ApiEndpoint {
        base_url: api.base_url.to_string(),
        headers: api
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some(pb::ApiHeader {
                    name: name.as_str().to_owned(),
                    value: value.to_str().ok()?.to_owned(),
                })
            })
            .collect(),
        credential_location: location.into(),
        credential_name: name,
        credential_prefix: prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_credentials_oneof_names_the_field() {
        match credentials(None) {
            Err(BrokerError::InvalidArgument { field, .. }) => assert_eq!(field, "credentials"),
            _ => panic!("expected INVALID_ARGUMENT"),
        }
    }

    #[test]
    fn every_mode_and_status_has_its_wire_value() {
        for (mode, wire) in [
            (AuthMode::OAuth2AuthorizationCode, pb::AuthMode::Oauth2Code),
            (
                AuthMode::OAuth2ClientCredentials,
                pb::AuthMode::Oauth2ClientCredentials,
            ),
            (AuthMode::ApiKey, pb::AuthMode::ApiKey),
            (AuthMode::Basic, pb::AuthMode::Basic),
        ] {
            assert_eq!(auth_mode(mode), wire);
        }
        assert_eq!(
            connection_status(ConnectionStatus::NeedsReauth),
            pb::ConnectionStatus::NeedsReauth
        );
    }

    #[tokio::test]
    async fn changes_start_with_a_reset_come_batched_and_a_lag_resets_again() {
        let (tx, rx) = broadcast::channel(4);
        let mut stream = change_stream(rx);
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.reset && first.names.is_empty());
        tx.send("tenants/a/integrations/x".to_owned()).unwrap();
        tx.send("tenants/a/integrations/y".to_owned()).unwrap();
        let batch = stream.next().await.unwrap().unwrap();
        assert_eq!(
            batch.names,
            ["tenants/a/integrations/x", "tenants/a/integrations/y"]
        );
        assert!(!batch.reset);
        // More than the backlog while the watcher is not reading: the
        // oldest are lost, so the watcher is told to drop everything.
        for i in 0..6 {
            tx.send(format!("tenants/b/integrations/i{i}")).unwrap();
        }
        let lagged = stream.next().await.unwrap().unwrap();
        assert!(lagged.reset, "{lagged:?}");
        drop(tx);
        let mut rest = Vec::new();
        while let Some(message) = stream.next().await {
            rest.extend(message.unwrap().names);
        }
        assert!(lagged.names.len() + rest.len() <= 4);
    }
}
