//! `locksmith-registry`: the tenant registry process.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use locksmith_registry::{
    CredStoreKeys, Registry, RegistryConfig, api_keys::secret::KeyHasher, server, system_clock,
};
use locksmith_store::{DocumentStore, EmbeddedStore, OpenBaoStore, StorageChoice};

/// mimalloc: per-thread heaps, far cheaper than glibc malloc for a
/// server that allocates per request from every worker thread.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Locksmith tenant registry (gRPC over mTLS).
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
    let telemetry = locksmith_telemetry::init_from_env("locksmith-registry")?;
    let config: RegistryConfig = locksmith_config::load(args.config.as_deref(), std::env::vars())?;
    let tls = config
        .tls
        .load_for_service(
            locksmith_tls::ServiceName::Registry,
            time::OffsetDateTime::now_utc(),
        )
        .context("loading TLS material")?;
    match config.storage.choice()? {
        StorageChoice::Embedded(path) => {
            let store = EmbeddedStore::open(path, locksmith_store::system_clock())
                .with_context(|| format!("opening {}", path.display()))?;
            run(store, &config, &tls).await?;
        }
        StorageChoice::OpenBao(bao) => {
            let store = OpenBaoStore::new(bao).context("configuring the OpenBao store")?;
            run(store, &config, &tls).await?;
        }
    }
    tracing::info!("registry stopped");
    telemetry.shutdown();
    Ok(())
}

/// Serves the registry over `store` until a shutdown signal.
async fn run<S: DocumentStore>(
    store: S,
    config: &RegistryConfig,
    tls: &locksmith_tls::TlsMaterial,
) -> anyhow::Result<()> {
    let mut keys = CredStoreKeys::connect(&config.services.credstore, tls)
        .context("configuring the credential store client")?;
    match &config.services.broker {
        Some(broker) => {
            keys = keys
                .with_broker(broker, tls)
                .context("configuring the broker client")?;
        }
        None => {
            tracing::warn!("no [services.broker]: deleted tenants' custom providers are not erased")
        }
    }
    let registry = Arc::new(Registry::new(store, Arc::new(keys), system_clock()));
    tokio::spawn(resume_deletions(Arc::clone(&registry)));
    let hasher = Arc::new(
        KeyHasher::load_or_create(&config.api_keys.pepper_file)
            .context("loading the API key pepper")?,
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, "registry serving");
    server::serve(
        listener,
        tls,
        registry,
        hasher,
        locksmith_telemetry::shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// How long to wait before retrying interrupted deletes that could not finish.
const RESUME_RETRY: Duration = Duration::from_secs(30);

/// Finishes tenant deletes a crash or an outage interrupted, retrying until
/// the credential store and the storage let every one of them finish.
async fn resume_deletions<S: DocumentStore>(registry: Arc<Registry<S>>) {
    loop {
        match registry.resume_deletions().await {
            Ok(0) => return,
            Ok(finished) => {
                tracing::info!(finished, "interrupted tenant deletes finished");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "interrupted tenant deletes not finished yet; retrying");
                tokio::time::sleep(RESUME_RETRY).await;
            }
        }
    }
}
