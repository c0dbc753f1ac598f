//! `make bench`, token proxy part: the typed callers' path. A gRPC client
//! of our own (a tenant workload's certificate from the suite's PKI) calls
//! the running proxy's unary `Call` directly, with closed-loop callers (each
//! sends its next call when the last one answered) for a fixed time after a
//! warm-up, and prints `requests/s p50_ms p99_ms`. `tests/bench/proxy.sh`
//! runs it next to wrk against the edge and against nginx.
//!
//! Every answer is checked (status 200 from the API); a failed call aborts
//! the run.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use clap::Parser;
use locksmith_proto::proxy::v1::{self as pb, token_proxy_service_client::TokenProxyServiceClient};
use locksmith_tls::TlsFiles;
use tonic::transport::{Channel, Endpoint};

/// Token proxy load driver (unary gRPC Call over mTLS).
#[derive(Parser)]
struct Args {
    /// The proxy, `https://127.0.0.1:PORT`.
    #[arg(long)]
    proxy: String,
    /// The suite's PKI directory (its CA issues the workload certificate).
    #[arg(long)]
    pki: PathBuf,
    /// The workload's tenant.
    #[arg(long)]
    tenant: String,
    /// The connection's resource name.
    #[arg(long)]
    connection: String,
    /// The path under the API.
    #[arg(long, default_value = "/ok")]
    path: String,
    /// Concurrent callers.
    #[arg(long, default_value_t = 50)]
    callers: usize,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 2)]
    channels: usize,
    /// Measured seconds (after as many seconds' warm-up, at most 2).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    locksmith_tls::install_crypto_provider();
    locksmith_tls::issue_workload(
        &args.pki,
        &args.tenant,
        "bench",
        time::OffsetDateTime::now_utc(),
    )
    .context("issuing the workload certificate")?;
    let tls = TlsFiles::for_workload(&args.pki, &args.tenant, "bench")?.load()?;
    let mut clients = Vec::new();
    for _ in 0..args.channels.max(1) {
        let channel: Channel = Endpoint::from_shared(args.proxy.clone())?
            .tls_config(tls.client_tls("localhost"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .context("connecting to the proxy")?;
        clients.push(TokenProxyServiceClient::new(channel));
    }
    let request = pb::CallRequest {
        head: Some(pb::RequestHead {
            connection: args.connection.clone(),
            method: "GET".into(),
            path: args.path.clone(),
            headers: Vec::new(),
        }),
        body: Default::default(),
    };
    let warm = Duration::from_secs(args.seconds.min(2));
    drive(&clients, &request, args.callers, warm).await?;
    let (count, mut latencies) = drive(
        &clients,
        &request,
        args.callers,
        Duration::from_secs(args.seconds),
    )
    .await?;
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
    };
    let rps = count as f64 / args.seconds as f64;
    println!("{rps:.0} {:.2} {:.2}", pick(0.50), pick(0.99));
    Ok(())
}

/// Runs `callers` closed-loop callers for `window`; answers the calls made
/// and each one's latency.
async fn drive(
    clients: &[TokenProxyServiceClient<Channel>],
    request: &pb::CallRequest,
    callers: usize,
    window: Duration,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let until = Instant::now() + window;
    let request = Arc::new(request.clone());
    let mut tasks = Vec::new();
    for i in 0..callers {
        let mut client = clients[i % clients.len()].clone();
        let request = Arc::clone(&request);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let start = Instant::now();
                let answer = client.call((*request).clone()).await?.into_inner();
                latencies.push(start.elapsed());
                let status = answer.head.map(|h| h.status).unwrap_or_default();
                ensure!(status == 200, "the API answered {status}");
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all.len(), all))
}
