//! The proxy's configuration (see `deploy/config/proxy.toml`). Loaded by
//! `locksmith_config::load` (TOML, then `LOCKSMITH_*` overrides); unknown
//! keys are errors; [`ProxyConfig::check`] refuses what serde cannot.

use std::{net::SocketAddr, num::NonZeroU32, path::PathBuf, time::Duration};

use locksmith_egress::EgressPolicy;
use locksmith_tls::TlsFiles;
use serde::Deserialize;

use crate::{access::CacheConfig, forward::UpstreamConfig, limits::LimitsConfig};

/// Everything the proxy process needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// gRPC listen address (mTLS).
    pub listen: SocketAddr,
    /// The service's certificate, key and the suite CA.
    pub tls: TlsFiles,
    /// The services the proxy calls.
    pub services: Services,
    /// The egress guard for every call to an API: no internal address
    /// after DNS unless allow-listed, no redirect followed. Its
    /// `max_response_bytes` and `timeout_ms` do not apply to proxied calls
    /// (`[upstream]` bounds them); `connect_timeout_ms` does.
    #[serde(default)]
    pub egress: EgressPolicy,
    /// Bounds on calls to APIs.
    #[serde(default)]
    pub upstream: UpstreamSection,
    /// Retries of idempotent calls.
    #[serde(default)]
    pub retry: RetrySection,
    /// The credential cache.
    #[serde(default)]
    pub cache: CacheSection,
    /// Per-tenant rate limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The audit trail.
    pub audit: AuditSection,
}

/// `[services]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// The broker: credentials (GetAccessToken) and their refresh.
    pub broker: Endpoint,
    /// The registry: tenants' quotas and status.
    pub registry: Endpoint,
}

/// One service's address.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `https://host:port`.
    pub url: String,
    /// Name checked against the service certificate's DNS SANs.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

fn default_server_name() -> String {
    "localhost".to_owned()
}

/// `[upstream]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSection {
    /// From sending one attempt to the API's response head.
    pub head_timeout_ms: u64,
    /// Longest pause between two chunks of a response body.
    pub idle_timeout_ms: u64,
    /// A whole unary call; a streamed call up to its response head.
    pub total_timeout_ms: u64,
    /// Longest response body passed back; 0: no cap.
    pub max_response_bytes: u64,
    /// Largest body a unary Call carries each way.
    pub max_unary_bytes: u64,
    /// Streamed request bodies up to this size are buffered so they can be
    /// sent again (retries, the retry after a 401).
    pub replay_buffer_bytes: usize,
}

impl Default for UpstreamSection {
    fn default() -> Self {
        let d = UpstreamConfig::default();
        Self {
            head_timeout_ms: millis(d.head_timeout),
            idle_timeout_ms: millis(d.idle_timeout),
            total_timeout_ms: millis(d.total_timeout),
            max_response_bytes: 0,
            max_unary_bytes: d.max_unary_bytes,
            replay_buffer_bytes: d.replay_buffer_bytes,
        }
    }
}

/// `[retry]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// Attempts per idempotent call on 429/502/503/504 or an unreachable
    /// API (1: no retry).
    pub max_attempts: u32,
    /// First backoff without `Retry-After`; doubled per retry.
    pub backoff_base_ms: u64,
    /// Longest `Retry-After` waited for.
    pub max_retry_after_ms: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        let d = UpstreamConfig::default();
        Self {
            max_attempts: d.max_attempts,
            backoff_base_ms: millis(d.backoff_base),
            max_retry_after_ms: millis(d.max_retry_after),
        }
    }
}

/// `[cache]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    /// Longest a credential is used after it was fetched: bounds how long a
    /// revoked key or deleted connection keeps working through a replica.
    pub max_age_ms: u64,
    /// A credential is refetched this long before it expires.
    pub expiry_margin_ms: u64,
    /// Most connections cached.
    pub max_entries: usize,
}

impl Default for CacheSection {
    fn default() -> Self {
        let d = CacheConfig::default();
        Self {
            max_age_ms: millis(d.max_age),
            expiry_margin_ms: millis(d.expiry_margin),
            max_entries: d.max_entries,
        }
    }
}

/// `[limits]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Rate for tenants whose quota is 0.
    pub default_requests_per_minute: NonZeroU32,
    /// How long a tenant's quota and status are trusted.
    pub quota_ttl_ms: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let d = LimitsConfig::default();
        Self {
            default_requests_per_minute: d.default_requests_per_minute,
            quota_ttl_ms: millis(d.quota_ttl),
        }
    }
}

/// `[audit]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// JSON-lines file the events are appended to (created if absent).
    pub path: PathBuf,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ProxyConfig {
    /// Refuses settings that cannot work, naming the key.
    pub fn check(&self) -> Result<(), String> {
        let u = &self.upstream;
        for (key, value) in [
            ("upstream.head_timeout_ms", u.head_timeout_ms),
            ("upstream.idle_timeout_ms", u.idle_timeout_ms),
            ("upstream.total_timeout_ms", u.total_timeout_ms),
            ("upstream.max_unary_bytes", u.max_unary_bytes),
            ("cache.max_age_ms", self.cache.max_age_ms),
        ] {
            if value == 0 {
                return Err(format!("{key} must be more than 0"));
            }
        }
        if self.retry.max_attempts == 0 {
            return Err("retry.max_attempts must be at least 1".into());
        }
        if u.max_unary_bytes > 64 * 1024 * 1024 {
            return Err("upstream.max_unary_bytes must be at most 64 MiB (use StreamCall)".into());
        }
        Ok(())
    }

    /// `[upstream]` and `[retry]` as the forwarder takes them.
    pub fn upstream(&self) -> UpstreamConfig {
        let (u, r) = (&self.upstream, &self.retry);
        UpstreamConfig {
            head_timeout: Duration::from_millis(u.head_timeout_ms),
            idle_timeout: Duration::from_millis(u.idle_timeout_ms),
            total_timeout: Duration::from_millis(u.total_timeout_ms),
            max_response_bytes: if u.max_response_bytes == 0 {
                u64::MAX
            } else {
                u.max_response_bytes
            },
            max_unary_bytes: u.max_unary_bytes,
            replay_buffer_bytes: u.replay_buffer_bytes,
            max_attempts: r.max_attempts,
            backoff_base: Duration::from_millis(r.backoff_base_ms),
            max_retry_after: Duration::from_millis(r.max_retry_after_ms),
        }
    }

    /// `[cache]` as the access cache takes it.
    pub fn cache(&self) -> CacheConfig {
        CacheConfig {
            max_age: Duration::from_millis(self.cache.max_age_ms),
            expiry_margin: Duration::from_millis(self.cache.expiry_margin_ms),
            max_entries: self.cache.max_entries,
        }
    }

    /// `[limits]` as the tenant limits take it.
    pub fn limits(&self) -> LimitsConfig {
        LimitsConfig {
            default_requests_per_minute: self.limits.default_requests_per_minute,
            quota_ttl: Duration::from_millis(self.limits.quota_ttl_ms),
        }
    }
}
