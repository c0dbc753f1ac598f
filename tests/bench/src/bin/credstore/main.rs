//! `make bench`, credential store part (`tests/bench/credstore.sh` runs it
//! against a `bao server -dev` it starts).
//!
//! Serves two credential stores in this process over mTLS gRPC
//! (`locksmith_credstore::server::serve`, a fresh dev PKI), both over the
//! same OpenBao KV v2 prefix and master key file, auditing to one
//! [`JsonLinesAudit`] file as the real binary does:
//! - **warm**: the resolve cache as the binary configures it by default
//!   ([`CacheSection::default`]);
//! - **cold**: the cache disabled ([`CacheConfig::DISABLED`]): every resolve
//!   is one KV v2 read plus a local decryption.
//!
//! The servers run on a Tokio runtime of their own (as in their own
//! process), the callers on another.
//!
//! Then it measures, with closed-loop callers (each sends its next call when
//! the last one answered), a warm-up before every measured window, and
//! latencies taken from every sample, sorted:
//! - `ResolveSecret` on the warm store at several caller counts;
//! - a cold `ResolveSecret` next to a bare `GET /v1/<mount>/data/<path>` of
//!   the very document that resolve reads (reqwest, keep-alive, the token),
//!   sequentially and at `--cold-callers`, with two in-process rows between
//!   them (`OpenBaoStore::read`, then `CredStore::resolve` without gRPC)
//!   that show where the difference goes; the four alternate in rounds so
//!   drift hits them alike.
//!
//! Every answer is checked; any failed call aborts the run. The figures go
//! to `--out` (Markdown) and stdout. Nothing here asserts on time: targets
//! are reported as met or not.
//!
//! [`setup`] starts the servers and writes the secret, [`measure`] drives the
//! calls and summarises their latencies, [`report`] renders the results.

mod measure;
mod report;
mod setup;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, ensure};
use clap::Parser;
use locksmith_credstore::{CacheConfig, JsonLinesAudit, config::CacheSection};
use locksmith_domain::secrets::SecretRef;
use locksmith_store::OpenBaoConfig;
use locksmith_tls::{ServiceName, TlsFiles};
use secrecy::SecretString;
use time::OffsetDateTime;
use tokio::runtime::Handle;

use crate::{
    measure::{ColdKind, Row, Samples, drive},
    report::Report,
    setup::{RESOURCE, Served},
};

/// Credential store resolve benchmark (warm cache; cold against OpenBao
/// beside a bare KV v2 read).
#[derive(Parser)]
struct Args {
    /// OpenBao's address, `http://127.0.0.1:PORT`.
    #[arg(long, env = "BAO_ADDR")]
    bao_addr: String,
    /// A token that may write and read the KV v2 mount (the dev root token).
    #[arg(long, env = "BAO_TOKEN", hide_env_values = true)]
    bao_token: String,
    /// The KV v2 mount.
    #[arg(long, default_value = "gbo")]
    mount: String,
    /// Measured seconds per figure (split over `--rounds` for cold/bare).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Unmeasured seconds before every measured window.
    #[arg(long, default_value_t = 1.0)]
    warmup_seconds: f64,
    /// Caller counts for the warm resolve.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    warm_callers: Vec<usize>,
    /// Concurrent callers for the cold-vs-bare comparison (besides 1).
    #[arg(long, default_value_t = 16)]
    cold_callers: usize,
    /// Most HTTP/2 connections the gRPC callers of one figure share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Alternations of bare read and cold resolve per caller count.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Where to write the Markdown results.
    #[arg(long)]
    out: Option<PathBuf>,
    /// `label: value` lines for the results header (versions, commit).
    #[arg(long)]
    about: Vec<String>,
    /// Worker threads of the callers' runtime (the servers' has one per core).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.rounds > 0 && args.connections > 0 && args.cold_callers > 0);
    ensure!(args.client_threads > 0);
    // The servers get a runtime of their own, as in their own process (one
    // worker per core, the binary's default); the callers another.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .thread_name("credstore")
        .enable_all()
        .build()?;
    let callers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .thread_name("caller")
        .enable_all()
        .build()?;
    callers.block_on(run(args, servers.handle().clone()))
}

