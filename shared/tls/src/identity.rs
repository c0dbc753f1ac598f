//! SPIFFE-style identities carried in a certificate's URI SAN.

use std::{fmt, str::FromStr};

use x509_parser::{extensions::GeneralName, prelude::FromDer};

use crate::TlsError;

const PREFIX: &str = "spiffe://locksmith/";

/// The suite's services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceName {
    /// Tenant registry.
    Registry,
    /// Credential store.
    CredentialStore,
    /// OAuth broker.
    Broker,
    /// Token proxy.
    Proxy,
    /// HTTP edge.
    Edge,
    /// The operator's `locksmith` command (holds the PKI directory, so it is
    /// as trusted as the operator).
    Cli,
}

impl ServiceName {
    /// Every service, in start order.
    pub const ALL: &'static [ServiceName] = &[
        ServiceName::Registry,
        ServiceName::CredentialStore,
        ServiceName::Broker,
        ServiceName::Proxy,
        ServiceName::Edge,
        ServiceName::Cli,
    ];

    /// Name in URIs and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Registry => "registry",
            ServiceName::CredentialStore => "credstore",
            ServiceName::Broker => "broker",
            ServiceName::Proxy => "proxy",
            ServiceName::Edge => "edge",
            ServiceName::Cli => "cli",
        }
    }
}

impl FromStr for ServiceName {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, TlsError> {
        ServiceName::ALL
            .iter()
            .copied()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                TlsError::BadIdentity(format!("unknown service '{}'", s.escape_default()))
            })
    }
}

impl serde::Serialize for ServiceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ServiceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse()
            .map_err(|_| serde::de::Error::custom("unknown service name"))
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// One of the suite's services.
    Service(ServiceName),
    /// A tenant's own workload, confined to that tenant.
    Workload {
        /// The tenant.
        tenant: String,
        /// The workload's name.
        name: String,
    },
}

/// Same grammar as tenant ids: `[a-z0-9][a-z0-9-]{0,62}`.
fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl Identity {
    /// The URI SAN for this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Service(s) => format!("{PREFIX}{s}"),
            Identity::Workload { tenant, name } => {
                format!("{PREFIX}tenant/{tenant}/workload/{name}")
            }
        }
    }

    /// The tenant a workload is confined to; `None` for suite services.
    /// Handlers that admit [`crate::Allowed::AnyWorkload`] use this to keep a
    /// workload inside its own tenant.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Identity::Service(_) => None,
            Identity::Workload { tenant, .. } => Some(tenant),
        }
    }

    /// A workload identity, if both parts are slugs (which also keeps them
    /// safe as path components and URI segments).
    pub fn workload(tenant: &str, name: &str) -> Result<Self, TlsError> {
        if is_slug(tenant) && is_slug(name) {
            Ok(Identity::Workload {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            })
        } else {
            Err(TlsError::BadIdentity(
                "tenant and workload names must match [a-z0-9][a-z0-9-]{0,62}".into(),
            ))
        }
    }

    /// Parses `spiffe://locksmith/<service>` or
    /// `spiffe://locksmith/tenant/{t}/workload/{name}`; nothing else.
    pub fn parse_uri(uri: &str) -> Result<Self, TlsError> {
        let rest = uri
            .strip_prefix(PREFIX)
            .ok_or_else(|| TlsError::BadIdentity(format!("URI must start with {PREFIX}")))?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [service] => Ok(Identity::Service(service.parse()?)),
            ["tenant", tenant, "workload", name] => Identity::workload(tenant, name),
            _ => Err(TlsError::BadIdentity(
                "expected spiffe://locksmith/<service> or spiffe://locksmith/tenant/<t>/workload/<name>".into(),
            )),
        }
    }

    /// The identity of a DER certificate: exactly one `spiffe://locksmith/` URI SAN.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| TlsError::BadCertificate(format!("does not parse: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::BadCertificate(format!("bad subjectAltName: {e}")))?
            .ok_or_else(|| TlsError::BadCertificate("no subjectAltName".into()))?;
        let mut ours = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) if uri.starts_with(PREFIX) => Some(*uri),
                _ => None,
            });
        match (ours.next(), ours.next()) {
            (Some(uri), None) => Identity::parse_uri(uri),
            (None, _) => Err(TlsError::BadCertificate(format!("no {PREFIX} URI SAN"))),
            (Some(_), Some(_)) => Err(TlsError::BadCertificate(format!(
                "more than one {PREFIX} URI SAN"
            ))),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for id in [
            Identity::Service(ServiceName::Edge),
            Identity::Service(ServiceName::CredentialStore),
            Identity::workload("acme", "billing").unwrap(),
        ] {
            assert_eq!(Identity::parse_uri(&id.uri()).unwrap(), id);
            assert_eq!(id.to_string(), id.uri());
        }
        for service in ServiceName::ALL {
            assert_eq!(service.as_str().parse::<ServiceName>().unwrap(), *service);
        }
        assert_eq!(
            Identity::parse_uri("spiffe://locksmith/tenant/acme/workload/billing-2")
                .unwrap()
                .tenant(),
            Some("acme")
        );
        assert_eq!(
            Identity::Service(ServiceName::Registry).uri(),
            "spiffe://locksmith/registry"
        );
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "spiffe://locksmith/",
            "spiffe://other/edge",
            "spiffe://locksmith/nobody",
            "spiffe://locksmith/edge/",
            "spiffe://locksmith/tenant/A/workload/x",
            "spiffe://locksmith/tenant/../workload/x",
            "spiffe://locksmith/tenant/t/workload/x/y",
            "spiffe://locksmith/tenant/t/workload/",
            "https://locksmith/edge",
            "SPIFFE://locksmith/edge",
            "spiffe://locksmith/Edge",
            "spiffe://locksmith//edge",
            "spiffe://locksmith/edge?x=1",
            "spiffe://locksmith/tenant/-acme/workload/x",
            "spiffe://locksmith/tenant/acme/workload/x%2F",
            "spiffe://locksmith/tenant/acme/service/x",
            "spiffe://locksmith/../edge",
            " spiffe://locksmith/edge",
        ] {
            assert!(Identity::parse_uri(bad).is_err(), "{bad}");
        }
        let longest = "a".repeat(63);
        assert!(Identity::workload(&longest, &longest).is_ok());
        assert!(Identity::workload(&"a".repeat(64), "x").is_err());
        assert!(Identity::workload("acme", "").is_err());
    }
}
