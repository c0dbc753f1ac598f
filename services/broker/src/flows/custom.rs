//! The broker's calls on tenants' custom providers: create, show, list,
//! update and delete, each authorized per tenant (admin to change, read to
//! see), and the admission of a definition: the catalog's own validation,
//! then every URL it names checked where it points.
//!
//! A definition's URLs are checked when it is written, not only when used,
//! so a tenant learns at once that `token_url` points at an internal
//! address, and so nothing aimed there is ever stored. URL templates are
//! checked with each input's documented `example` substituted. Two checks:
//!
//! 1. The egress guard's ([`EgressClient::check_url`]): https, no private,
//!    loopback, link-local or metadata address after DNS resolution unless
//!    the deployment allow-lists it.
//! 2. The suite's own endpoints ([`SuiteEndpoints`]: OpenBao, the credential
//!    store): refused even when the deployment allow-lists their network
//!    (a development deployment allow-lists loopback, where OpenBao listens
//!    too), since no tenant has a reason to send tokens there.
//!
//! Calls still go through the egress guard when made (a name may resolve
//! elsewhere later); the suite-endpoint check is at admission only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use locksmith_auth::{Access, Principal};
use locksmith_domain::{FieldError, IntegrationId, Scope, TenantId};
use locksmith_egress::EgressError;
use locksmith_store::DocumentStore;
use reqwest::Url;
use time::OffsetDateTime;

use super::{Broker, authorize, invalid};
use crate::catalog::{Provider, parse_custom_provider};
use crate::custom::{
    CustomProviderList, CustomProviderView, CustomProviders, parse_name, parse_parent,
    shipped_already,
};
use crate::error::{BrokerError, RETRY_AFTER};

/// Longest definition accepted (a shipped entry is a few hundred bytes).
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;
/// Bound on resolving a suite endpoint's or a candidate's host.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The suite's own endpoints, which no custom provider may point at, by
/// host and port (the OpenBao the suite stores in, the credential store).
#[derive(Debug, Clone, Default)]
pub struct SuiteEndpoints(Vec<SuiteEndpoint>);

#[derive(Debug, Clone)]
struct SuiteEndpoint {
    label: String,
    /// Lower case, IPv6 without brackets, no trailing dot.
    host: String,
    port: u16,
}

impl SuiteEndpoints {
    /// None.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the endpoint at `url` (`http://127.0.0.1:8200`), named `label`
    /// in refusals (`the suite's OpenBao`). Its scheme's default port counts
    /// when the URL names none.
    pub fn with(mut self, label: impl Into<String>, url: &str) -> Result<Self, String> {
        let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let (Some(host), Some(port)) = (host_of(&parsed), parsed.port_or_known_default()) else {
            return Err(format!("`{url}` names no host and port"));
        };
        self.0.push(SuiteEndpoint {
            label: label.into(),
            host,
            port,
        });
        Ok(self)
    }

    /// The label of the suite endpoint `url` reaches, if any: same port,
    /// and the same host name or an address in common after resolution.
    async fn hit(&self, url: &Url) -> Option<String> {
        let (host, port) = (host_of(url)?, url.port_or_known_default()?);
        let mut candidate = None;
        for endpoint in self.0.iter().filter(|e| e.port == port) {
            if endpoint.host == host {
                return Some(format!("{} ({})", endpoint.label, authority(url)));
            }
            if candidate.is_none() {
                candidate = Some(resolve(&host, port).await);
            }
            let theirs = resolve(&endpoint.host, port).await;
            let ours = candidate.as_deref().unwrap_or_default();
            let meets = ours.iter().any(|a| {
                theirs
                    .iter()
                    .any(|b| a == b || (b.is_unspecified() && a.is_loopback()))
            });
            if meets {
                return Some(format!("{} ({})", endpoint.label, authority(url)));
            }
        }
        None
    }
}

fn authority(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        _ => url.origin().ascii_serialization(),
    }
}

