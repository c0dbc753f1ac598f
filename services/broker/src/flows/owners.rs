//! The registry behind the flows: a connection's owner must exist before
//! anything is started or stored for it (the credential store knows tenants
//! by their keys, not the registry's orgs, bots and users, so without this
//! a connection could be kept for a bot nobody created and be found by
//! whoever creates it later), and the tenants the health counts page over.

use locksmith_auth::Principal;
use locksmith_domain::Scope;
use locksmith_store::DocumentStore;

use super::Broker;
use crate::{error::BrokerError, registry::RegistryClient};

impl<S: DocumentStore> Broker<S> {
    /// Checks owners against `registry` and lists tenants through it. The
    /// broker process always has one (`[services.registry]`); a broker
    /// built without one (unit tests) checks no owner and lists no tenant.
    pub fn with_registry(mut self, registry: RegistryClient) -> Self {
        self.registry = Some(registry);
        self
    }

    pub(super) fn registry(&self) -> Result<&RegistryClient, BrokerError> {
        self.registry
            .as_ref()
            .ok_or_else(|| BrokerError::Internal("the broker has no registry client".into()))
    }

    /// Whether `owner` may hold a new connection (one registry call): an
    /// org, bot or user that exists, or an active tenant. NOT_FOUND names
    /// the missing one, in the registry's words.
    pub(super) async fn require_owner(
        &self,
        principal: &Principal,
        owner: &Scope,
    ) -> Result<(), BrokerError> {
        match &self.registry {
            Some(registry) => registry.require_owner(principal, owner).await,
            None => Ok(()),
        }
    }
}
