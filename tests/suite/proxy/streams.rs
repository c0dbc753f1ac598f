//! Bodies that stream: a gibibyte down and up through the edge with the
//! process's resident memory sampled throughout (it must stay flat: no hop
//! may hold the body), and an API that stalls mid-body, which ends the call
//! with a clear error instead of hanging it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use locksmith_proxy::forward::UpstreamConfig;
use serde_json::json;

use super::{World, call, reason};

const GIB: u64 = 1024 * 1024 * 1024;
/// What "flat" allows above the resident size before the transfer: chunks
/// in flight in each hop's buffers, never the body.
const FLAT: u64 = 96 * 1024 * 1024;

/// This process's resident set (every service runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// Samples the resident size every 20 ms until dropped; answers the peak.
struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    fn start() -> Sampler {
        let peak = Arc::new(AtomicU64::new(rss()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_gibibyte_streams_down_and_up_in_flat_memory() {
    let w = World::start(UpstreamConfig::default()).await;
    w.store(
        "tenants/acme",
        "keyed",
        json!({"api_key": {"key": "k-big"}}),
    )
    .await;
    let acme = w.suite.client_as(&w.acme_key);

    // Warm every hop's connections and pools first, so the baseline holds them.
    let warm = acme
        .get(w.suite.url("/proxy/keyed/big?bytes=1048576"))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.bytes().await.unwrap().len(), 1024 * 1024);

    let baseline = rss();
    let sampler = Sampler::start();
    let resp = acme
        .get(w.suite.url(&format!("/proxy/keyed/big?bytes={GIB}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], GIB.to_string().as_str());
    let mut body = resp.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        received += chunk.unwrap().len() as u64;
    }
    assert_eq!(received, GIB);
    let down_peak = sampler.peak();
    assert!(
        down_peak < baseline + FLAT,
        "download: resident {} MiB above the baseline",
        (down_peak - baseline) >> 20
    );

    // And up: a generated gibibyte, counted by the API.
    static CHUNK: [u8; 256 * 1024] = [7; 256 * 1024];
    let chunks = GIB / CHUNK.len() as u64;
    let upload =
        futures::stream::iter(0..chunks).map(|_| Ok::<_, std::io::Error>(bytes_of(&CHUNK)));
    let resp = acme
        .post(w.suite.url("/proxy/keyed/upload"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"bytes": GIB})
    );
    let up_peak = sampler.peak();
    assert!(
        up_peak < baseline + FLAT,
        "upload: resident {} MiB above the baseline",
        (up_peak - baseline) >> 20
    );
    let audited = w.suite.proxy_audit.events();
    let up = audited.iter().find(|e| e.method == "POST").unwrap();
    assert_eq!((up.bytes_in, up.status), (GIB, Some(200)));
    let down = audited.iter().rev().find(|e| e.method == "GET").unwrap();
    assert_eq!(down.bytes_out, GIB);
}

fn bytes_of(chunk: &'static [u8]) -> axum::body::Bytes {
    axum::body::Bytes::from_static(chunk)
}

#[tokio::test]
async fn an_api_that_stalls_mid_body_ends_the_call_with_a_timeout() {
    let w = World::start(UpstreamConfig {
        idle_timeout: Duration::from_millis(500),
        ..UpstreamConfig::default()
    })
    .await;
    w.store("tenants/acme", "keyed", json!({"api_key": {"key": "k"}}))
        .await;
    let mut client = w.workload("acme");

    // Unary: the whole call fails, naming the timeout.
    let err = client
        .call(call("tenants/acme/integrations/keyed", "GET", "/stall"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (tonic::Code::DeadlineExceeded, "TIMEOUT")
    );

    // Streamed: the head and the first bytes arrive, then the stream ends
    // with the timeout rather than hanging.
    let first = locksmith_proto::proxy::v1::StreamCallRequest {
        head: call("tenants/acme/integrations/keyed", "GET", "/stall").head,
        body: Default::default(),
    };
    let mut stream = client
        .stream_call(futures::stream::iter([first]))
        .await
        .unwrap()
        .into_inner();
    let head = stream.message().await.unwrap().unwrap();
    assert_eq!(head.head.unwrap().status, 200);
    assert_eq!(head.body.as_ref(), b"partial");
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends, it does not hang")
        .unwrap_err();
    assert_eq!(
        (ended.code(), reason(&ended).as_str()),
        (tonic::Code::DeadlineExceeded, "TIMEOUT")
    );

    // Through the edge: the status is out, so the body is cut short.
    let resp = w
        .suite
        .client_as(&w.acme_key)
        .get(w.suite.url("/proxy/keyed/stall"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cut = tokio::time::timeout(Duration::from_secs(5), resp.bytes())
        .await
        .expect("the body ends, it does not hang");
    assert!(
        cut.is_err(),
        "a stalled body is an error, not a short success"
    );
    let failed: Vec<_> = w
        .suite
        .proxy_audit
        .events()
        .into_iter()
        .filter(|e| e.path == "/stall")
        .collect();
    assert_eq!(failed.len(), 3);
    assert!(
        failed
            .iter()
            .all(|e| format!("{:?}", e.outcome).contains("TIMEOUT")),
        "{failed:?}"
    );
}
