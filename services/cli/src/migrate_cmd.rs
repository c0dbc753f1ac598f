//! Running `locksmith migrate env` against the credential store: read what
//! each system secret holds, plan ([`crate::migrate::plan`]), print the plan
//! (never a value), and unless `--dry-run` write each changed secret with
//! check-and-set on the version it was read at. The CLI calls as
//! `spiffe://locksmith/cli` and acts for the operator (system secrets are
//! operators' to write).

use std::{collections::BTreeMap, io::Write, path::Path};

use anyhow::Context;
use locksmith_auth::Principal;
use locksmith_domain::secrets::migration::ENV_MAPPING;
use locksmith_proto::credstore::v1::{
    self as pb, credential_store_service_client::CredentialStoreServiceClient,
};
use locksmith_tls::{ServiceName, TlsFiles};
use secrecy::{ExposeSecret, SecretString};
use tonic::{Code, transport::Channel};

use crate::migrate::{Plan, parse_dotenv, plan};

/// Where the variables come from.
pub enum Source<'a> {
    /// The process environment (only mapped variables are read).
    Environment,
    /// A `.env` file (its unmapped variables are reported).
    File(&'a Path),
}

/// A system secret as read: its version (0 if absent) and fields.
struct Stored {
    version: u64,
    fields: BTreeMap<String, SecretString>,
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    locksmith_auth::forward(
        &mut request,
        &Principal::Operator {
            subject: "cli:migrate-env".into(),
        },
    );
    request
}

async fn read(
    client: &mut CredentialStoreServiceClient<Channel>,
    secret: &str,
) -> anyhow::Result<Stored> {
    let name = format!("system/secrets/{secret}");
    match client
        .get_secret(request(pb::GetSecretRequest {
            name: name.clone(),
            version: 0,
        }))
        .await
    {
        Ok(answer) => {
            let secret = answer.into_inner().secret.unwrap_or_default();
            Ok(Stored {
                version: secret.version,
                fields: secret
                    .fields
                    .into_iter()
                    .map(|(k, v)| (k, SecretString::from(v)))
                    .collect(),
            })
        }
        Err(status) if status.code() == Code::NotFound => Ok(Stored {
            version: 0,
            fields: BTreeMap::new(),
        }),
        Err(status) => anyhow::bail!("reading {name}: {} ({:?})", status.message(), status.code()),
    }
}

/// Runs the migration and writes the plan and summary to `out`.
pub async fn run(
    credstore: &str,
    pki: &Path,
    source: Source<'_>,
    dry_run: bool,
    force: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (vars, report_unknown) = match source {
        Source::Environment => (
            ENV_MAPPING
                .iter()
                .filter_map(|m| {
                    std::env::var(m.env)
                        .ok()
                        .map(|v| (m.env.to_owned(), SecretString::from(v)))
                })
                .collect::<Vec<_>>(),
            false,
        ),
        Source::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            (
                parse_dotenv(&text).with_context(|| format!("parsing {}", path.display()))?,
                true,
            )
        }
    };
    let tls = TlsFiles::in_dir(pki, ServiceName::Cli)
        .load_for_service(ServiceName::Cli, time::OffsetDateTime::now_utc())
        .with_context(|| format!("loading the cli certificate from {}", pki.display()))?;
    let channel = tonic::transport::Endpoint::from_shared(credstore.to_owned())
        .with_context(|| format!("credential store address {credstore:?}"))?
        .tls_config(tls.client_tls("localhost"))?
        .connect()
        .await
        .with_context(|| format!("connecting to the credential store at {credstore}"))?;
    let mut client = CredentialStoreServiceClient::new(channel);
    // The system scope holds no secret without its key: make it on a fresh
    // deployment; one that exists already is what a re-run finds.
    match client
        .provision_tenant_key(request(pb::ProvisionTenantKeyRequest {
            owner: "system".into(),
        }))
        .await
    {
        Ok(_) => writeln!(out, "provisioned the system scope's key")?,
        Err(status) if status.code() == Code::AlreadyExists => {}
        Err(status) => anyhow::bail!(
            "provisioning the system key: {} ({:?})",
            status.message(),
            status.code()
        ),
    }

    let mut stored: BTreeMap<&'static str, Stored> = BTreeMap::new();
    for row in ENV_MAPPING {
        if !stored.contains_key(row.secret) && vars.iter().any(|(name, _)| name == row.env) {
            stored.insert(row.secret, read(&mut client, row.secret).await?);
        }
    }
    let the_plan: Plan = plan(vars, report_unknown, force, |secret, field| {
        stored
            .get(secret)
            .and_then(|s| s.fields.get(field))
            .map(|v| SecretString::from(v.expose_secret().to_owned()))
    });
    for line in the_plan.describe() {
        writeln!(out, "{line}")?;
    }
    if dry_run {
        writeln!(out, "dry run: {}", the_plan.summary())?;
        return Ok(());
    }
    for (secret, steps) in the_plan.writes() {
        let current = stored.get(secret);
        let mut fields: BTreeMap<String, String> = current
            .map(|s| {
                s.fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        for step in steps {
            fields.insert(step.field.to_owned(), step.value.expose_secret().to_owned());
        }
        client
            .put_secret(request(pb::PutSecretRequest {
                name: format!("system/secrets/{secret}"),
                fields: fields.into_iter().collect(),
                expected_version: current.map_or(0, |s| s.version),
                unconditional: false,
            }))
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "writing system/secrets/{secret}: {} ({:?}); nothing else was changed for it",
                    status.message(),
                    status.code()
                )
            })?;
    }
    writeln!(out, "{}", the_plan.summary())?;
    Ok(())
}
