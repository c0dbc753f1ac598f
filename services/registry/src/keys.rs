//! Tenant keys follow tenants: the registry has the credential store
//! provision a tenant's data key when it creates the tenant and shred it
//! when it deletes the tenant (issue 11, "Tenant key lifecycle"). A deleted
//! tenant's custom providers, kept by the OAuth broker, are erased in the
//! same sweep, so a tenant created later with the same id starts without
//! them.
//!
//! [`TenantKeys`] is the seam: [`CredStoreKeys`] calls
//! `locksmith.credstore.v1.CredentialStoreService` over mTLS with the
//! registry's own certificate; the unit tests use an in-memory fake. Both
//! calls are idempotent on the credential store's side (a shred of an absent
//! key succeeds; a provision of a present one answers
//! [`KeyError::AlreadyExists`]), which is what lets the registry's create and
//! delete be resumed after a crash (see `tenants.rs`).

use std::time::Duration;

use locksmith_auth::Principal;
use locksmith_domain::{Scope, TenantId};
use locksmith_proto::{
    broker::v1::{
        EraseTenantProvidersRequest, o_auth_broker_service_client::OAuthBrokerServiceClient,
    },
    credstore::v1::{self as pb, credential_store_service_client::CredentialStoreServiceClient},
};
use locksmith_tls::TlsMaterial;
use tonic::{Code, Request, transport::Channel};

use crate::config::Endpoint;

/// Connect timeout for the credential store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest one key call may take before the registry answers UNAVAILABLE.
/// Well under the edge's request timeout (15 s), so the caller hears the
/// registry's answer rather than the edge's own timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a key call did not happen.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The tenant has a key already (only from [`TenantKeys::provision`]).
    #[error("the tenant's key exists already")]
    AlreadyExists,
    /// The credential store (or the broker) could not be reached or
    /// answered UNAVAILABLE; the call may be retried. The message names the
    /// peer and is for the log.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The broker could not be reached or answered UNAVAILABLE (only from
    /// [`TenantKeys::erase_providers`]); the delete may be retried.
    #[error("the broker is unavailable: {0}")]
    BrokerUnavailable(String),
    /// The peer refused the call (a deployment fault such as an allow-list
    /// without the registry); the message names it and is for the log.
    #[error("refused: {0}")]
    Refused(String),
}

/// Provisioning and shredding tenant keys.
#[tonic::async_trait]
pub trait TenantKeys: Send + Sync + 'static {
    /// Creates `tenant`'s data key; [`KeyError::AlreadyExists`] if it has one.
    async fn provision(&self, actor: &Principal, tenant: &TenantId) -> Result<(), KeyError>;

    /// Destroys `tenant`'s data key for good; succeeds if it has none.
    async fn shred(&self, actor: &Principal, tenant: &TenantId) -> Result<(), KeyError>;

    /// Erases the secrets and connections of a member scope (an org, bot
    /// or user) and of everything inside it; succeeds if there are none.
    async fn erase_scope(&self, actor: &Principal, scope: &Scope) -> Result<(), KeyError>;

    /// Erases a deleted `tenant`'s custom providers at the broker; succeeds
    /// if there are none (or no broker is configured).
    async fn erase_providers(&self, tenant: &TenantId) -> Result<(), KeyError>;
}

/// [`TenantKeys`] over the credential store's gRPC API.
#[derive(Clone)]
pub struct CredStoreKeys {
    client: CredentialStoreServiceClient<Channel>,
    /// The broker, for a deleted tenant's custom providers; `None` when the
    /// deployment runs none.
    broker: Option<OAuthBrokerServiceClient<Channel>>,
}

/// The credential store's address could not be used.
#[derive(Debug, thiserror::Error)]
#[error("service at {url}: {source}")]
pub struct ConnectError {
    url: String,
    source: tonic::transport::Error,
}

