//! The real serve loop on 127.0.0.1:0 with a tiny router, spoken to over raw
//! sockets so that malformed requests reach it byte for byte.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, routing::get};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, oneshot},
    task::JoinHandle,
    time::timeout,
};

use super::serve;
use crate::config::Limits;

/// Longer than anything in these tests should take.
const WAIT: Duration = Duration::from_secs(5);

struct Edge {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<std::io::Result<()>>,
    /// Notified when `/slow` has started.
    slow_started: Arc<Notify>,
}

async fn start(limits: Limits) -> Edge {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slow_started = Arc::new(Notify::new());
    let started = Arc::clone(&slow_started);
    let app = Router::new().route("/hello", get(|| async { "hi" })).route(
        "/slow",
        get(move || async move {
            started.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        serve(listener, app, &limits, shutdown).await
    });
    Edge {
        addr,
        stop,
        served,
        slow_started,
    }
}

impl Edge {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Sends `request` on a new connection and reads the one answer.
    async fn exchange(&self, request: &[u8]) -> (Raw, TcpStream) {
        let mut stream = self.connect().await;
        stream.write_all(request).await.unwrap();
        let raw = read_response(&mut stream).await;
        (raw, stream)
    }
}

/// A response as read off the socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the whole answer: status, media type and the exact problem,
    /// whose fresh request id must also be the `x-request-id` header.
    fn assert_problem(&self, status: u16, reason: &str, title: &str, detail: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let body: Value = serde_json::from_slice(&self.body).unwrap();
        let request_id = body["request_id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
        assert_eq!(self.header("x-request-id"), Some(request_id));
        assert_eq!(
            body,
            json!({
                "type": format!("urn:locksmith:error:{reason}"),
                "title": title,
                "status": status,
                "detail": detail,
                "request_id": request_id,
            })
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    let n = timeout(WAIT, stream.read(&mut chunk))
        .await
        .expect("no answer in time")
        .unwrap();
    assert!(n > 0, "closed without an answer: {}", buf.escape_ascii());
    buf.extend_from_slice(&chunk[..n]);
}

/// Reads one response: its head, then `content-length` bytes of body.
async fn read_response(stream: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, &mut buf).await;
    };
    let head = std::str::from_utf8(&buf[..head_end - 4])
        .unwrap()
        .to_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .expect("a content-length");
    while buf.len() < head_end + length {
        read_more(stream, &mut buf).await;
    }
    Raw {
        status,
        headers,
        body: buf[head_end..head_end + length].to_vec(),
    }
}

/// Asserts the server closes `stream` (EOF) without sending anything more.
async fn assert_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("the server did not close the connection");
    assert_eq!(read.unwrap(), 0, "{}", rest.escape_ascii());
}

#[tokio::test]
async fn keep_alive_serves_two_requests_on_one_connection() {
    let edge = start(Limits::default()).await;
    let mut stream = edge.connect().await;
    for _ in 0..2 {
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: edge\r\n\r\n")
            .await
            .unwrap();
        let raw = read_response(&mut stream).await;
        assert_eq!(raw.status, 200);
        assert_eq!(raw.body, b"hi");
    }
}

