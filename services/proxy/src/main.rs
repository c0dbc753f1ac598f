//! `locksmith-proxy`: the token proxy process.

use std::{fs::OpenOptions, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use locksmith_audit::JsonLinesAudit;
use locksmith_egress::EgressClient;
use locksmith_proxy::{
    access::{AccessCache, BrokerSource},
    changes,
    config::ProxyConfig,
    forward::Forwarder,
    grpc::ProxyApi,
    limits::{RegistrySource, TenantLimits},
    server,
};

/// mimalloc: per-thread heaps, far cheaper than glibc malloc for a
/// server that allocates per request from every worker thread.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Locksmith token proxy (gRPC over mTLS).
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
    let telemetry = locksmith_telemetry::init_from_env("locksmith-proxy")?;
    let config: ProxyConfig = locksmith_config::load(args.config.as_deref(), std::env::vars())?;
    config.check().map_err(anyhow::Error::msg)?;
    let tls = config
        .tls
        .load_for_service(
            locksmith_tls::ServiceName::Proxy,
            time::OffsetDateTime::now_utc(),
        )
        .context("loading TLS material")?;
    let egress =
        EgressClient::new(config.egress.clone()).context("configuring the egress guard")?;
    let broker = BrokerSource::connect_lazy(
        &config.services.broker.url,
        &config.services.broker.server_name,
        &tls,
    )
    .map_err(anyhow::Error::msg)?;
    let registry = RegistrySource::connect_lazy(
        &config.services.registry.url,
        &config.services.registry.server_name,
        &tls,
    )
    .map_err(anyhow::Error::msg)?;
    let audit_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.audit.path)
        .with_context(|| format!("opening {}", config.audit.path.display()))?;
    let audit = Arc::new(JsonLinesAudit::start(audit_file).context("starting the audit writer")?);
    let upstream = config.upstream();
    let cache = AccessCache::new(Arc::new(broker.clone()), config.cache());
    let _changes = changes::follow(broker.client(), cache.invalidator());
    let forwarder = Forwarder::new(
        egress,
        cache,
        TenantLimits::new(Arc::new(registry), config.limits()),
        upstream,
    );
    let api = ProxyApi::new(
        Arc::new(forwarder),
        audit.clone(),
        Arc::new(time::OffsetDateTime::now_utc),
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, "proxy serving");
    // A unary call's body plus its head and headers.
    let max_message = usize::try_from(upstream.max_unary_bytes)?.saturating_add(256 * 1024);
    server::serve(
        listener,
        &tls,
        api,
        max_message,
        locksmith_telemetry::shutdown_signal(),
    )
    .await?;
    // Calls are drained; every audit event is written before exit.
    audit.close().await;
    tracing::info!("proxy stopped");
    telemetry.shutdown();
    Ok(())
}