impl CredStoreKeys {
    /// A client of the credential store at `endpoint`, presenting `tls` (the
    /// registry's certificate). The channel connects on first use, so the
    /// registry starts while the credential store is down; tenant creates and
    /// deletes then answer UNAVAILABLE until it is back.
    pub fn connect(endpoint: &Endpoint, tls: &TlsMaterial) -> Result<Self, ConnectError> {
        Ok(Self {
            client: CredentialStoreServiceClient::new(channel(endpoint, tls)?),
            broker: None,
        })
    }

    /// Also erases deleted tenants' custom providers at the broker at
    /// `endpoint` (connected on first use, like the credential store).
    pub fn with_broker(
        mut self,
        endpoint: &Endpoint,
        tls: &TlsMaterial,
    ) -> Result<Self, ConnectError> {
        self.broker = Some(OAuthBrokerServiceClient::new(channel(endpoint, tls)?));
        Ok(self)
    }
}

/// A lazily connected mTLS channel to `endpoint`, each call bounded.
fn channel(endpoint: &Endpoint, tls: &TlsMaterial) -> Result<Channel, ConnectError> {
    let err = |source| ConnectError {
        url: endpoint.url.clone(),
        source,
    };
    Ok(
        tonic::transport::Endpoint::from_shared(endpoint.url.clone())
            .map_err(err)?
            .tls_config(tls.client_tls(&endpoint.server_name))
            .map_err(err)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy(),
    )
}

/// The request for `message`, carrying the principal the registry acts for.
/// An operator is forwarded so the credential store's audit trail names the
/// person behind the call; a suite service (the registry's own sweeps, or a
/// service acting for itself) is not: the registry then calls as itself,
/// which is what its certificate already says.
fn request<T>(actor: &Principal, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if matches!(actor, Principal::Operator { .. }) {
        locksmith_auth::forward(&mut request, actor);
    }
    request
}

fn owner(tenant: &TenantId) -> String {
    format!("tenants/{tenant}")
}

/// Sorts a refusal: transient failures (the store down, a timeout, a
/// connection that broke) may be retried; anything else is a fault.
fn classify(status: &tonic::Status) -> KeyError {
    classify_from("the credential store", status)
}

fn classify_from(peer: &str, status: &tonic::Status) -> KeyError {
    let what = format!("{peer}: {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::AlreadyExists => KeyError::AlreadyExists,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted => {
            KeyError::Unavailable(what)
        }
        // tonic reports transport failures (refused connection, TLS
        // handshake to a restarting peer) as UNKNOWN with a source.
        Code::Unknown if std::error::Error::source(status).is_some() => KeyError::Unavailable(what),
        Code::Ok
        | Code::Unknown
        | Code::InvalidArgument
        | Code::NotFound
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss
        | Code::Unauthenticated => KeyError::Refused(what),
    }
}

#[tonic::async_trait]
impl TenantKeys for CredStoreKeys {
    async fn provision(&self, actor: &Principal, tenant: &TenantId) -> Result<(), KeyError> {
        let message = pb::ProvisionTenantKeyRequest {
            owner: owner(tenant),
        };
        self.client
            .clone()
            .provision_tenant_key(request(actor, message))
            .await
            .map(drop)
            .map_err(|s| classify(&s))
    }

    async fn shred(&self, actor: &Principal, tenant: &TenantId) -> Result<(), KeyError> {
        let message = pb::ShredTenantKeyRequest {
            owner: owner(tenant),
        };
        self.client
            .clone()
            .shred_tenant_key(request(actor, message))
            .await
            .map(drop)
            .map_err(|s| classify(&s))
    }

    async fn erase_scope(&self, actor: &Principal, scope: &Scope) -> Result<(), KeyError> {
        let message = pb::EraseScopeRequest {
            scope: scope.storage_path(),
        };
        self.client
            .clone()
            .erase_scope(request(actor, message))
            .await
            .map(drop)
            .map_err(|s| classify(&s))
    }

