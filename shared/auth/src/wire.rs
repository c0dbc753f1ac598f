//! How a principal travels between services: one gRPC metadata entry holding
//! base64url JSON. Only suite services may send it (see [`crate::PrincipalLayer`]).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use tonic::metadata::MetadataValue;

use crate::Principal;

/// The metadata key of a forwarded principal.
pub const PRINCIPAL_HEADER: &str = "x-locksmith-principal";

/// Largest encoded principal accepted; a real one is a few hundred bytes.
const MAX_ENCODED_LEN: usize = 2048;
/// Longest audit subject accepted.
const MAX_SUBJECT_LEN: usize = 512;

/// Why a forwarded principal was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Larger than any real principal.
    #[error("the forwarded principal is too large")]
    TooLarge,
    /// Not base64url JSON of a principal.
    #[error("the forwarded principal is malformed")]
    Malformed,
}

impl Principal {
    /// The metadata value carrying this principal.
    pub fn encode(&self) -> String {
        // Serializing a plain enum of strings cannot fail; an empty value
        // would be refused by the receiver rather than misread.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a principal sent by [`Principal::encode`]; tenant ids and roles
    /// are parsed as strictly as anywhere else.
    pub fn decode(value: &[u8]) -> Result<Self, WireError> {
        if value.len() > MAX_ENCODED_LEN {
            return Err(WireError::TooLarge);
        }
        let json = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| WireError::Malformed)?;
        let principal: Principal =
            serde_json::from_slice(&json).map_err(|_| WireError::Malformed)?;
        let subject_ok = match &principal {
            Principal::Operator { subject } | Principal::Tenant { subject, .. } => {
                !subject.is_empty() && subject.len() <= MAX_SUBJECT_LEN
            }
            Principal::Workload { name, .. } => !name.is_empty() && name.len() <= MAX_SUBJECT_LEN,
            Principal::Service { .. } => true,
        };
        if subject_ok {
            Ok(principal)
        } else {
            Err(WireError::Malformed)
        }
    }
}

/// Attaches `principal` to an outgoing call: the edge does this for every
/// caller, and a service calling another on a caller's behalf does it with
/// the principal it received.
pub fn forward<T>(request: &mut tonic::Request<T>, principal: &Principal) {
    // base64url is always a valid metadata value.
    if let Ok(value) = MetadataValue::try_from(principal.encode()) {
        request.metadata_mut().insert(PRINCIPAL_HEADER, value);
    }
}

#[cfg(test)]
mod tests {
    use locksmith_domain::TenantId;
    use locksmith_tls::ServiceName;

    use super::*;
    use crate::{Role, Roles};

    #[test]
    fn round_trips_every_kind() {
        for p in [
            Principal::Operator {
                subject: "api-key:abc".into(),
            },
            Principal::Tenant {
                tenant: TenantId::parse("acme").unwrap(),
                roles: Roles::of([Role::Read, Role::Admin]),
                subject: "jwt:https://issuer.example#u-1 ü".into(),
            },
            Principal::Service {
                service: ServiceName::Proxy,
            },
            Principal::Workload {
                tenant: TenantId::parse("acme").unwrap(),
                name: "billing".into(),
            },
        ] {
            assert_eq!(Principal::decode(p.encode().as_bytes()).unwrap(), p);
        }
    }

    #[test]
    fn refuses_what_is_not_a_principal() {
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            "not base64 !".to_owned(),
            enc("{}"),
            enc(r#"{"kind":"tenant","tenant":"../x","roles":["read"],"subject":"s"}"#),
            enc(r#"{"kind":"tenant","tenant":"acme","roles":["root"],"subject":"s"}"#),
            enc(r#"{"kind":"tenant","tenant":"acme","roles":[],"subject":""}"#),
            enc(r#"{"kind":"operator","subject":"s","extra":1}"#),
            enc(r#"{"kind":"service","service":"nobody"}"#),
        ] {
            assert_eq!(
                Principal::decode(bad.as_bytes()),
                Err(WireError::Malformed),
                "{bad}"
            );
        }
        let huge = "A".repeat(MAX_ENCODED_LEN + 1);
        assert_eq!(Principal::decode(huge.as_bytes()), Err(WireError::TooLarge));
    }

    #[test]
    fn forward_sets_the_header() {
        let p = Principal::Operator {
            subject: "api-key:abc".into(),
        };
        let mut request = tonic::Request::new(());
        forward(&mut request, &p);
        let sent = request.metadata().get(PRINCIPAL_HEADER).unwrap();
        assert_eq!(Principal::decode(sent.as_bytes()).unwrap(), p);
    }
}
