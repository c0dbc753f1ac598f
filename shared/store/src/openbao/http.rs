//! The one place that speaks HTTP to OpenBao: requests with the token,
//! bounded retries of reads, no redirects, and the classification of
//! transport failures and statuses every operation shares.
//!
//! Raw `reqwest` rather than `vaultrs`: vaultrs 0.8 has no paginated LIST,
//! drops KV version metadata on reads and pulls in a second reqwest (0.13).
//! Everything vaultrs could take over later (auth, token renewal) would sit
//! behind [`Transport`], so the KV mapping in `mod.rs` would not change.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, redirect};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::OpenBaoConfig;
use crate::StoreError;

/// Tries of one idempotent read (the first and two retries).
const READ_TRIES: u32 = 3;
/// Wait before the first retry; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest text taken from a server's `errors` into one of ours.
const MAX_DETAIL: usize = 200;

/// What the server answered: status and body bytes.
pub(super) struct Answer {
    pub status: StatusCode,
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

/// An HTTP client bound to one server and token.
pub(super) struct Transport {
    client: reqwest::Client,
    /// `<address>/v1/`.
    base: String,
    token: SecretString,
    request_timeout: Duration,
}

impl Transport {
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
            token: config.token.clone(),
            request_timeout: config.request_timeout(),
        })
    }

    /// Sends one request to `path` (under `/v1/`). GETs are reads and are
    /// retried on 429, 5xx and connection failures, within the request
    /// timeout; nothing else is retried, because a write that timed out may
    /// have landed. Answers 2xx, 400 and 404 for the caller to interpret;
    /// every other status is classified here.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, StoreError> {
        let deadline = Instant::now() + self.request_timeout;
        let tries = if method == Method::GET { READ_TRIES } else { 1 };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let outcome = self
                .send_once(method.clone(), path, query, body, deadline)
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
                tracing::debug!(%method, path, attempt, "openbao read failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
                continue;
            }
            return match outcome {
                Ok(answer) => classify(&method, path, answer),
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
        deadline: Instant,
    ) -> Result<Answer, Failure> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-Vault-Token", self.token.expose_secret())
            .timeout(remaining);
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
                "openbao {method} {path}: no KV mount there"
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
