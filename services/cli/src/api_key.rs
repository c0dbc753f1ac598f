//! `locksmith api-key create`: makes an API key through the registry's gRPC
//! API, as `spiffe://locksmith/cli` (a certificate the PKI directory holds).
//! This is how the first operator key comes to be: `make run` calls it once.
//!
//! The key is printed alone on standard output, once; it cannot be shown
//! again.

use std::{io::Write, path::Path};

use anyhow::Context;
use locksmith_proto::registry::v1::{self as pb, api_key_service_client::ApiKeyServiceClient};
use locksmith_tls::{ServiceName, TlsFiles};
use tonic::transport::Endpoint;

/// Whose key to make.
pub enum Owner {
    /// An operator key.
    Operator,
    /// A tenant key with roles.
    Tenant {
        /// The tenant.
        tenant: String,
        /// `read`, `write`, `admin`.
        roles: Vec<String>,
    },
}

fn role(name: &str) -> anyhow::Result<i32> {
    Ok(match name {
        "read" => pb::ApiKeyRole::Read as i32,
        "write" => pb::ApiKeyRole::Write as i32,
        "admin" => pb::ApiKeyRole::Admin as i32,
        other => anyhow::bail!("unknown role {other:?}: use read, write or admin"),
    })
}

/// Creates the key and writes it to `out`.
pub async fn create(
    registry: &str,
    pki: &Path,
    owner: Owner,
    name: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let tls = TlsFiles::in_dir(pki, ServiceName::Cli)
        .load_for_service(ServiceName::Cli, time::OffsetDateTime::now_utc())
        .with_context(|| format!("loading the cli certificate from {}", pki.display()))?;
    let channel = Endpoint::from_shared(registry.to_owned())
        .with_context(|| format!("registry address {registry:?}"))?
        .tls_config(tls.client_tls("localhost"))?
        .connect()
        .await
        .with_context(|| format!("connecting to the registry at {registry}"))?;
    let (owner, roles) = match owner {
        Owner::Operator => (
            pb::api_key::Owner::Operator(pb::OperatorOwner {}),
            Vec::new(),
        ),
        Owner::Tenant { tenant, roles } => (
            pb::api_key::Owner::TenantId(tenant),
            roles
                .iter()
                .map(|r| role(r))
                .collect::<anyhow::Result<_>>()?,
        ),
    };
    let created = ApiKeyServiceClient::new(channel)
        .create_api_key(pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey {
                owner: Some(owner),
                display_name: name.to_owned(),
                roles,
                ..Default::default()
            }),
        })
        .await
        .map_err(|status| {
            anyhow::anyhow!(
                "the registry refused: {} ({:?})",
                status.message(),
                status.code()
            )
        })?
        .into_inner();
    writeln!(out, "{}", created.secret)?;
    Ok(())
}