/// A URL's host as compared here: lower case, IPv6 without brackets, no
/// trailing dot (`API.example.com.` and `api.example.com` are one host).
fn host_of(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

/// Every address `host` stands for (IPv4-mapped IPv6 as IPv4); none when
/// it does not resolve in time.
async fn resolve(host: &str, port: u16) -> Vec<IpAddr> {
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(a) => vec![a],
        Err(_) => {
            match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await
            {
                Ok(Ok(found)) => found.map(|s| s.ip()).collect(),
                _ => Vec::new(),
            }
        }
    };
    addrs.into_iter().map(|a| a.to_canonical()).collect()
}

/// A definition's bad fields, named under `definition.` as the request
/// carries them (`definition.token_url`).
fn definition_errors(errors: Vec<FieldError>) -> BrokerError {
    BrokerError::InvalidFields(
        errors
            .into_iter()
            .map(|e| {
                let field = if e.field.is_empty() {
                    "definition".to_owned()
                } else {
                    format!("definition.{}", e.field)
                };
                FieldError::new(field, e.message)
            })
            .collect(),
    )
}

/// The URLs a provider names, by the field that names them, with every
/// input's example substituted.
fn urls_of(provider: &Provider) -> Result<Vec<(&'static str, Url)>, BrokerError> {
    let examples: BTreeMap<String, String> = provider
        .inputs()
        .iter()
        .map(|(name, spec)| (name.clone(), spec.example().to_owned()))
        .collect();
    let inputs = provider
        .resolve_inputs(&examples)
        .map_err(|e| invalid("definition.inputs", e.to_string()))?;
    let bad =
        |field: &'static str| move |e: crate::catalog::EndpointError| invalid(field, e.to_string());
    let mut urls = Vec::new();
    if let Some(oauth2) = provider.oauth2() {
        if oauth2.authorization_url().is_some() {
            let url = provider
                .authorization_url(&inputs)
                .map_err(bad("definition.authorization_url"))?;
            urls.push(("definition.authorization_url", url));
        }
        let url = provider
            .token_url(&inputs)
            .map_err(bad("definition.token_url"))?;
        urls.push(("definition.token_url", url));
        if let Some((url, _)) = provider
            .revocation_url(&inputs)
            .map_err(bad("definition.revocation_url"))?
        {
            urls.push(("definition.revocation_url", url));
        }
    }
    if provider.api().is_some() {
        let url = provider
            .api_base_url(&inputs)
            .map_err(bad("definition.api.base_url"))?;
        urls.push(("definition.api.base_url", url));
    }
    Ok(urls)
}

impl<S: DocumentStore> Broker<S> {
    /// Refuses custom providers aimed at `endpoints` (the suite's own
    /// services), on top of the egress guard.
    pub fn protect(mut self, endpoints: SuiteEndpoints) -> Self {
        self.suite = endpoints;
        self
    }

    /// Tenants' custom providers (behind the shipped catalog).
    pub fn custom_providers(&self) -> &CustomProviders<S> {
        &self.customs
    }

