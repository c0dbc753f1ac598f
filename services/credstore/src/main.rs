//! `locksmith-credstore`: the credential store process.

use std::{fs::OpenOptions, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use locksmith_credstore::{CredStore, CredStoreConfig, JsonLinesAudit, server, wrapper::Wrapper};
use locksmith_store::{DocumentStore, EmbeddedStore, OpenBaoStore, StorageChoice, system_clock};

/// mimalloc: per-thread heaps, far cheaper than glibc malloc for a
/// server that allocates per request from every worker thread.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            let wrapper =
                Wrapper::from_config(&config.keys, None).context("setting up key wrapping")?;
            run(store, wrapper, &config, &tls).await?;
        }
        StorageChoice::OpenBao(bao) => {
            let store = OpenBaoStore::new(bao).context("configuring the OpenBao store")?;
            // Transit shares the store's client: one login, one renewal.
            let wrapper = Wrapper::from_config(&config.keys, Some(store.client()))
                .context("setting up key wrapping")?;
            run(store, wrapper, &config, &tls).await?;
        }
    }
    tracing::info!("credential store stopped");
    telemetry.shutdown();
    Ok(())
}

/// Serves the credential store over `store`, keys wrapped by `wrapper`,
/// until a shutdown signal.
async fn run<S: DocumentStore>(
    store: S,
    wrapper: Wrapper,
    config: &CredStoreConfig,
    tls: &locksmith_tls::TlsMaterial,
) -> anyhow::Result<()> {
    let clock = system_clock();
    // Appending keeps the trail of earlier runs; events are whole lines.
    let audit_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.audit.path)
        .with_context(|| format!("opening {}", config.audit.path.display()))?;
    // Written from a background thread; closed below so that no event of
    // a drained call is lost on SIGTERM.
    let audit = Arc::new(JsonLinesAudit::start(audit_file).context("starting the audit writer")?);
    let credstore = Arc::new(
        CredStore::new(store, wrapper, audit.clone(), clock)
            .with_resolve_cache(config.cache.config()),
    );
    match credstore.ensure_system_key().await {
        Ok(true) => tracing::info!("provisioned the system scope's key"),
        Ok(false) => {}
        // Serving anyway: tenants' secrets do not need it, and the next start retries.
        Err(e) => tracing::warn!(error = %e, "cannot provision the system scope's key"),
    }
    // Re-encryption interrupted by the last stop (or a crash) goes on.
    match credstore.resume_reencryption().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(sweeps = n, "resuming re-encryption after key rotation"),
        Err(e) => tracing::warn!(error = %e, "cannot look for pending re-encryption"),
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, "credential store serving");
    let served = server::serve(
        listener,
        tls,
        Arc::clone(&credstore),
        locksmith_telemetry::shutdown_signal(),
    )
    .await;
    // Calls are drained; sweeps save their progress; then every audit
    // event still queued is written before the process exits.
    credstore.stop_reencryption().await;
    audit.close().await;
    served?;
    Ok(())
}
