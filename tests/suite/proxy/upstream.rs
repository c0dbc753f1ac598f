//! A test API of our own behind the token proxy: plain HTTP on loopback
//! (reached through the https front of `broker_flows::tls_front`), counting
//! every request and keeping what it saw, so tests can check the injected
//! credential and that refused calls sent nothing. Behaviour by the path's
//! last segment:
//!
//! - `echo`: 200 (201 for POST) with the request body echoed, the headers
//!   that matter reported back as `x-seen-*`, plus a `Set-Cookie` and a
//!   hop-by-hop header the proxy must drop.
//! - `flaky`: 429 with `Retry-After: 1` the first time, then 200.
//! - `reject-first`: 401 for the first credential it sees, 200 for others.
//! - `stall`: 200 and a few bytes, then nothing, forever.
//! - `big?bytes=N`: N bytes, streamed.
//! - `upload`: reads the body to its end and answers `{"bytes": N}`.
//! - `redirect?to=URL`: 302 to URL.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use futures::StreamExt;
use tokio::net::TcpListener;

/// What the API saw of one request.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: String,
    /// The HTTP version it came in.
    pub version: axum::http::Version,
    /// Path and query, as received.
    pub target: String,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct Seen {
    hits: Vec<Hit>,
    flaky: u32,
    first_credential: Option<String>,
}

/// A running test API.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(Arc::clone(&seen));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inner = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        // The address callers get counts the TCP connections made to it
        // (so tests can see the proxy's pool keep them alive).
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = relay.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = relay.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut api) = tokio::net::TcpStream::connect(inner).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut api).await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            connections,
        }
    }

    /// TCP connections made to the API so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.seen.lock().unwrap().hits.clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().hits.len()
    }
}

type Shared = Arc<Mutex<Seen>>;

fn credential_of(headers: &HeaderMap) -> String {
    ["authorization", "x-api-key"]
        .iter()
        .find_map(|h| headers.get(*h))
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn query_of(target: &str) -> HashMap<String, String> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn serve(State(seen): State<Shared>, request: Request) -> Response {
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers = request.headers().clone();
    seen.lock().unwrap().hits.push(Hit {
        method: method.to_string(),
        version: request.version(),
        target: target.clone(),
        headers: headers.clone(),
    });
    let path = target.split('?').next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    let query = query_of(&target);
    match last {
        "echo" => {
            let body = axum::body::to_bytes(request.into_body(), usize::MAX)
                .await
                .unwrap();
            let status = if method == "POST" {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut response = Response::builder()
                .status(status)
                .header("x-seen-method", method.as_str())
                .header("x-seen-target", target.as_str())
                .header("x-seen-credential", credential_of(&headers))
                .header(
                    "x-seen-cookie",
                    u8::from(headers.contains_key("cookie")).to_string(),
                )
                .header(
                    "x-seen-api-version",
                    headers
                        .get("x-api-version")
                        .cloned()
                        .unwrap_or(HeaderValue::from_static("")),
                )
                .header("set-cookie", "session=upstream")
                .header("connection", "x-hop")
                .header("x-hop", "1");
            if let Some(ct) = headers.get(header::CONTENT_TYPE) {
                response = response.header(header::CONTENT_TYPE, ct);
            }
            response.body(Body::from(body)).unwrap()
        }
        "flaky" => {
            let first = {
                let mut s = seen.lock().unwrap();
                s.flaky += 1;
                s.flaky == 1
            };
            if first {
                Response::builder()
                    .status(StatusCode::TOO_MANY_REQUESTS)
                    .header(header::RETRY_AFTER, "1")
                    .body(Body::empty())
                    .unwrap()
            } else {
                Response::new(Body::from("after the wait"))
            }
        }
        "reject-first" => {
            let credential = credential_of(&headers);
            let refused = {
                let mut s = seen.lock().unwrap();
                let first = s.first_credential.get_or_insert_with(|| credential.clone());
                *first == credential
            };
            if refused {
                Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .body(Body::from("expired"))
                    .unwrap()
            } else {
                Response::new(Body::from("fresh credential accepted"))
            }
        }
        "stall" => {
            let body = futures::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"partial"))
            })
            .chain(futures::stream::pending());
            Response::new(Body::from_stream(body))
        }
        "big" => {
            let total: u64 = query["bytes"].parse().unwrap();
            static CHUNK: [u8; 64 * 1024] = [0x5a; 64 * 1024];
            let chunks = total.div_ceil(CHUNK.len() as u64);
            let body = futures::stream::iter(0..chunks).map(move |i| {
                let left = total - i * CHUNK.len() as u64;
                let n = left.min(CHUNK.len() as u64) as usize;
                Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK[..n]))
            });
            Response::builder()
                .header(header::CONTENT_LENGTH, total)
                .body(Body::from_stream(body))
                .unwrap()
        }
        "upload" => {
            let mut stream = request.into_body().into_data_stream();
            let mut total = 0u64;
            while let Some(chunk) = stream.next().await {
                total += chunk.unwrap().len() as u64;
            }
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(format!("{{\"bytes\":{total}}}")))
                .unwrap()
        }
        "redirect" => Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, query["to"].as_str())
            .body(Body::empty())
            .unwrap(),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap(),
    }
}
