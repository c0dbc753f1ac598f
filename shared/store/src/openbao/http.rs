//! The one place that speaks HTTP to OpenBao: requests with the current
//! token, bounded retries of what may be repeated, no redirects, and the
//! classification of transport failures and statuses every operation shares.
//!
//! Raw `reqwest` rather than `vaultrs`: vaultrs 0.8 has no paginated LIST,
//! drops KV version metadata on reads, has no batch Transit, no retries and
//! no token renewal, fixes the token per client, and pulls in a second
//! reqwest (0.13). Its Transit and AppRole calls are one JSON POST each,
//! which this client makes with our timeouts, retries and error mapping.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, header::HeaderValue, redirect};
use serde_json::Value;

use super::{OpenBaoConfig, auth::Auth};
use crate::StoreError;

/// Tries of one idempotent read (the first and two retries).
const READ_TRIES: u32 = 3;
/// Wait before the first retry; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest text taken from a server's `errors` into one of ours.
const MAX_DETAIL: usize = 200;

/// What the server answered: status and body bytes.
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body (JSON, or empty for a 204).
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON; an answer we cannot parse breaks the contract.
    pub fn json(&self) -> Result<Value, StoreError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| StoreError::Corrupt(format!("openbao answered {}: {e}", self.status)))
    }

    /// The server's `errors` array joined, shortened (for our messages).
    pub fn errors(&self) -> String {
        let text = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("errors").and_then(Value::as_array).map(|errs| {
                    errs.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
            .unwrap_or_default();
        truncate(text)
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// How one request may be repeated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Retry {
    /// Only if it is a GET (KV reads); a KV write that timed out may have
    /// landed, so anything else is sent once.
    ReadsOnly,
    /// Whatever the method: the caller knows repeating it is harmless
    /// (Transit encrypt/decrypt, creating a key that may exist, a login).
    Idempotent,
}

/// The connection to one server, without any token: timeouts, retries, no
/// redirects, classification. Cheap to clone (reqwest's client is an `Arc`).
#[derive(Clone)]
pub(super) struct Raw {
    client: reqwest::Client,
    /// `<address>/v1/`.
    base: String,
    request_timeout: Duration,
}

impl Raw {
    pub fn new(config: &OpenBaoConfig) -> Result<Self, StoreError> {
        let client = reqwest::Client::builder()
            // A standby answers 307 to the active node, which during an
            // election is the dead one: retrying later beats following it,
            // and a redirect must never carry the token elsewhere.
            .redirect(redirect::Policy::none())
            .connect_timeout(config.connect_timeout())
            .build()
            .map_err(|e| StoreError::Invalid(format!("openbao client: {e}")))?;
        Ok(Self {
            client,
            base: format!("{}/v1/", config.address.trim_end_matches('/')),
            request_timeout: config.request_timeout(),
        })
    }

    /// When an operation starting now must be over.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.request_timeout
    }

    /// Sends one request to `path` (under `/v1/`) with `token` if any,
    /// retrying on 429, 5xx and connection failures as `retry` allows, all
    /// before `deadline`. Answers 2xx, 400 and 404 for the caller to
    /// interpret; every other status is classified here.
    pub async fn exchange(
        &self,
        request: &Request<'_>,
        token: Option<&HeaderValue>,
        deadline: Instant,
    ) -> Result<Answer, StoreError> {
        let Request {
            method,
            path,
            query,
            body,
            retry,
        } = *request;
        let repeatable = retry == Retry::Idempotent || method == Method::GET;
        let tries = if repeatable { READ_TRIES } else { 1 };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let outcome = self
                .send_once(method.clone(), path, query, body, token, deadline)
                .await;
            let retryable = match &outcome {
                Ok(answer) => {
                    answer.status == StatusCode::TOO_MANY_REQUESTS
                        || answer.status.is_server_error()
                }
                Err(Failure::Connect(_)) => true,
                Err(Failure::Other(_)) => false,
            };
            let now = Instant::now();
            if retryable && attempt < tries && now + backoff < deadline {
                tracing::debug!(%method, path, attempt, "openbao request failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
                continue;
            }
            return match outcome {
                Ok(answer) => classify(method, path, answer),
                Err(Failure::Connect(e) | Failure::Other(e)) => Err(e),
            };
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        token: Option<&HeaderValue>,
        deadline: Instant,
    ) -> Result<Answer, Failure> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(remaining);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.clone());
        }
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let failed = |e: reqwest::Error| transport_error(&method, path, &e);
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let body = response.bytes().await.map_err(failed)?;
        Ok(Answer {
            status,
            body: body.to_vec(),
        })
    }
}

