//! What can go wrong with an outbound call, classified so callers can map it
//! to a status without parsing messages.
//!
//! Messages name the host and never the path's query, a header or a body:
//! token requests carry client secrets, codes and refresh tokens in all
//! three. reqwest's own messages embed the full URL, so they are stripped of
//! it before being kept (see `EgressError::from_reqwest`).

use std::{error::Error as _, net::IpAddr, time::Duration};

/// Why a destination was refused before anything was sent to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A scheme other than `https` (or `http` to an allow-listed host).
    #[error("scheme `{0}` is not allowed (https only)")]
    Scheme(String),
    /// Plain `http` to a host the deployment does not allow-list.
    #[error("plain http is allowed only to hosts the deployment allow-lists")]
    PlainHttp,
    /// `https://user:password@host/`: credentials belong in headers, and
    /// userinfo is a classic way to disguise the real host.
    #[error("URLs carrying user information are refused")]
    Userinfo,
    /// The URL has no host to connect to.
    #[error("the URL names no host")]
    NoHost,
    /// The host is, or resolves to, an address in a forbidden range.
    #[error("{addr} is in {range}")]
    Address {
        /// The address that was refused.
        addr: IpAddr,
        /// The forbidden range it falls in, as named by
        /// [`forbidden_range`](crate::forbidden_range).
        range: &'static str,
    },
}

/// The classification of an [`EgressError`], for mapping to a status code
/// (say 400 or 403 for `Refused`, 504 for `Timeout`, 502 for the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The destination is not allowed; nothing was sent.
    Refused,
    /// The host did not resolve or the connection failed.
    Unreachable,
    /// The call did not finish within the policy's bounds.
    Timeout,
    /// The response body exceeded the policy's limit.
    TooLarge,
    /// TLS, HTTP or body framing failed, or the request could not be built.
    Protocol,
}

/// An outbound call that failed. Every variant names the host it was for.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The destination is not allowed; nothing was sent to it.
    #[error("refused destination {host}: {reason}")]
    Refused {
        /// The URL's host.
        host: String,
        /// Why.
        reason: Refusal,
    },
    /// The host did not resolve or no connection could be made.
    #[error("{host} is unreachable: {detail}")]
    Unreachable {
        /// The URL's host.
        host: String,
        /// The cause, free of URLs.
        detail: String,
    },
    /// The call (or its connect) took longer than allowed.
    #[error("{host} did not answer within {} ms", limit.as_millis())]
    Timeout {
        /// The URL's host.
        host: String,
        /// The bound that was exceeded: the connect or the total timeout.
        limit: Duration,
    },
    /// The response body is longer than allowed; it was not read further.
    #[error("the response from {host} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The URL's host.
        host: String,
        /// The policy's `max_response_bytes`.
        limit: u64,
    },
    /// Anything else: TLS, HTTP framing, a body cut short, a request that
    /// could not be built.
    #[error("protocol error talking to {host}: {detail}")]
    Protocol {
        /// The URL's host.
        host: String,
        /// The cause, free of URLs.
        detail: String,
    },
}

impl EgressError {
    /// The classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Refused { .. } => ErrorKind::Refused,
            Self::Unreachable { .. } => ErrorKind::Unreachable,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::TooLarge { .. } => ErrorKind::TooLarge,
            Self::Protocol { .. } => ErrorKind::Protocol,
        }
    }

    /// The host the failed call was for.
    pub fn host(&self) -> &str {
        match self {
            Self::Refused { host, .. }
            | Self::Unreachable { host, .. }
            | Self::Timeout { host, .. }
            | Self::TooLarge { host, .. }
            | Self::Protocol { host, .. } => host,
        }
    }

    pub(crate) fn refused(host: &str, reason: Refusal) -> Self {
        Self::Refused {
            host: host.to_owned(),
            reason,
        }
    }

    /// Classifies a reqwest error. A refusal by the guarded resolver travels
    /// inside reqwest's error as a source and is recognised here, so a host
    /// name refused at connect time reads exactly like one refused up front.
    /// `connect_timeout` names the bound when the connect is what timed out.
    pub(crate) fn from_reqwest(err: reqwest::Error, host: &str, connect_timeout: Duration) -> Self {
        let mut source = err.source();
        while let Some(cause) = source {
            if let Some(reason) = cause.downcast_ref::<Refusal>() {
                return Self::refused(host, reason.clone());
            }
            source = cause.source();
        }
        let host = host.to_owned();
        if err.is_timeout() {
            // The only timeout configured inside reqwest is the connect one;
            // the total bound is enforced around it by the client.
            return Self::Timeout {
                host,
                limit: connect_timeout,
            };
        }
        let connect = err.is_connect();
        let detail = describe(err);
        if connect {
            Self::Unreachable { host, detail }
        } else {
            Self::Protocol { host, detail }
        }
    }
}

/// reqwest's message without the URL, followed by its causes (hyper's and
/// the OS's, which name no URL, header or body).
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut detail = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}
