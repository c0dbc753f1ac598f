//! The deployment's egress policy: what it allow-lists and the bounds on
//! every call. Read from a service's TOML like any other table.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::address::unmapped;

/// `[egress]` in a service's configuration. Every field has a default, so
/// an empty table is a strict policy: https only, no internal address.
///
/// ```toml
/// [egress]
/// allow_hosts = ["openid.internal.example"]  # default: none
/// allow_cidrs = ["127.0.0.0/8", "::1"]       # default: none
/// max_response_bytes = 1048576               # default: 1 MiB
/// timeout_ms = 10000                         # default: 10 s, connect + request + body
/// connect_timeout_ms = 3000                  # default: 3 s
/// user_agent = "locksmith-egress/0.1.0"      # default: this crate's name and version
/// ca_files = ["/etc/pki/corp-ca.pem"]        # default: none (the system's roots only)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressPolicy {
    /// Host names (exact, case-insensitive, no port) the deployment trusts
    /// wherever they resolve: their addresses are not checked, and plain
    /// `http` to them is allowed. For internal services the deployment runs
    /// itself; never for anything a tenant controls. IP addresses belong in
    /// `allow_cidrs`.
    pub allow_hosts: Vec<String>,
    /// Networks (`10.1.0.0/16`, or a bare address for a single one) whose
    /// addresses may be connected to although they are internal. An
    /// IPv4-mapped IPv6 address counts as its IPv4 address. Plain `http` is
    /// allowed to a URL whose host is an IP literal in one of them, not to a
    /// host name that merely resolves into one (that needs `allow_hosts`).
    pub allow_cidrs: Vec<String>,
    /// The largest response body accepted; a longer one fails with
    /// `TooLarge` without being read further. Default 1 MiB.
    pub max_response_bytes: u64,
    /// Bound on the whole call: DNS, connect, TLS, request, and reading the
    /// body to its end. Default 10 000 ms.
    pub timeout_ms: u64,
    /// Bound on establishing one TCP connection. Default 3 000 ms.
    pub connect_timeout_ms: u64,
    /// `User-Agent` sent with every request (a request may set its own).
    /// Default `locksmith-egress/<version>`.
    pub user_agent: String,
    /// PEM files of CA certificates trusted for https in addition to the
    /// system's roots: a provider the deployment runs behind a private CA
    /// (a self-hosted GitLab), or the tests' loopback servers. Read when the
    /// client is built; an unreadable or empty file fails then.
    pub ca_files: Vec<PathBuf>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            allow_cidrs: Vec::new(),
            max_response_bytes: 1024 * 1024,
            timeout_ms: 10_000,
            connect_timeout_ms: 3_000,
            user_agent: concat!("locksmith-egress/", env!("CARGO_PKG_VERSION")).to_owned(),
            ca_files: Vec::new(),
        }
    }
}

