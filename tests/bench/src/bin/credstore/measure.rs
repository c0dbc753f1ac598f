//! The calls measured, the closed loops that drive them, and the summary of
//! one figure's latencies.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use locksmith_auth::Principal;
use locksmith_domain::secrets::SecretRef;
use locksmith_proto::credstore::v1 as pb;
use locksmith_store::{DocumentStore, Key};
use locksmith_tls::ServiceName;

use crate::setup::{Bare, Client, RESOURCE, Store};

/// One call, made by caller number `usize`.
pub type Op = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// The four rows of the cold comparison, in the order they run and print:
/// from the bare read, through the store's own read and the whole resolve in
/// process, to the resolve over gRPC, so each row adds one layer.
#[derive(Clone, Copy)]
pub enum ColdKind {
    Bare,
    StoreRead,
    InProcess,
    Grpc,
}

impl ColdKind {
    pub const ALL: [Self; 4] = [Self::Bare, Self::StoreRead, Self::InProcess, Self::Grpc];

    pub fn label(self) -> &'static str {
        match self {
            Self::Bare => "bare KV v2 read",
            Self::StoreRead => "`OpenBaoStore::read`, in process",
            Self::InProcess => "cold `CredStore::resolve`, in process",
            Self::Grpc => "cold resolve over gRPC",
        }
    }

    /// The `conns` column: the bare read's pool keeps one connection per
    /// concurrent caller, the gRPC callers share `grpc`, and the in-process
    /// rows have none of their own (0 prints as –).
    pub fn connections(self, callers: usize, grpc: usize) -> usize {
        match self {
            Self::Bare => callers,
            Self::StoreRead | Self::InProcess => 0,
            Self::Grpc => grpc,
        }
    }
}

/// `ResolveSecret` as the proxy, caller `i` on connection `i mod n`.
pub fn resolve_op(clients: Arc<Vec<Client>>) -> impl Fn(usize) -> Op + Send + Sync + 'static {
    move |caller| {
        let mut client = clients[caller % clients.len()].clone();
        Box::pin(async move {
            let answer = client
                .resolve_secret(pb::ResolveSecretRequest {
                    name: RESOURCE.into(),
                })
                .await?
                .into_inner();
            ensure!(
                answer.secret.is_some_and(|s| s.fields.len() == 3),
                "bad answer"
            );
            Ok(())
        })
    }
}

/// The cold store's own read of the document, without decryption.
pub fn store_op(
    credstore: &Arc<Store>,
) -> anyhow::Result<impl Fn(usize) -> Op + Send + Sync + 'static> {
    let key = Arc::new(Key::parse(&SecretRef::parse(RESOURCE)?.storage_path())?);
    let credstore = Arc::clone(credstore);
    Ok(move |_| {
        let (credstore, key) = (Arc::clone(&credstore), Arc::clone(&key));
        Box::pin(async move {
            credstore.store().read(&key, None).await?;
            Ok(())
        }) as Op
    })
}

/// The whole uncached resolve as the proxy, without gRPC.
pub fn in_process_op(
    credstore: &Arc<Store>,
) -> anyhow::Result<impl Fn(usize) -> Op + Send + Sync + 'static> {
    let secret = Arc::new(SecretRef::parse(RESOURCE)?);
    let proxy = Arc::new(Principal::Service {
        service: ServiceName::Proxy,
    });
    let credstore = Arc::clone(credstore);
    Ok(move |_| {
        let (credstore, secret, proxy) = (
            Arc::clone(&credstore),
            Arc::clone(&secret),
            Arc::clone(&proxy),
        );
        Box::pin(async move {
            let found = credstore.resolve(&proxy, &secret).await?;
            ensure!(found.fields.len() == 3, "bad answer");
            Ok(())
        }) as Op
    })
}

/// The bare read, body read in full.
pub fn bare_op(bare: &Bare) -> impl Fn(usize) -> Op + Send + Sync + 'static {
    let (http, url, token) = (bare.http.clone(), bare.url.clone(), bare.token.clone());
    move |_| {
        let request = http.get(&url).header("X-Vault-Token", &token);
        Box::pin(async move {
            let response = request.send().await?;
            ensure!(response.status().is_success(), "{}", response.status());
            response.bytes().await?;
            Ok(())
        })
    }
}

/// Every measured latency (nanoseconds) and the time they were taken over.
#[derive(Default)]
pub struct Samples {
    nanos: Vec<u64>,
    window: Duration,
}

impl Samples {
    /// Pools another round's samples with these.
    pub fn add(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
        self.window += other.window;
    }
}

/// Runs `callers` closed loops of `op` for `warmup` (discarded), then for
/// `window`, keeping the latency of every call started inside the window.
/// Spawns the loops on the runtime it runs on.
pub async fn drive<F, Fut>(
    callers: usize,
    warmup: Duration,
    window: Duration,
    op: F,
) -> anyhow::Result<Samples>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let from = Instant::now() + warmup;
    let until = from + window;
    let mut tasks = Vec::with_capacity(callers);
    for caller in 0..callers {
        let op = Arc::clone(&op);
        tasks.push(tokio::spawn(async move {
            let mut nanos = Vec::with_capacity(1 << 16);
            loop {
                let began = Instant::now();
                if began >= until {
                    break;
                }
                op(caller).await?;
                if began >= from {
                    nanos.push(u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
            }
            anyhow::Ok(nanos)
        }));
    }
    let mut nanos = Vec::new();
    for task in tasks {
        nanos.extend(task.await.context("a caller stopped")??);
    }
    Ok(Samples { nanos, window })
}

/// One line of a results table.
pub struct Row {
    pub what: &'static str,
    pub callers: usize,
    /// Connections the callers shared; 0 for none of their own.
    pub connections: usize,
    pub calls: usize,
    pub per_sec: f64,
    /// p50, p90, p99, max in microseconds.
    pub micros: [f64; 4],
}

impl Row {
    pub fn new(what: &'static str, callers: usize, connections: usize, mut s: Samples) -> Self {
        s.nanos.sort_unstable();
        let n = s.nanos.len();
        // Nearest rank: the smallest sample with at least q of all at or below it.
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
            s.nanos.get(rank - 1).copied().unwrap_or(0) as f64 / 1000.0
        };
        Self {
            what,
            callers,
            connections,
            calls: n,
            per_sec: n as f64 / s.window.as_secs_f64().max(f64::MIN_POSITIVE),
            micros: [at(0.50), at(0.90), at(0.99), at(1.0)],
        }
    }

    pub fn p50(&self) -> f64 {
        self.micros[0]
    }

    /// The row in the results' Markdown table ([`crate::report::HEADER`]).
    pub fn line(&self) -> String {
        let [p50, p90, p99, max] = self.micros;
        let conns = match self.connections {
            0 => "–".to_owned(),
            n => n.to_string(),
        };
        format!(
            "| {} | {} | {conns} | {:.0} | {p50:.0} | {p90:.0} | {p99:.0} | {max:.0} | {} |",
            self.what, self.callers, self.per_sec, self.calls
        )
    }
}