#[tokio::test]
async fn half_sent_headers_are_closed_after_the_header_read_timeout() {
    let edge = start(Limits {
        header_read_timeout_ms: 300,
        ..Limits::default()
    })
    .await;
    let mut stream = edge.connect().await;
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: edge\r\n")
        .await
        .unwrap();
    let begun = Instant::now();
    assert_closed(&mut stream).await;
    assert!(
        begun.elapsed() >= Duration::from_millis(250),
        "{:?}",
        begun.elapsed()
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    let edge = start(Limits {
        header_read_timeout_ms: 300,
        ..Limits::default()
    })
    .await;
    let mut stream = edge.connect().await;
    let begun = Instant::now();
    assert_closed(&mut stream).await;
    assert!(
        begun.elapsed() >= Duration::from_millis(250),
        "{:?}",
        begun.elapsed()
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let edge = start(Limits {
        header_read_timeout_ms: 300,
        ..Limits::default()
    })
    .await;
    let (raw, mut stream) = edge
        .exchange(b"GET /hello HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await;
    assert_eq!(raw.status, 200);
    assert_closed(&mut stream).await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let edge = start(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let mut first = edge.connect().await;
    first.write_all(b"GET /hello HTTP/1.1\r\n").await.unwrap();
    let mut second = edge.connect().await;
    second.write_all(b"GET /hello HTTP/1.1\r\n").await.unwrap();

    let mut third = edge.connect().await;
    third
        .write_all(b"GET /hello HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(500), third.read(&mut byte))
            .await
            .is_err(),
        "a connection over the cap was served"
    );

    drop(first);
    let raw = read_response(&mut third).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, b"hi");
    drop(second);
}

#[tokio::test]
async fn a_uri_over_the_limit_gets_a_414_problem() {
    let edge = start(Limits::default()).await;
    let request = format!(
        "GET /{} HTTP/1.1\r\nhost: edge\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    let (raw, _) = edge.exchange(request.as_bytes()).await;
    raw.assert_problem(
        414,
        "URI_TOO_LONG",
        "URI too long",
        "the request target is longer than the edge accepts (8192 bytes)",
    );
}

#[tokio::test]
async fn a_uri_over_hypers_own_limit_gets_a_414_problem() {
    let edge = start(Limits::default()).await;
    let request = format!(
        "GET /{} HTTP/1.1\r\nhost: edge\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let (raw, mut stream) = edge.exchange(request.as_bytes()).await;
    raw.assert_problem(
        414,
        "URI_TOO_LONG",
        "URI too long",
        "the request target is longer than the edge accepts",
    );
    assert_eq!(raw.header("connection"), Some("close"));
    assert_closed(&mut stream).await;
}

#[tokio::test]
async fn headers_over_the_limit_get_a_431_problem() {
    let edge = start(Limits::default()).await;
    let mut request = String::from("GET /hello HTTP/1.1\r\nhost: edge\r\n");
    for i in 0..40 {
        request.push_str(&format!("x-pad-{i:02}: {}\r\n", "a".repeat(1024)));
    }
    request.push_str("\r\n");
    let (raw, _) = edge.exchange(request.as_bytes()).await;
    raw.assert_problem(
        431,
        "HEADERS_TOO_LARGE",
        "Request header fields too large",
        "the request headers are larger than the edge accepts (16384 bytes)",
    );
}

#[tokio::test]
async fn more_headers_than_hyper_parses_get_a_431_problem() {
    let edge = start(Limits::default()).await;
    let mut request = String::from("GET /hello HTTP/1.1\r\nhost: edge\r\n");
    for i in 0..150 {
        request.push_str(&format!("x-{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let (raw, mut stream) = edge.exchange(request.as_bytes()).await;
    raw.assert_problem(
        431,
        "HEADERS_TOO_LARGE",
        "Request header fields too large",
        "the request headers are larger than the edge accepts",
    );
    assert_closed(&mut stream).await;
}

async fn assert_bad_request(request: &[u8]) {
    let edge = start(Limits::default()).await;
    let (raw, mut stream) = edge.exchange(request).await;
    raw.assert_problem(
        400,
        "INVALID_ARGUMENT",
        "Invalid argument",
        "the request is not valid HTTP/1.1",
    );
    assert_eq!(raw.header("connection"), Some("close"));
    assert_closed(&mut stream).await;
}

#[tokio::test]
async fn a_nul_in_a_header_value_gets_a_400_problem() {
    assert_bad_request(b"GET /hello HTTP/1.1\r\nhost: edge\r\nx-note: a\0b\r\n\r\n").await;
}

#[tokio::test]
async fn a_nul_in_the_path_gets_a_400_problem() {
    assert_bad_request(b"GET /hel\0lo HTTP/1.1\r\nhost: edge\r\n\r\n").await;
}

#[tokio::test]
async fn a_garbage_request_line_gets_a_400_problem() {
    assert_bad_request(b"\x01\x02 this is not http\r\n\r\n").await;
}

#[tokio::test]
async fn a_bad_request_after_a_good_one_gets_a_400_problem() {
    let edge = start(Limits::default()).await;
    let (raw, mut stream) = edge
        .exchange(b"GET /hello HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await;
    assert_eq!(raw.status, 200);
    stream
        .write_all(b"GET /hello HTTP/9.9\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut stream).await.assert_problem(
        400,
        "INVALID_ARGUMENT",
        "Invalid argument",
        "the request is not valid HTTP/1.1",
    );
    assert_closed(&mut stream).await;
}

async fn h2_client(edge: &Edge) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let stream = edge.connect().await;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let edge = start(Limits::default()).await;
    let mut client = h2_client(&edge).await;
    for _ in 0..2 {
        let request = hyper::Request::get("http://edge/hello")
            .body(Empty::new())
            .unwrap();
        let response = client.send_request(request).await.unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hi");
    }
}

#[tokio::test]
async fn http2_headers_over_the_limit_get_a_431_problem() {
    let edge = start(Limits::default()).await;
    let mut client = h2_client(&edge).await;
    let request = hyper::Request::get("http://edge/hello")
        .header("x-pad", "a".repeat(20 * 1024))
        .body(Empty::new())
        .unwrap();
    let response = client.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Raw {
        status,
        headers,
        body: body.to_vec(),
    }
    .assert_problem(
        431,
        "HEADERS_TOO_LARGE",
        "Request header fields too large",
        "the request headers are larger than the edge accepts (16384 bytes)",
    );
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let edge = start(Limits::default()).await;
    let mut stream = edge.connect().await;
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    timeout(WAIT, edge.slow_started.notified())
        .await
        .expect("the request never reached the handler");
    let Edge {
        addr, stop, served, ..
    } = edge;
    stop.send(()).unwrap();

    let raw = read_response(&mut stream).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, b"done");
    assert_closed(&mut stream).await;
    timeout(WAIT, served)
        .await
        .expect("serve did not return after draining")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn limits_that_would_serve_nothing_are_refused() {
    for limits in [
        Limits {
            max_connections: 0,
            ..Limits::default()
        },
        Limits {
            header_read_timeout_ms: 0,
            ..Limits::default()
        },
    ] {
        let edge = start(limits).await;
        let err = timeout(WAIT, edge.served)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
