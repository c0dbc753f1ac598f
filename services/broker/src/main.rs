//! `locksmith-broker`: the OAuth broker process.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use locksmith_broker::{
    catalog::Catalog,
    config::BrokerConfig,
    credstore::CredstoreClient,
    flows::{Broker, SuiteEndpoints},
    refresh::{RefreshConfig, Refresher},
    registry::RegistryClient,
    server,
    state::PendingStore,
};
use locksmith_egress::EgressClient;
use locksmith_store::{DocumentStore, EmbeddedStore, OpenBaoStore, StorageChoice, system_clock};

/// mimalloc: per-thread heaps, far cheaper than glibc malloc for a
/// server that allocates per request from every worker thread.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The suite's own endpoints no custom provider may point at: the
/// credential store, the OpenBao this broker stores in, and any the
/// configuration adds.
fn suite_endpoints(config: &BrokerConfig) -> anyhow::Result<SuiteEndpoints> {
    let mut suite = SuiteEndpoints::new()
        .with("the credential store", &config.services.credstore.url)
        .map_err(anyhow::Error::msg)?
        .with("the registry", &config.services.registry.url)
        .map_err(anyhow::Error::msg)?;
    if let StorageChoice::OpenBao(bao) = config.storage.choice()? {
        suite = suite
            .with("the suite's OpenBao", &bao.address)
            .map_err(anyhow::Error::msg)?;
    }
    for (i, url) in config.suite_endpoints.iter().enumerate() {
        suite = suite
            .with(format!("a suite endpoint (suite_endpoints[{i}])"), url)
            .map_err(|e| anyhow::anyhow!("suite_endpoints[{i}]: {e}"))?;
    }
    Ok(suite)
}

/// The Locksmith OAuth broker (gRPC over mTLS).
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
    let telemetry = locksmith_telemetry::init_from_env("locksmith-broker")?;
    let config: BrokerConfig = locksmith_config::load(args.config.as_deref(), std::env::vars())?;
    match config.storage.choice()? {
        StorageChoice::Embedded(path) => {
            let store = EmbeddedStore::open(path, system_clock())
                .with_context(|| format!("opening {}", path.display()))?;
            run(store, &config).await?;
        }
        StorageChoice::OpenBao(bao) => {
            let store = OpenBaoStore::new(bao).context("configuring the OpenBao store")?;
            run(store, &config).await?;
        }
    }
    tracing::info!("broker stopped");
    telemetry.shutdown();
    Ok(())
}

/// Serves the broker with pending authorizations in `store` until a
/// shutdown signal.
async fn run<S: DocumentStore>(store: S, config: &BrokerConfig) -> anyhow::Result<()> {
    let (public_url, return_urls) = config.check()?;
    let tls = config
        .tls
        .load_for_service(
            locksmith_tls::ServiceName::Broker,
            time::OffsetDateTime::now_utc(),
        )
        .context("loading TLS material")?;
    // A malformed entry stops the start, naming the entry and the field.
    let catalog = Arc::new(
        Catalog::load(&config.catalog.path)
            .with_context(|| format!("loading the catalog {}", config.catalog.path.display()))?,
    );
    tracing::info!(providers = catalog.len(), "catalog loaded");
    let egress =
        EgressClient::new(config.egress.clone()).context("configuring the egress guard")?;
    let credstore = CredstoreClient::connect_lazy(
        &config.services.credstore.url,
        &config.services.credstore.server_name,
        &tls,
    )
    .context("configuring the credential store client")?;
    let registry = RegistryClient::connect_lazy(
        &config.services.registry.url,
        &config.services.registry.server_name,
        &tls,
    )
    .context("configuring the registry client")?;
    let refresher = Refresher::new(
        credstore.clone(),
        egress.clone(),
        catalog.clone(),
        RefreshConfig {
            skew: time::Duration::seconds(i64::try_from(config.refresh.skew_seconds)?),
            lease_ttl: config.refresh.lease_ttl(),
            ..RefreshConfig::default()
        },
    )
    .context("configuring the refresh protocol")?;
    let broker = Arc::new(
        Broker::new(
            catalog,
            PendingStore::new(store),
            credstore,
            egress,
            refresher,
            public_url,
            return_urls,
        )
        .protect(suite_endpoints(config)?)
        .with_registry(registry),
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, "broker serving");
    server::serve(
        listener,
        &tls,
        broker,
        system_clock(),
        locksmith_telemetry::shutdown_signal(),
    )
    .await?;
    Ok(())
}
