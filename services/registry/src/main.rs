//! `locksmith-registry`: the tenant registry process.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use locksmith_registry::{
    Registry, RegistryConfig, SqliteStore, api_keys::secret::KeyHasher, server, system_clock,
};

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
    let store = SqliteStore::open(&config.storage.path)
        .with_context(|| format!("opening {}", config.storage.path.display()))?;
    let registry = Arc::new(Registry::new(store, system_clock()));
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
        &tls,
        registry,
        hasher,
        locksmith_telemetry::shutdown_signal(),
    )
    .await?;
    tracing::info!("registry stopped");
    telemetry.shutdown();
    Ok(())
}
