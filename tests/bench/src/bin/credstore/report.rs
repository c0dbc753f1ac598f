//! The results file: the tables, the targets met or not, and how the
//! figures were taken, in Markdown.

use std::{fmt::Write as _, fs::File, path::Path};

use locksmith_credstore::config::CacheSection;
use locksmith_domain::secrets::SecretRef;
use time::{OffsetDateTime, macros::format_description};

use crate::{
    Args,
    measure::{ColdKind, Row},
    setup::RESOURCE,
};

/// Everything the results file says.
pub struct Report<'a> {
    pub args: &'a Args,
    pub started: OffsetDateTime,
    pub load_before: String,
    pub load_after: String,
    pub warm_cache: CacheSection,
    pub plain_bytes: usize,
    pub answer_bytes: usize,
    pub kv_bytes: usize,
    pub warm: Vec<Row>,
    pub cold: Vec<Row>,
    pub audited: usize,
}

impl Report<'_> {
    /// The results as Markdown.
    pub fn render(&self) -> String {
        let a = self.args;
        let date = self
            .started
            .format(format_description!("[year]-[month]-[day]T[hour]:[minute]Z"))
            .unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let mut md = String::new();
        let _ = writeln!(md, "# Credential store benchmark\n");
        let _ = writeln!(
            md,
            "{date}, {cores} cores ({}), Linux {}. Load average (1, 5, 15 min) before: {}; after: {}.",
            cpu_model(),
            kernel(),
            self.load_before,
            self.load_after
        );
        for line in &a.about {
            let _ = writeln!(md, "{line}  ");
        }
        let _ = writeln!(
            md,
            "\nRelease build. OpenBao (`bao server -dev`, in-memory storage), the credential store servers and \
             the callers share the machine's cores: servers and callers are one process with two Tokio runtimes, \
             the servers' ({cores} workers, as the binary) and the callers' ({} worker(s)). \
             Compare figures only within one run. Latencies in µs.\n",
            a.client_threads
        );

        let _ = writeln!(md, "## Resolve over mTLS gRPC, warm cache\n");
        let _ = writeln!(md, "{HEADER}");
        for row in &self.warm {
            let _ = writeln!(md, "{}", row.line());
        }
        let best = self
            .warm
            .iter()
            .max_by(|x, y| x.per_sec.total_cmp(&y.per_sec));
        let sequential = self.warm.iter().find(|r| r.callers == 1);
        if let Some(best) = best {
            let _ = writeln!(
                md,
                "\nTarget ≥ 20,000 requests/s: {:.0}/s at {} callers, **{}**.",
                best.per_sec,
                best.callers,
                verdict(best.per_sec >= 20_000.0)
            );
        }
        if let Some(seq) = sequential {
            let _ = writeln!(
                md,
                "Target p50 ≤ 200 µs: {:.0} µs sequential (1 caller), **{}**.",
                seq.p50(),
                verdict(seq.p50() <= 200.0)
            );
        }

        let _ = writeln!(
            md,
            "\n## Cold resolve (cache disabled) against OpenBao, next to a bare KV v2 read of the same document\n"
        );
        let _ = writeln!(md, "{HEADER}");
        for row in &self.cold {
            let _ = writeln!(md, "{}", row.line());
        }
        let _ = writeln!(md);
        // Per caller count, the bare read is the first of the four rows and
        // the resolve over gRPC the last (`ColdKind::ALL`).
        for group in self.cold.chunks(ColdKind::ALL.len()) {
            if let [bare, .., cold] = group {
                let extra = cold.p50() - bare.p50();
                let _ = writeln!(
                    md,
                    "At {} caller(s): cold p50 − bare p50 = {extra:+.0} µs (target ≤ +150 µs), **{}**.  ",
                    cold.callers,
                    verdict(extra <= 150.0)
                );
            }
        }

        let c = self.warm_cache;
        let _ = writeln!(
            md,
            "\n## What was measured, and how\n\n\
             - **Secret**: `{RESOURCE}`, written once at the bot scope it is resolved from, so an uncached resolve \
               is exactly one KV v2 read (the tenant's key ring stays cached) plus local AES-256-GCM decryption. \
               Fields `provider`, `model`, `api-key`: {} bytes of names and values in plaintext; the gRPC answer \
               is {} bytes; the stored KV v2 document (sealed, JSON answer of the read) is {} bytes.\n\
             - **Server**: `locksmith_credstore::server::serve` in this process on loopback, mTLS with a fresh dev \
               PKI (`locksmith_tls::init_dir`), `CredStore` over `OpenBaoStore` (KV v2 mount `{}`, a fresh prefix) \
               and `MasterKeyWrapper`; audit: `JsonLinesAudit` (the binary's writer thread and bounded queue) to a \
               file, {} events written for the run; telemetry as the binary's (`LOCKSMITH_LOG=warn`, the \
               OpenTelemetry layer on, nothing exported); TCP_NODELAY on accepted connections, as `server::serve` \
               sets it.\n\
             - **Warm**: the cache as the binary configures it by default (`[cache] ttl_ms = {}`, `max_entries = {}`): \
               an entry expires every {} ms and the next call reads OpenBao again. **Cold**: the cache disabled \
               (`CacheConfig::DISABLED`, as `ttl_ms = 0`).\n\
             - **Callers**: `ResolveSecret` as the proxy (`spiffe://locksmith/proxy`, acting for itself) with tonic \
               clients; the callers of one figure share up to {} HTTP/2 connections (the `conns` column). \
               **Bare read**: `GET /v1/{}/data/<prefix>/{}` with `X-Vault-Token`, one reqwest client (keep-alive \
               pool: one connection per concurrent caller), body read in full; it is the very document the cold \
               resolve reads. The two in-process rows (driven on the servers' runtime) split the difference: the store's own \
               client reading that document (`OpenBaoStore::read` on the cold server's store: token, timeout and retry handling, JSON \
               and base64 decoding), then the whole uncached resolve without gRPC (`CredStore::resolve` as the \
               proxy: authorization, key ring, decryption, audit).\n\
             - **Method**: closed loops (each caller sends its next call when the last answered); {} s of warm-up \
               before every window, not counted; {} s measured per figure — the four cold rows alternate in {} rounds \
               of {:.1} s each so drift hits them alike. requests/s = calls started in the windows ÷ their length; \
               percentiles by nearest rank over every call's latency, sorted. Each answer is checked (scope, \
               fields, HTTP status); any failure aborts the run.\n\
             - **Reading the cold rows**: each row adds one layer to the one above it; the last adds the mTLS \
               gRPC hop. The warm rows run back to back with the gRPC path hot in the cores' caches, whereas inside \
               a cold resolve OpenBao runs on the same cores between request and answer, so the hop there costs \
               more CPU, and more time, than a whole warm call.\n",
            self.plain_bytes,
            self.answer_bytes,
            self.kv_bytes,
            a.mount,
            self.audited,
            c.ttl_ms,
            c.max_entries,
            c.ttl_ms,
            a.connections,
            a.mount,
            SecretRef::parse(RESOURCE)
                .map(|r| r.storage_path())
                .unwrap_or_default(),
            a.warmup_seconds,
            a.seconds,
            a.rounds,
            a.seconds / a.rounds as f64,
        );
        md
    }
}

/// The head of every results table ([`Row::line`] rows).
pub const HEADER: &str = "| what | callers | conns | requests/s | p50 | p90 | p99 | max | calls |\n\
                      | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

/// Lines in the file at `path`, read in chunks (the trail is large).
pub fn count_lines(path: &Path) -> std::io::Result<usize> {
    use std::io::Read as _;
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 0;
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(lines),
            n => lines += buf[..n].iter().filter(|b| **b == b'\n').count(),
        }
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` shows them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
