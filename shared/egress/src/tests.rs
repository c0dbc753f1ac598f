//! The guard end to end: URLs refused before anything is sent, and calls to
//! throwaway HTTP servers on loopback (allow-listed) that misbehave in the
//! ways the guard bounds.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{StatusCode, Url, header};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::{
    EgressClient, EgressError, EgressPolicy, EgressRequest, ErrorKind, Refusal, client::Lookup,
};

// ---- helpers -----------------------------------------------------------

fn url(s: &str) -> Url {
    s.parse().unwrap()
}

fn strict() -> EgressClient {
    EgressClient::new(EgressPolicy::default()).unwrap()
}

/// Allows loopback, as the tests' servers live there.
fn loopback_policy() -> EgressPolicy {
    EgressPolicy {
        allow_cidrs: vec!["127.0.0.0/8".into()],
        ..EgressPolicy::default()
    }
}

fn loopback() -> EgressClient {
    EgressClient::new(loopback_policy()).unwrap()
}

/// A resolver answering from a script: `answers[i]` for the i-th lookup,
/// the last one from then on. Counts lookups.
fn scripted(answers: Vec<Vec<&str>>) -> (Lookup, Arc<AtomicUsize>) {
    let answers: Vec<Vec<IpAddr>> = answers
        .into_iter()
        .map(|a| a.into_iter().map(|s| s.parse().unwrap()).collect())
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let lookup: Lookup = Arc::new(move |_host| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let answer = answers[n.min(answers.len() - 1)].clone();
        Box::pin(async move { Ok(answer) })
    });
    (lookup, calls)
}

#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, EgressError>, want: &str) -> EgressError {
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert!(err.to_string().contains(want), "`{err}` lacks `{want}`");
    err
}

/// How a test server answers every connection.
#[derive(Clone)]
enum Reply {
    /// 200 with the raw request (head and body) as the body.
    Echo,
    /// 200 with `len` bytes, declared in Content-Length or sent chunked.
    Body { len: usize, declared: bool },
    /// 302 to `location`.
    Redirect(String),
    /// Nothing at all for `delay`, then a 200.
    Slow(Duration),
    /// Headers promising 100 bytes, 10 of them, then silence.
    StallMidBody,
    /// Bytes that are not HTTP.
    Garbage,
}

/// A one-response-per-connection HTTP/1.1 server on loopback that counts
/// the connections it accepts. Stops when dropped.
struct TestServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(stream, reply.clone()));
            }
        });
        Self { addr, hits, task }
    }

    fn url(&self, path: &str) -> Url {
        url(&format!("http://{}{path}", self.addr))
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request: the head, then as many body bytes as it declares.
async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body_len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + body_len {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf
}

async fn answer(mut stream: TcpStream, reply: Reply) {
    let request = read_request(&mut stream).await;
    let ok = |len: usize| {
        format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")
    };
    // Write errors mean the client hung up, which several tests intend.
    let _ = match reply {
        Reply::Echo => {
            let mut out = ok(request.len()).into_bytes();
            out.extend_from_slice(&request);
            stream.write_all(&out).await
        }
        Reply::Body {
            len,
            declared: true,
        } => {
            let mut out = ok(len).into_bytes();
            out.resize(out.len() + len, b'x');
            stream.write_all(&out).await
        }
        Reply::Body {
            len,
            declared: false,
        } => {
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            let mut result = stream.write_all(head.as_bytes()).await;
            let mut left = len;
            while left > 0 && result.is_ok() {
                let n = left.min(16 * 1024);
                let mut chunk = format!("{n:x}\r\n").into_bytes();
                chunk.resize(chunk.len() + n, b'x');
                chunk.extend_from_slice(b"\r\n");
                result = stream.write_all(&chunk).await;
                left -= n;
            }
            match result {
                Ok(()) => stream.write_all(b"0\r\n\r\n").await,
                err => err,
            }
        }
        Reply::Redirect(location) => {
            let out = format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(out.as_bytes()).await
        }
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            stream.write_all(ok(0).as_bytes()).await
        }
        Reply::StallMidBody => {
            let mut out = ok(100).into_bytes();
            out.extend_from_slice(&[b'x'; 10]);
            let result = stream.write_all(&out).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            result
        }
        Reply::Garbage => stream.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await,
    };
}