/// A policy that cannot be used, naming the field and the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An `allow_hosts` entry is not a bare host name.
    #[error("egress allow_hosts entry `{entry}`: {reason}")]
    Host {
        /// The entry as configured.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `allow_cidrs` entry is neither a network nor an address.
    #[error("egress allow_cidrs entry `{0}` is not a network (`10.0.0.0/8`) or an address")]
    Cidr(String),
    /// A bound is zero, which would refuse every call.
    #[error("egress {0} must be greater than zero")]
    Zero(&'static str),
    /// The user agent is not a valid header value.
    #[error("egress user_agent is not a valid header value")]
    UserAgent,
    /// A `ca_files` entry could not be read or holds no PEM certificate.
    #[error("egress ca_files entry `{path}`: {reason}")]
    CaFile {
        /// The file as configured.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (its TLS roots, for one).
    #[error("egress HTTP client: {0}")]
    Client(String),
}

/// The policy in the form the checks use: host names normalised, networks
/// parsed.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
    pub(crate) max_response_bytes: u64,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

/// Lower case, without the root label's trailing dot: `API.Example.com.`
/// and `api.example.com` name the same host.
fn normalise_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

impl Compiled {
    pub(crate) fn new(policy: &EgressPolicy) -> Result<Self, PolicyError> {
        let hosts = policy
            .allow_hosts
            .iter()
            .map(|entry| check_host_entry(entry).map(|()| normalise_host(entry)))
            .collect::<Result<Vec<_>, _>>()?;
        let nets = policy
            .allow_cidrs
            .iter()
            .map(|entry| {
                let entry_trimmed = entry.trim();
                entry_trimmed
                    .parse::<IpNet>()
                    .or_else(|_| entry_trimmed.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| PolicyError::Cidr(entry.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (name, value) in [
            ("max_response_bytes", policy.max_response_bytes),
            ("timeout_ms", policy.timeout_ms),
            ("connect_timeout_ms", policy.connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(PolicyError::Zero(name));
            }
        }
        Ok(Self {
            hosts,
            nets,
            max_response_bytes: policy.max_response_bytes,
            timeout: Duration::from_millis(policy.timeout_ms),
            connect_timeout: Duration::from_millis(policy.connect_timeout_ms),
        })
    }

    /// Whether the deployment trusts this host name wherever it resolves.
    pub(crate) fn host_allowed(&self, host: &str) -> bool {
        self.hosts.contains(&normalise_host(host))
    }

    /// Whether the deployment allow-lists this address.
    pub(crate) fn addr_allowed(&self, addr: IpAddr) -> bool {
        let plain = unmapped(addr);
        self.nets
            .iter()
            .any(|net| net.contains(&addr) || net.contains(&plain))
    }
}

fn check_host_entry(entry: &str) -> Result<(), PolicyError> {
    let reason = if entry.is_empty() {
        Some("is empty")
    } else if entry.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        Some("is an address; list addresses in allow_cidrs")
    } else if !entry
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        Some("is not a bare host name (no scheme, port, path or wildcard)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PolicyError::Host {
            entry: entry.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_is_the_strict_default() {
        let policy: EgressPolicy = toml::from_str("").unwrap();
        assert_eq!(policy, EgressPolicy::default());
        assert!(policy.allow_hosts.is_empty() && policy.allow_cidrs.is_empty());
        assert_eq!(policy.max_response_bytes, 1 << 20);
        assert_eq!(policy.timeout_ms, 10_000);
        assert_eq!(policy.connect_timeout_ms, 3_000);
        assert!(policy.user_agent.starts_with("locksmith-egress/"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<EgressPolicy>("allow_host = [\"x\"]").unwrap_err();
        assert!(err.to_string().contains("allow_host"), "{err}");
    }

    #[test]
    fn entries_are_validated_and_named() {
        let bad_cidr = EgressPolicy {
            allow_cidrs: vec!["10.0.0.0/33".into()],
            ..EgressPolicy::default()
        };
        let err = Compiled::new(&bad_cidr).unwrap_err();
        assert_eq!(err, PolicyError::Cidr("10.0.0.0/33".into()));
        assert!(err.to_string().contains("10.0.0.0/33"));

        for entry in [
            "",
            "127.0.0.1",
            "[::1]",
            "https://x.example",
            "x.example:443",
            "*.example",
        ] {
            let policy = EgressPolicy {
                allow_hosts: vec![entry.into()],
                ..EgressPolicy::default()
            };
            assert!(
                matches!(Compiled::new(&policy), Err(PolicyError::Host { .. })),
                "{entry:?} accepted"
            );
        }
        let zero = EgressPolicy {
            timeout_ms: 0,
            ..EgressPolicy::default()
        };
        assert_eq!(
            Compiled::new(&zero).unwrap_err(),
            PolicyError::Zero("timeout_ms")
        );
    }

    #[test]
    fn allow_lists_match_hosts_and_networks() {
        let policy = EgressPolicy {
            allow_hosts: vec!["OpenBao.Internal.".into()],
            allow_cidrs: vec!["127.0.0.0/8".into(), "fd00::1".into()],
            ..EgressPolicy::default()
        };
        let compiled = Compiled::new(&policy).unwrap();
        assert!(compiled.host_allowed("openbao.internal"));
        assert!(compiled.host_allowed("OPENBAO.internal."));
        assert!(!compiled.host_allowed("bao.internal"));
        assert!(!compiled.host_allowed("openbao.internal.evil.example"));
        for ok in ["127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "fd00::1"] {
            assert!(compiled.addr_allowed(ok.parse().unwrap()), "{ok}");
        }
        for no in ["128.0.0.1", "::1", "fd00::2", "10.0.0.1"] {
            assert!(!compiled.addr_allowed(no.parse().unwrap()), "{no}");
        }
    }
}