    async fn erase_providers(&self, tenant: &TenantId) -> Result<(), KeyError> {
        let Some(broker) = &self.broker else {
            return Ok(());
        };
        // As the registry itself: the broker allows this call to the
        // registry's certificate only, whoever asked for the delete.
        let message = EraseTenantProvidersRequest {
            tenant: tenant.to_string(),
        };
        broker
            .clone()
            .erase_tenant_providers(Request::new(message))
            .await
            .map(drop)
            .map_err(|s| match classify_from("the broker", &s) {
                KeyError::Unavailable(what) => KeyError::BrokerUnavailable(what),
                other => other,
            })
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory key service for unit tests, which can be made to fail.

    use std::{
        collections::BTreeSet,
        sync::{Mutex, atomic::AtomicBool, atomic::Ordering},
    };

    use super::*;

    /// Keys by tenant; `down` makes every call UNAVAILABLE.
    #[derive(Default)]
    pub struct MemoryKeys {
        pub keys: Mutex<BTreeSet<String>>,
        pub down: AtomicBool,
        /// Makes only `erase_providers` (the broker) UNAVAILABLE.
        pub broker_down: AtomicBool,
        /// Every call, in order: `provision acme`, `shred acme`.
        pub calls: Mutex<Vec<String>>,
    }

    impl MemoryKeys {
        pub fn has(&self, tenant: &str) -> bool {
            self.keys.lock().unwrap().contains(tenant)
        }

        pub fn set_down(&self, down: bool) {
            self.down.store(down, Ordering::SeqCst);
        }

        fn enter(&self, call: &str, tenant: &TenantId) -> Result<(), KeyError> {
            self.calls.lock().unwrap().push(format!("{call} {tenant}"));
            if self.down.load(Ordering::SeqCst) {
                return Err(KeyError::Unavailable("down for the test".into()));
            }
            Ok(())
        }
    }

    #[tonic::async_trait]
    impl TenantKeys for MemoryKeys {
        async fn provision(&self, _: &Principal, tenant: &TenantId) -> Result<(), KeyError> {
            self.enter("provision", tenant)?;
            if self.keys.lock().unwrap().insert(tenant.to_string()) {
                Ok(())
            } else {
                Err(KeyError::AlreadyExists)
            }
        }

        async fn shred(&self, _: &Principal, tenant: &TenantId) -> Result<(), KeyError> {
            self.enter("shred", tenant)?;
            self.keys.lock().unwrap().remove(tenant.as_str());
            Ok(())
        }

        async fn erase_scope(&self, _: &Principal, scope: &Scope) -> Result<(), KeyError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("erase {}", scope.storage_path()));
            if self.down.load(Ordering::SeqCst) {
                return Err(KeyError::Unavailable("down for the test".into()));
            }
            Ok(())
        }

        async fn erase_providers(&self, tenant: &TenantId) -> Result<(), KeyError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("erase-providers {tenant}"));
            if self.broker_down.load(Ordering::SeqCst) {
                return Err(KeyError::BrokerUnavailable("down for the test".into()));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_unavailable_and_the_rest_refused() {
        assert!(matches!(
            classify(&tonic::Status::already_exists("key exists already")),
            KeyError::AlreadyExists
        ));
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled] {
            assert!(
                matches!(
                    classify(&tonic::Status::new(code, "x")),
                    KeyError::Unavailable(_)
                ),
                "{code:?}"
            );
        }
        for code in [
            Code::PermissionDenied,
            Code::Internal,
            Code::Unknown,
            Code::NotFound,
        ] {
            assert!(
                matches!(
                    classify(&tonic::Status::new(code, "x")),
                    KeyError::Refused(_)
                ),
                "{code:?}"
            );
        }
    }

    #[test]
    fn operators_are_forwarded_and_services_call_as_themselves() {
        let operator = Principal::Operator {
            subject: "api-key:k1".into(),
        };
        let forwarded = request(&operator, ());
        assert!(
            forwarded
                .metadata()
                .contains_key(locksmith_auth::PRINCIPAL_HEADER)
        );
        let service = Principal::Service {
            service: locksmith_tls::ServiceName::Registry,
        };
        assert!(
            !request(&service, ())
                .metadata()
                .contains_key(locksmith_auth::PRINCIPAL_HEADER)
        );
    }
}