// ---- URLs refused before anything is sent --------------------------------

#[tokio::test]
async fn metadata_and_loopback_urls_are_refused() {
    let client = strict();
    let cases = [
        // plain http is refused before the address is even looked at
        ("http://169.254.169.254/latest/meta-data/", "plain http"),
        (
            "https://169.254.169.254/latest/meta-data/",
            "cloud metadata",
        ),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("https://[::1]/", "loopback"),
        ("https://[64:ff9b::7f00:1]/", "loopback"),
        ("https://[2002:a9fe:a9fe::1]/", "cloud metadata"),
        ("https://[::127.0.0.1]/", "loopback"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[fd00::1]/", "unique local"),
        ("https://10.1.2.3/", "RFC 1918"),
        ("https://100.64.0.1/", "carrier-grade NAT"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://255.255.255.255/", "broadcast"),
        ("https://224.0.0.1/", "multicast"),
        ("https://192.0.2.1/", "documentation"),
        // spellings the url crate normalises to 127.0.0.1 / 0.0.0.0
        ("https://127.1/", "loopback"),
        ("https://2130706433/", "loopback"),
        ("https://0x7f000001/", "loopback"),
        ("https://0x7f.0.0.1/", "loopback"),
        ("https://0177.0.0.1/", "loopback"),
        ("https://017700000001/", "loopback"),
        ("https://0/", "unspecified"),
        // never https
        ("ftp://example.com/", "scheme `ftp`"),
        ("file:///etc/passwd", "scheme `file`"),
        ("gopher://example.com/", "scheme `gopher`"),
    ];
    for (raw, want) in cases {
        let parsed = url(raw);
        assert_refused(client.check_url(&parsed).await, want);
        assert_refused(client.send(EgressRequest::get(parsed)).await, want);
    }
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused() {
    let client = strict();
    let err = assert_refused(
        client.check_url(&url("https://localhost/")).await,
        "loopback",
    );
    assert_eq!(err.host(), "localhost");
    assert_refused(
        client
            .check_url(&url("https://LocalHost:8443/x?code=1"))
            .await,
        "loopback",
    );

    // Through `send` a name is checked by the resolver inside reqwest, at
    // connect time; the refusal comes back classified all the same, and
    // nothing reaches the server listening there.
    let server = TestServer::start(Reply::Echo).await;
    let target = url(&format!("https://localhost:{}/", server.addr.port()));
    let err = assert_refused(client.send(EgressRequest::get(target)).await, "loopback");
    assert!(matches!(
        err,
        EgressError::Refused {
            reason: Refusal::Address { .. },
            ..
        }
    ));
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn userinfo_is_refused_and_never_echoed() {
    let client = strict();
    for raw in [
        "https://user:hunter2@example.com/",
        "https://user@example.com/",
        "https://:hunter2@example.com/",
    ] {
        let err = assert_refused(client.check_url(&url(raw)).await, "user information");
        assert_eq!(err.host(), "example.com");
        assert!(!err.to_string().contains("hunter2"));
    }
}

#[tokio::test]
async fn errors_name_the_host_but_not_path_query_or_headers() {
    let client = strict();
    let request = EgressRequest::post(url(
        "https://169.254.169.254/token/s3cr3t-path?code=s3cr3t-code",
    ))
    .header(
        header::AUTHORIZATION,
        header::HeaderValue::from_static("Bearer s3cr3t-token"),
    )
    .form([("client_secret", "s3cr3t-body")]);
    assert!(!format!("{request:?}").contains("s3cr3t"));
    let err = client.send(request).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("169.254.169.254"), "{message}");
    assert!(!message.contains("s3cr3t"), "{message}");
    assert!(!format!("{err:?}").contains("s3cr3t"));

    // reqwest's own errors carry the URL; ours must not.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = loopback()
        .send(EgressRequest::get(url(&format!(
            "http://127.0.0.1:{port}/cb?code=s3cr3t-code"
        ))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(!format!("{err} {err:?}").contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn public_addresses_pass_the_check() {
    let client = strict();
    client
        .check_url(&url("https://93.184.216.34/token"))
        .await
        .unwrap();
    client
        .check_url(&url("https://[2606:4700:4700::1111]/"))
        .await
        .unwrap();
    client
        .check_url(&url("https://[::ffff:8.8.8.8]/"))
        .await
        .unwrap();
    let (lookup, _) = scripted(vec![vec!["93.184.216.34", "2606:2800:220:1::1"]]);
    let scripted_client = EgressClient::with_lookup(&EgressPolicy::default(), lookup).unwrap();
    scripted_client
        .check_url(&url("https://auth.example.com/oauth/token"))
        .await
        .unwrap();
}

// ---- DNS: the addresses checked are the ones connected to ---------------

#[tokio::test]
async fn a_rebinding_name_is_refused_at_connect() {
    // Public when the tenant configures it, loopback when it is used.
    let (lookup, calls) = scripted(vec![vec!["93.184.216.34"], vec!["127.0.0.1"]]);
    let client = EgressClient::with_lookup(&EgressPolicy::default(), lookup).unwrap();
    let server = TestServer::start(Reply::Echo).await;
    let target = url(&format!("https://rebind.example:{}/", server.addr.port()));
    client.check_url(&target).await.unwrap();
    assert_refused(client.send(EgressRequest::get(target)).await, "loopback");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn a_name_with_any_internal_address_is_refused_whole() {
    let (lookup, _) = scripted(vec![vec!["93.184.216.34", "10.0.0.5"]]);
    let client = EgressClient::with_lookup(&EgressPolicy::default(), lookup).unwrap();
    assert_refused(
        client.check_url(&url("https://split.example/")).await,
        "10.0.0.5 is in 10.0.0.0/8",
    );
}

#[tokio::test]
async fn an_allow_listed_host_is_trusted_wherever_it_resolves() {
    let server = TestServer::start(Reply::Echo).await;
    let (lookup, _) = scripted(vec![vec!["127.0.0.1"]]);
    let policy = EgressPolicy {
        allow_hosts: vec!["bao.internal".into()],
        ..EgressPolicy::default()
    };
    let client = EgressClient::with_lookup(&policy, lookup).unwrap();
    // Plain http too, as the host is allow-listed; and the connection goes
    // to the address the resolver returned, not a second lookup.
    let target = url(&format!(
        "http://bao.internal:{}/v1/sys/health",
        server.addr.port()
    ));
    client.check_url(&target).await.unwrap();
    let response = client.send(EgressRequest::get(target)).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(server.hits(), 1);
    // Another name resolving to the same address is not.
    let other = url(&format!("https://other.internal:{}/", server.addr.port()));
    assert_refused(client.send(EgressRequest::get(other)).await, "loopback");
    assert_eq!(server.hits(), 1);
}

// ---- plain http ----------------------------------------------------------

#[tokio::test]
async fn plain_http_needs_an_allow_listed_destination() {
    let server = TestServer::start(Reply::Echo).await;
    let port = server.addr.port();
    // Loopback is allow-listed as a network, so http to the literal works...
    let client = loopback();
    let ok = client
        .send(EgressRequest::get(server.url("/")))
        .await
        .unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(server.hits(), 1);
    // ...but not to a name that resolves there, nor to another address.
    for raw in [
        format!("http://localhost:{port}/"),
        format!("http://example.com:{port}/"),
        format!("http://10.0.0.1:{port}/"),
    ] {
        assert_refused(
            client.send(EgressRequest::get(url(&raw))).await,
            "plain http",
        );
    }
    // Without the allow-list, neither http nor https reaches loopback.
    assert_refused(
        strict().send(EgressRequest::get(server.url("/"))).await,
        "plain http",
    );
    let https = url(&format!("https://127.0.0.1:{port}/"));
    assert_refused(strict().send(EgressRequest::get(https)).await, "loopback");
    assert_eq!(server.hits(), 1);
}

// ---- responses -------------------------------------------------------------

#[tokio::test]
async fn requests_carry_method_headers_and_body() {
    let server = TestServer::start(Reply::Echo).await;
    let client = loopback();
    let response = client
        .send(
            EgressRequest::post(server.url("/token"))
                .header(
                    header::ACCEPT,
                    header::HeaderValue::from_static("application/json"),
                )
                .form([("grant_type", "authorization_code"), ("code", "a b&c")]),
        )
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK);
    let echoed = String::from_utf8(response.body.to_vec()).unwrap();
    assert!(echoed.starts_with("POST /token HTTP/1.1\r\n"), "{echoed}");
    assert!(echoed.contains("content-type: application/x-www-form-urlencoded"));
    assert!(echoed.contains("accept: application/json"));
    assert!(echoed.contains("user-agent: locksmith-egress/"));
    assert!(echoed.ends_with("grant_type=authorization_code&code=a+b%26c"));

    let response = client
        .send(
            EgressRequest::new(reqwest::Method::PUT, server.url("/j"))
                .json(&serde_json::json!({"k": 1}))
                .unwrap(),
        )
        .await
        .unwrap();
    let echoed = String::from_utf8(response.body.to_vec()).unwrap();
    assert!(echoed.starts_with("PUT /j HTTP/1.1\r\n"), "{echoed}");
    assert!(echoed.contains("content-type: application/json"));
    assert!(echoed.ends_with(r#"{"k":1}"#));
}

#[tokio::test]
async fn a_redirect_is_returned_not_followed() {
    let target = TestServer::start(Reply::Echo).await;
    let redirect = TestServer::start(Reply::Redirect(target.url("/stolen").to_string())).await;
    let response = loopback()
        .send(EgressRequest::get(redirect.url("/token")))
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::FOUND);
    assert_eq!(
        response.headers.get(header::LOCATION).unwrap(),
        target.url("/stolen").as_str()
    );
    assert_eq!(redirect.hits(), 1);
    assert_eq!(target.hits(), 0);
}

#[tokio::test]
async fn bodies_over_the_limit_fail_with_too_large() {
    let limit = 64 * 1024;
    let client = EgressClient::new(EgressPolicy {
        max_response_bytes: limit,
        ..loopback_policy()
    })
    .unwrap();
    let limit_len = usize::try_from(limit).unwrap();
    for declared in [true, false] {
        // Exactly the limit is fine...
        let at = TestServer::start(Reply::Body {
            len: limit_len,
            declared,
        })
        .await;
        let response = client.send(EgressRequest::get(at.url("/"))).await.unwrap();
        assert_eq!(response.body.len(), limit_len);
        // ...one byte more is not, and a huge streamed body stops early.
        for len in [limit_len + 1, 64 * 1024 * 1024] {
            let over = TestServer::start(Reply::Body { len, declared }).await;
            let started = Instant::now();
            let err = client
                .send(EgressRequest::get(over.url("/")))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
            assert!(matches!(err, EgressError::TooLarge { limit: l, .. } if l == limit));
            assert_eq!(
                err.to_string(),
                "the response from 127.0.0.1 exceeds the limit of 65536 bytes"
            );
            assert!(started.elapsed() < Duration::from_secs(5));
        }
    }
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let timeout = Duration::from_millis(300);
    let client = EgressClient::new(EgressPolicy {
        timeout_ms: 300,
        ..loopback_policy()
    })
    .unwrap();
    for reply in [Reply::Slow(Duration::from_secs(30)), Reply::StallMidBody] {
        let server = TestServer::start(reply).await;
        let started = Instant::now();
        let err = client
            .send(EgressRequest::get(server.url("/")))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(matches!(err, EgressError::Timeout { limit, .. } if limit == timeout));
        assert_eq!(err.to_string(), "127.0.0.1 did not answer within 300 ms");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= timeout && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
    }
}

#[tokio::test]
async fn a_connection_refused_is_unreachable_and_garbage_is_protocol() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = loopback()
        .send(EgressRequest::get(url(&format!(
            "http://127.0.0.1:{port}/"
        ))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert_eq!(err.host(), "127.0.0.1");

    let garbage = TestServer::start(Reply::Garbage).await;
    let err = loopback()
        .send(EgressRequest::get(garbage.url("/")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");

    let (lookup, _) = scripted(vec![vec![]]);
    let client = EgressClient::with_lookup(&EgressPolicy::default(), lookup).unwrap();
    let err = client
        .check_url(&url("https://nowhere.example/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
}