    /// Validates `definition` as the entry `integration` and checks every
    /// URL it names; answers nothing but whether it may be stored.
    pub async fn admit_definition(
        &self,
        integration: &IntegrationId,
        definition: &str,
    ) -> Result<(), BrokerError> {
        if definition.len() > MAX_DEFINITION_BYTES {
            return Err(invalid(
                "definition",
                format!("longer than {MAX_DEFINITION_BYTES} bytes"),
            ));
        }
        let provider = parse_custom_provider(integration.as_str(), definition.as_bytes())
            .map_err(|e| definition_errors(e.errors))?;
        let mut refused = Vec::new();
        for (field, url) in urls_of(&provider)? {
            match self.egress.check_url(&url).await {
                Ok(()) => {}
                Err(EgressError::Refused { reason, .. }) => {
                    refused.push(FieldError::new(
                        field,
                        format!("is refused by the egress policy: {reason}"),
                    ));
                    continue;
                }
                Err(EgressError::Timeout { .. }) => {
                    return Err(BrokerError::Unavailable {
                        what: "name resolution of the provider's hosts",
                        retry_after: RETRY_AFTER,
                    });
                }
                Err(_) => {
                    refused.push(FieldError::new(
                        field,
                        "names a host that does not resolve now",
                    ));
                    continue;
                }
            }
            if let Some(which) = self.suite.hit(&url).await {
                refused.push(FieldError::new(
                    field,
                    format!(
                        "points at {which}, one of the suite's own services; a custom provider \
                         may not reach them"
                    ),
                ));
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(BrokerError::InvalidFields(refused))
        }
    }

    fn custom_name(
        principal: &Principal,
        name: &str,
        access: Access,
    ) -> Result<(TenantId, IntegrationId), BrokerError> {
        let (tenant, integration) = parse_name(name)
            .ok_or_else(|| invalid("name", "must be tenants/{t}/providers/{integration}"))?;
        authorize(
            principal,
            &Scope::Tenant(tenant.clone()),
            access,
            "custom provider",
        )?;
        Ok((tenant, integration))
    }

    /// Creates a tenant's custom provider.
    pub async fn create_custom_provider(
        &self,
        principal: &Principal,
        name: &str,
        definition: String,
        now: OffsetDateTime,
    ) -> Result<CustomProviderView, BrokerError> {
        let (tenant, integration) = Self::custom_name(principal, name, Access::Admin)?;
        if self.catalog.get(integration.as_str()).is_some() {
            return Err(shipped_already(&integration));
        }
        self.admit_definition(&integration, &definition).await?;
        let view = self
            .customs
            .create(&tenant, &integration, definition, now)
            .await?;
        tracing::info!(provider = %view.name, "custom provider created");
        Ok(view)
    }

    /// One custom provider.
    pub async fn get_custom_provider(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<CustomProviderView, BrokerError> {
        let (tenant, integration) = Self::custom_name(principal, name, Access::Read)?;
        self.customs.get(&tenant, &integration).await
    }

    /// One page of a tenant's custom providers.
    pub async fn list_custom_providers(
        &self,
        principal: &Principal,
        parent: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<CustomProviderList, BrokerError> {
        let tenant =
            parse_parent(parent).ok_or_else(|| invalid("parent", "must be tenants/{t}"))?;
        authorize(
            principal,
            &Scope::Tenant(tenant.clone()),
            Access::Read,
            "tenant",
        )?;
        self.customs.list(&tenant, page_size, page_token).await
    }

    /// Replaces a custom provider's definition (check-and-set).
    pub async fn update_custom_provider(
        &self,
        principal: &Principal,
        name: &str,
        definition: String,
        expected_version: u64,
        now: OffsetDateTime,
    ) -> Result<CustomProviderView, BrokerError> {
        let (tenant, integration) = Self::custom_name(principal, name, Access::Admin)?;
        if expected_version == 0 {
            return Err(invalid(
                "expected_version",
                "is required: the version the change is based on",
            ));
        }
        self.admit_definition(&integration, &definition).await?;
        let view = self
            .customs
            .update(&tenant, &integration, definition, expected_version, now)
            .await?;
        tracing::info!(provider = %view.name, version = view.version, "custom provider updated");
        Ok(view)
    }

    /// Deletes a custom provider (check-and-set when `expected_version` is
    /// not 0).
    pub async fn delete_custom_provider(
        &self,
        principal: &Principal,
        name: &str,
        expected_version: u64,
    ) -> Result<(), BrokerError> {
        let (tenant, integration) = Self::custom_name(principal, name, Access::Admin)?;
        self.customs
            .delete(&tenant, &integration, expected_version)
            .await?;
        tracing::info!(provider = %name, "custom provider deleted");
        Ok(())
    }
}

impl<S: DocumentStore> Broker<S> {
    /// Erases every custom provider of `tenant`, a deleted tenant (the
    /// registry's deletion sweep): answers how many were erased.
    pub async fn erase_tenant_providers(&self, tenant: &TenantId) -> Result<u32, BrokerError> {
        self.customs.erase_tenant(tenant).await
    }
}
