//! The egress guard. Every outbound call to a URL that came from outside
//! the code — a catalog entry, a tenant's custom provider, a per-connection
//! input — goes through an [`EgressClient`], so that a URL cannot turn a
//! Locksmith service into a way into the network it runs in (its OpenBao, a
//! cloud metadata endpoint, a neighbour's admin port).
//!
//! # What it enforces
//!
//! - **https only.** Plain `http` only to a destination the deployment
//!   allow-lists: a host in `allow_hosts`, or an IP literal inside
//!   `allow_cidrs`. Any other scheme is refused, and so is a URL with
//!   userinfo (`https://user@host/`).
//! - **No internal addresses**, after DNS resolution: private (RFC 1918,
//!   RFC 4193), loopback, link-local (169.254.169.254 included), unspecified,
//!   multicast, broadcast, CGNAT, documentation and benchmarking ranges,
//!   0.0.0.0/8, reserved space, and every IPv6 form that carries such an IPv4
//!   address (mapped, compatible, NAT64, 6to4); see [`forbidden_range`].
//!   An address or network in `allow_cidrs` is admitted; a host in
//!   `allow_hosts` is admitted wherever it resolves. IP literals are checked
//!   the same way, whatever their spelling (`127.1`, `2130706433`, `0x7f.1`
//!   are all `127.0.0.1` once the URL is parsed).
//! - **No DNS-rebinding gap.** A host name is checked inside reqwest's DNS
//!   hook: it is resolved once, every address is checked, and the connector
//!   receives exactly those addresses. A name with any forbidden address is
//!   refused whole. HTTP proxies from the environment are ignored (a proxy
//!   would resolve the name itself).
//! - **Redirects are never followed.** A 3xx is returned to the caller as an
//!   ordinary [`EgressResponse`] (status and `Location` intact); whether to
//!   treat it as an error is the caller's call. For an OAuth token endpoint
//!   it is one; the token proxy may pass it back without credentials.
//! - **Bounded responses.** The body is streamed and the call fails with
//!   [`EgressError::TooLarge`] as soon as it passes `max_response_bytes` (or
//!   at once when `Content-Length` says it will). Bodies are not
//!   decompressed, so the limit is on what is held in memory.
//! - **Bounded time.** `timeout_ms` covers everything from DNS to the last
//!   byte of the body; `connect_timeout_ms` each TCP connect.
//!
//! # Errors
//!
//! [`EgressError`] has one variant per class — `Refused`, `Unreachable`,
//! `Timeout`, `TooLarge`, `Protocol` — and [`EgressError::kind`] for
//! matching without fields. Messages name the host, never a path, query,
//! header or body, since those carry codes, secrets and tokens. A non-2xx
//! status is not an error: it is a response.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use locksmith_egress::{EgressClient, EgressPolicy, EgressRequest};
//!
//! // Once, at start, from the service's `[egress]` table.
//! let client = EgressClient::new(EgressPolicy::default())?;
//!
//! // When a tenant configures a custom provider: refuse internal targets now.
//! let token_url: reqwest::Url = "https://auth.example.com/oauth/token".parse()?;
//! client.check_url(&token_url).await?;
//!
//! // When calling it: checked again against the addresses connected to.
//! let response = client
//!     .send(EgressRequest::post(token_url).form([("grant_type", "client_credentials")]))
//!     .await?;
//! if response.status.is_success() {
//!     let _token: serde_json::Value = serde_json::from_slice(&response.body)?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Tests that talk to a server on loopback allow-list it:
//! `EgressPolicy { allow_cidrs: vec!["127.0.0.0/8".into()], ..Default::default() }`.

mod address;
mod client;
mod error;
mod policy;
mod stream;

#[cfg(test)]
mod tests;

pub use address::forbidden_range;
pub use client::{EgressClient, EgressRequest, EgressResponse};
pub use error::{EgressError, ErrorKind, Refusal};
pub use policy::{EgressPolicy, PolicyError};
pub use stream::{EgressStream, StreamLimits};