/// Sets up, measures, reports; see the crate docs.
async fn run(args: Args, servers: Handle) -> anyhow::Result<()> {
    locksmith_tls::install_crypto_provider();
    // As the credential store process: the fmt and OpenTelemetry layers,
    // filtered by LOCKSMITH_LOG (the script sets `warn`, as edge.sh does).
    let telemetry = locksmith_telemetry::init_from_env("locksmith-bench")?;
    let load_before = report::load_average();
    let started = OffsetDateTime::now_utc();

    let work = tempfile::tempdir()?;
    let pki = work.path().join("pki");
    locksmith_tls::init_dir(&pki, OffsetDateTime::now_utc(), false).context("dev PKI")?;
    let prefix = format!("bench-{}", started.unix_timestamp_nanos());
    let mut bao = OpenBaoConfig::new(
        args.bao_addr.clone(),
        SecretString::from(args.bao_token.clone()),
    );
    bao.mount = args.mount.clone();
    bao.prefix = Some(prefix.clone());
    let audit_path = work.path().join("audit.jsonl");
    let audit = Arc::new(JsonLinesAudit::start(std::fs::File::create(&audit_path)?)?);

    // The one line that tells the two apart: the resolve cache.
    let warm_cache = CacheSection::default();
    let warm = Served::start(&servers, &bao, &pki, &audit, warm_cache.config()).await?;
    let cold = Served::start(&servers, &bao, &pki, &audit, CacheConfig::DISABLED).await?;

    // The secret, written once and read back through both servers and raw
    // from OpenBao, so every figure below measures a checked answer.
    let fields = setup::payload();
    setup::seed(&warm, &pki, &fields).await?;
    let proxy = TlsFiles::in_dir(&pki, ServiceName::Proxy).load()?;
    let answer_bytes = setup::check_resolve(&setup::connect(warm.addr, &proxy).await?, &fields)
        .await
        .context("resolving through the warm server")?;
    setup::check_resolve(&setup::connect(cold.addr, &proxy).await?, &fields)
        .await
        .context("resolving through the cold server")?;
    let storage_path = SecretRef::parse(RESOURCE)?.storage_path();
    let kv_url = format!(
        "{}/v1/{}/data/{prefix}/{storage_path}",
        args.bao_addr.trim_end_matches('/'),
        args.mount
    );
    let bare = setup::Bare {
        http: reqwest::Client::new(),
        url: kv_url,
        token: args.bao_token.clone(),
    };
    let kv_bytes = bare.check(&fields).await?;

    let warmup = Duration::from_secs_f64(args.warmup_seconds);
    let window = Duration::from_secs_f64(args.seconds);
    let mut warm_rows = Vec::new();
    for &callers in &args.warm_callers {
        let clients = setup::clients(warm.addr, &proxy, callers.min(args.connections)).await?;
        let op = measure::resolve_op(Arc::clone(&clients));
        let samples = drive(callers, warmup, window, op).await?;
        let row = Row::new("warm resolve", callers, clients.len(), samples);
        eprintln!("{}", row.line());
        warm_rows.push(row);
    }

    // Each caller count measures the four kinds in alternating rounds, so a
    // slow spell on the shared machine falls on all of them, not on one.
    let mut cold_rows = Vec::new();
    let round = window.div_f64(args.rounds as f64);
    for callers in [1, args.cold_callers] {
        let clients = setup::clients(cold.addr, &proxy, callers.min(args.connections)).await?;
        let mut per_kind: [Samples; 4] = Default::default();
        for _ in 0..args.rounds {
            for (kind, samples) in ColdKind::ALL.iter().zip(&mut per_kind) {
                let taken = match kind {
                    ColdKind::Bare => {
                        drive(callers, warmup, round, measure::bare_op(&bare)).await?
                    }
                    // The in-process rows run where the server's handlers
                    // run: on the servers' runtime.
                    ColdKind::StoreRead => {
                        let op = measure::store_op(&cold.credstore)?;
                        servers.spawn(drive(callers, warmup, round, op)).await??
                    }
                    ColdKind::InProcess => {
                        let op = measure::in_process_op(&cold.credstore)?;
                        servers.spawn(drive(callers, warmup, round, op)).await??
                    }
                    ColdKind::Grpc => {
                        let op = measure::resolve_op(Arc::clone(&clients));
                        drive(callers, warmup, round, op).await?
                    }
                };
                samples.add(taken);
            }
        }
        for (kind, samples) in ColdKind::ALL.into_iter().zip(per_kind) {
            let conns = kind.connections(callers, clients.len());
            let row = Row::new(kind.label(), callers, conns, samples);
            eprintln!("{}", row.line());
            cold_rows.push(row);
        }
    }

    warm.stop().await?;
    cold.stop().await?;
    audit.close().await;
    let audited = report::count_lines(&audit_path)?;
    let rendered = Report {
        args: &args,
        started,
        load_before,
        load_after: report::load_average(),
        warm_cache,
        plain_bytes: fields.iter().map(|(k, v)| k.len() + v.len()).sum(),
        answer_bytes,
        kv_bytes,
        warm: warm_rows,
        cold: cold_rows,
        audited,
    }
    .render();
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &rendered).with_context(|| format!("writing {}", out.display()))?;
    }
    print!("{rendered}");
    telemetry.shutdown();
    Ok(())
}
