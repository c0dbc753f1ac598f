//! `locksmith-credstore`: the credential store process.

use std::{fs::OpenOptions, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use locksmith_credstore::{
    CredStore, CredStoreConfig, JsonLinesAudit, config::StorageChoice, server,
};
use locksmith_crypto::MasterKeyWrapper;
use locksmith_store::{DocumentStore, EmbeddedStore, OpenBaoStore, system_clock};

/// The Locksmith credential store (gRPC over mTLS).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Config file; `LOCKSMITH_*` variables override its keys.
    #[arg(long, env = "LOCKSMITH_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    locksmith_tls::install_crypto_provider();
    let telemetry = locksmith_telemetry::init_from_env("locksmith-credstore")?;
    let config: CredStoreConfig = locksmith_config::load(args.config.as_deref(), std::env::vars())?;
    let tls = config
        .tls
        .load_for_service(
            locksmith_tls::ServiceName::CredentialStore,
            time::OffsetDateTime::now_utc(),
        )
        .context("loading TLS material")?;
    let clock = system_clock();
    match config.storage.choice()? {
        StorageChoice::Embedded(path) => {
            let store = EmbeddedStore::open(path, clock.clone())
                .with_context(|| format!("opening {}", path.display()))?;
            run(store, &config, &tls).await?;
        }
        StorageChoice::OpenBao(bao) => {
            let store = OpenBaoStore::new(bao).context("configuring the OpenBao store")?;
            run(store, &config, &tls).await?;
        }
    }
    tracing::info!("credential store stopped");
    telemetry.shutdown();
    Ok(())
}

/// Serves the credential store over `store` until a shutdown signal.
async fn run<S: DocumentStore>(
    store: S,
    config: &CredStoreConfig,
    tls: &locksmith_tls::TlsMaterial,
) -> anyhow::Result<()> {
    let clock = system_clock();
    let wrapper = MasterKeyWrapper::load_or_create(&config.keys.master_key_file)
        .context("loading the master key")?;
    // Appending keeps the trail of earlier runs; events are whole lines.
    let audit_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.audit.path)
        .with_context(|| format!("opening {}", config.audit.path.display()))?;
    let credstore = Arc::new(CredStore::new(
        store,
        wrapper,
        Arc::new(JsonLinesAudit::new(audit_file)),
        clock,
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, "credential store serving");
    server::serve(
        listener,
        tls,
        credstore,
        locksmith_telemetry::shutdown_signal(),
    )
    .await?;
    Ok(())
}