/// One request to OpenBao's HTTP API.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The HTTP method (`GET ?list=true` is a LIST).
    pub method: &'a Method,
    /// The path under `/v1/`, e.g. `transit/encrypt/acme`.
    pub path: &'a str,
    /// Query parameters.
    pub query: &'a [(&'a str, String)],
    /// A JSON body.
    pub body: Option<&'a Value>,
    /// Whether it may be repeated after a failure.
    pub retry: Retry,
}

/// A client of one OpenBao server with one identity (a static token, or an
/// AppRole login kept fresh in the background): what the KV store uses, and
/// what other OpenBao users (Transit key wrapping) can share so that a
/// process logs in once and every request carries the current token.
/// Cheap to clone; clones share the token and its renewal.
#[derive(Clone)]
pub struct OpenBaoClient {
    raw: Raw,
    auth: Auth,
}

impl std::fmt::Debug for OpenBaoClient {
    // Never the token: only the server.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBaoClient")
            .field("base", &self.raw.base)
            .finish_non_exhaustive()
    }
}

impl OpenBaoClient {
    /// A client for `config`'s server and identity (its KV mount and prefix
    /// are not used here). Nothing is sent yet: an AppRole login happens on
    /// the first request.
    pub fn new(config: &OpenBaoConfig) -> Result<Self, StoreError> {
        config.validated_connection()?;
        let raw = Raw::new(config)?;
        let auth = Auth::new(config, &raw)?;
        Ok(Self { raw, auth })
    }

    /// Sends `request` with the current token, the whole of it (an AppRole
    /// login included) within the configured request timeout. Answers 2xx,
    /// 400 and 404 for the caller to interpret; 401/403 are
    /// [`StoreError::PermissionDenied`], 3xx (never followed), 412, 429 and
    /// 5xx and transport failures [`StoreError::Unavailable`], anything else
    /// [`StoreError::Corrupt`].
    pub async fn send(&self, request: Request<'_>) -> Result<Answer, StoreError> {
        let deadline = self.raw.deadline();
        let token = self.auth.token(&self.raw, deadline).await?;
        self.raw.exchange(&request, Some(&token), deadline).await
    }

    /// KV's shape of [`OpenBaoClient::send`]: GETs retried, nothing else.
    pub(super) async fn kv(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, StoreError> {
        self.send(Request {
            method: &method,
            path,
            query,
            body,
            retry: Retry::ReadsOnly,
        })
        .await
    }
}

/// A transport failure, and whether a read may be retried after it.
enum Failure {
    /// The server could not be reached: nothing was sent.
    Connect(StoreError),
    /// A timeout or a broken exchange.
    Other(StoreError),
}

/// Names what failed without the URL's host details or anything sent: the
/// token is in a header and bodies are never part of a reqwest error.
fn transport_error(method: &Method, path: &str, e: &reqwest::Error) -> Failure {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut detail = format!("openbao {method} {path}: {what}");
    // The innermost cause says why ("Connection refused"); the outer layers
    // only repeat that a request failed.
    let mut cause = std::error::Error::source(e);
    while let Some(next) = cause.and_then(std::error::Error::source) {
        cause = Some(next);
    }
    if let Some(cause) = cause {
        detail.push_str(&format!(" ({cause})"));
    }
    let err = StoreError::Unavailable(truncate(detail));
    if e.is_connect() {
        Failure::Connect(err)
    } else {
        Failure::Other(err)
    }
}

/// Statuses that mean the same whatever the operation.
pub(super) fn classify(method: &Method, path: &str, answer: Answer) -> Result<Answer, StoreError> {
    let status = answer.status;
    if status.is_success() || status == StatusCode::BAD_REQUEST {
        return Ok(answer);
    }
    if status == StatusCode::NOT_FOUND {
        // KV's own "not found" has no errors; this one means the mount is
        // missing, a deployment mistake that must not read as "no document".
        let errors = answer.errors();
        if errors.contains("no handler for route") {
            return Err(StoreError::PermissionDenied(format!(
                "openbao {method} {path}: nothing is mounted there"
            )));
        }
        return Ok(answer);
    }
    let errors = answer.errors();
    Err(match status.as_u16() {
        401 | 403 => {
            StoreError::PermissionDenied(format!("openbao {method} {path}: {status} {errors}"))
        }
        300..=399 => StoreError::Unavailable(format!(
            "openbao {method} {path}: redirected ({status}), probably a standby; not followed"
        )),
        // 412: a standby has not caught up with the index asked for.
        412 | 429 | 500..=599 => {
            StoreError::Unavailable(format!("openbao {method} {path}: {status} {errors}"))
        }
        _ => StoreError::Corrupt(format!(
            "openbao {method} {path}: unexpected {status} {errors}"
        )),
    })
}
