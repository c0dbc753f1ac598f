//! Streamed exchanges, for the token proxy: the response is answered as soon
//! as its head arrives and its body is read chunk by chunk, so a 1 GiB
//! transfer holds one chunk in memory, not a gigabyte. The same guard
//! applies as for [`EgressClient::send`]: the URL checked, the addresses
//! checked inside DNS resolution, no redirect followed.
//!
//! Time is bounded in two ways, since a total bound would cut a long
//! download: the head must arrive within [`StreamLimits::head_timeout`], and
//! then each chunk within [`StreamLimits::idle_timeout`] of the previous one,
//! so an upstream that stalls mid-body ends the stream with
//! [`EgressError::Timeout`] instead of hanging it.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{StatusCode, header::HeaderMap};

use crate::{EgressClient, EgressError, EgressRequest};

/// The bounds on one streamed exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// From sending to the response head (DNS, connect, TLS, request body,
    /// the upstream's think time).
    pub head_timeout: Duration,
    /// Between two chunks of the response body.
    pub idle_timeout: Duration,
    /// The longest body accepted; the stream fails with
    /// [`EgressError::TooLarge`] as soon as it is passed (or at once when
    /// `Content-Length` says it will be). `u64::MAX`: no cap.
    pub max_body_bytes: u64,
}

/// A response whose body has not been read yet.
pub struct EgressStream {
    /// The status, 3xx included (redirects are not followed).
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// `Content-Length`, when the upstream sent one.
    pub content_length: Option<u64>,
    response: reqwest::Response,
    host: String,
    limits: StreamLimits,
    connect_timeout: Duration,
    received: u64,
}

impl std::fmt::Debug for EgressStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressStream")
            .field("status", &self.status)
            .field("host", &self.host)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl EgressStream {
    /// The next chunk of the body, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, EgressError> {
        let limit = self.limits.idle_timeout;
        let next = tokio::time::timeout(limit, self.response.chunk()).await;
        let chunk = match next {
            Err(_) => {
                return Err(EgressError::Timeout {
                    host: self.host.clone(),
                    limit,
                });
            }
            Ok(result) => result
                .map_err(|err| EgressError::from_reqwest(err, &self.host, self.connect_timeout))?,
        };
        if let Some(chunk) = &chunk {
            self.received = self
                .received
                .saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
            if self.received > self.limits.max_body_bytes {
                return Err(self.too_large());
            }
        }
        Ok(chunk)
    }

    /// The URL's host, as errors name it.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn too_large(&self) -> EgressError {
        EgressError::TooLarge {
            host: self.host.clone(),
            limit: self.limits.max_body_bytes,
        }
    }
}

impl EgressClient {
    /// Sends `request` (whose body may itself be a stream) and answers once
    /// the response head has arrived, within `limits`; read the body with
    /// [`EgressStream::chunk`]. A 3xx is answered as it came, never followed.
    pub async fn send_streaming(
        &self,
        request: impl Into<EgressRequest>,
        limits: StreamLimits,
    ) -> Result<EgressStream, EgressError> {
        let request = request.into().into_inner();
        let host = crate::client::host_label(request.url());
        self.check_syntax(request.url(), &host)?;
        let connect_timeout = self.connect_timeout();
        let sent = tokio::time::timeout(limits.head_timeout, self.http().execute(request)).await;
        let mut response = match sent {
            Err(_) => {
                return Err(EgressError::Timeout {
                    host,
                    limit: limits.head_timeout,
                });
            }
            Ok(result) => {
                result.map_err(|err| EgressError::from_reqwest(err, &host, connect_timeout))?
            }
        };
        let content_length = response.content_length();
        if content_length.is_some_and(|n| n > limits.max_body_bytes) {
            return Err(EgressError::TooLarge {
                host,
                limit: limits.max_body_bytes,
            });
        }
        Ok(EgressStream {
            status: response.status(),
            headers: std::mem::take(response.headers_mut()),
            content_length,
            response,
            host,
            limits,
            connect_timeout,
            received: 0,
        })
    }
}
