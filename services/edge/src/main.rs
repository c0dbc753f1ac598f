//! `locksmith-edge`: the HTTP edge process.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use locksmith_edge::{AppState, Backends, EdgeConfig};

/// mimalloc: per-thread heaps, far cheaper than glibc malloc for a
/// server that allocates per request from every worker thread.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Locksmith HTTP edge.
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
    let telemetry = locksmith_telemetry::init_from_env("locksmith-edge")?;
    let config: EdgeConfig = locksmith_config::load(args.config.as_deref(), std::env::vars())?;
    let tls = config
        .tls
        .load_for_service(
            locksmith_tls::ServiceName::Edge,
            time::OffsetDateTime::now_utc(),
        )
        .context("loading TLS material")?;
    let backends = Backends::connect(&config.services, &tls)?;
    let state = AppState::new(backends, &config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, "edge serving");
    locksmith_edge::serve(
        listener,
        state,
        &config,
        locksmith_telemetry::shutdown_signal(),
    )
    .await?;
    tracing::info!("edge stopped");
    telemetry.shutdown();
    Ok(())
}
