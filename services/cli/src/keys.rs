//! `locksmith keys rotate`: starts a new data key version for a tenant (or
//! the system scope) through the credential store's gRPC API, as
//! `spiffe://locksmith/cli` acting for the operator (key calls are
//! operators'). New writes use the new version at once; the store
//! re-encrypts older values in the background, each rewrite being a new
//! secret version (a writer using check-and-set may then see a conflict and
//! retry).

use std::{io::Write, path::Path};

use anyhow::Context;
use locksmith_auth::Principal;
use locksmith_domain::TenantId;
use locksmith_proto::credstore::v1::{
    self as pb, credential_store_service_client::CredentialStoreServiceClient,
};
use locksmith_tls::{ServiceName, TlsFiles};
use tonic::{Code, transport::Endpoint};

/// Whose key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    /// A tenant's (`--tenant T`).
    Tenant(&'a str),
    /// The system scope's (`--system`).
    System,
}

impl Owner<'_> {
    /// The owner's name on the wire (`tenants/{t}`, `system`). The tenant id
    /// is checked here so a typo gets a clear message before any connection.
    fn resource(&self) -> anyhow::Result<String> {
        match self {
            Owner::Tenant(t) => {
                let id = TenantId::parse(t).with_context(|| format!("tenant id {t:?}"))?;
                Ok(format!("tenants/{id}"))
            }
            Owner::System => Ok("system".to_owned()),
        }
    }
}

/// Rotates `owner`'s key and writes the outcome (never key material) to `out`.
pub async fn rotate(
    credstore: &str,
    pki: &Path,
    owner: Owner<'_>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let resource = owner.resource()?;
    let tls = TlsFiles::in_dir(pki, ServiceName::Cli)
        .load_for_service(ServiceName::Cli, time::OffsetDateTime::now_utc())
        .with_context(|| format!("loading the cli certificate from {}", pki.display()))?;
    let channel = Endpoint::from_shared(credstore.to_owned())
        .with_context(|| format!("credential store address {credstore:?}"))?
        .tls_config(tls.client_tls("localhost"))?
        .connect()
        .await
        .with_context(|| format!("connecting to the credential store at {credstore}"))?;
    let mut request = tonic::Request::new(pb::RotateTenantKeyRequest {
        owner: resource.clone(),
    });
    locksmith_auth::forward(
        &mut request,
        &Principal::Operator {
            subject: "cli:keys-rotate".into(),
        },
    );
    let answer = CredentialStoreServiceClient::new(channel)
        .rotate_tenant_key(request)
        .await
        .map_err(|status| match status.code() {
            Code::NotFound => anyhow::anyhow!(
                "{resource} has no key: the tenant does not exist or its key was shredded"
            ),
            code => anyhow::anyhow!(
                "the credential store refused to rotate {resource}: {} ({code:?})",
                status.message()
            ),
        })?
        .into_inner();
    writeln!(
        out,
        "rotated the key of {resource}: new writes are sealed with key version {}; \
         older values are being re-encrypted in the background",
        answer.key_version
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use locksmith_credstore::{CredStore, MemoryAudit, server};
    use locksmith_crypto::MasterKeyWrapper;
    use locksmith_store::{EmbeddedStore, system_clock};

    use super::*;

    /// A credential store on loopback with a fresh PKI; acme has a key.
    async fn credstore() -> (String, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
        locksmith_tls::install_crypto_provider();
        let pki = tempfile::tempdir().unwrap();
        locksmith_tls::init_dir(pki.path(), time::OffsetDateTime::now_utc(), false).unwrap();
        let clock = system_clock();
        let store = Arc::new(CredStore::new(
            EmbeddedStore::in_memory(clock.clone()).unwrap(),
            MasterKeyWrapper::load_or_create(pki.path().join("master-key")).unwrap(),
            Arc::new(MemoryAudit::new()),
            clock,
        ));
        let op = Principal::Operator {
            subject: "api-key:test".into(),
        };
        store
            .provision_tenant_key(&op, &TenantId::parse("acme").unwrap())
            .await
            .unwrap();
        store.provision_system_key(&op).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = TlsFiles::in_dir(pki.path(), ServiceName::CredentialStore)
            .load()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            server::serve(listener, &tls, store, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        (format!("https://{addr}"), pki, stop)
    }

    async fn run(url: &str, pki: &Path, owner: Owner<'_>) -> anyhow::Result<String> {
        let mut out = Vec::new();
        rotate(url, pki, owner, &mut out).await?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn rotates_a_tenants_and_the_system_key_and_says_which_version() {
        let (url, pki, _stop) = credstore().await;
        let acme = Owner::Tenant("acme");
        assert_eq!(
            run(&url, pki.path(), acme).await.unwrap(),
            "rotated the key of tenants/acme: new writes are sealed with key version 2; \
             older values are being re-encrypted in the background\n"
        );
        assert!(
            run(&url, pki.path(), acme)
                .await
                .unwrap()
                .contains("key version 3;")
        );
        assert!(
            run(&url, pki.path(), Owner::System)
                .await
                .unwrap()
                .starts_with(
                    "rotated the key of system: new writes are sealed with key version 2;"
                )
        );
        let err = run(&url, pki.path(), Owner::Tenant("gamma"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tenants/gamma has no key: the tenant does not exist or its key was shredded"
        );
        let err = run(&url, pki.path(), Owner::Tenant("../acme"))
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("tenant id \"../acme\""),
            "{err:#}"
        );
    }
}
