//! Loading a service's TLS files and turning them into tonic configs.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity, ServerTlsConfig};

use crate::{Identity, ServiceName, TlsError, cert, pki::CA_CERT};

/// Where a service's TLS material lives (a config section).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The suite CA certificate.
    pub ca: PathBuf,
    /// This process's certificate.
    pub cert: PathBuf,
    /// This process's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `locksmith pki init` writes for `service` into `dir`.
    pub fn in_dir(dir: &Path, service: ServiceName) -> Self {
        Self {
            ca: dir.join(CA_CERT),
            cert: dir.join(format!("{service}.pem")),
            key: dir.join(format!("{service}-key.pem")),
        }
    }

    /// The files `locksmith pki issue` writes for a tenant's workload:
    /// `dir/workloads/{tenant}/{name}.pem` and `{name}-key.pem`. Both names
    /// must be slugs, which also keeps them from escaping `dir`.
    pub fn for_workload(dir: &Path, tenant: &str, name: &str) -> Result<Self, TlsError> {
        Identity::workload(tenant, name)?;
        let out = dir.join("workloads").join(tenant);
        Ok(Self {
            ca: dir.join(CA_CERT),
            cert: out.join(format!("{name}.pem")),
            key: out.join(format!("{name}-key.pem")),
        })
    }

    /// What a service does at start: [`load`](Self::load), then
    /// [`TlsMaterial::check`] at `now`, then insist the certificate names
    /// `service`. A swapped, expired or foreign certificate stops the process
    /// with a clear error instead of failing every call later.
    pub fn load_for_service(
        &self,
        service: ServiceName,
        now: OffsetDateTime,
    ) -> Result<TlsMaterial, TlsError> {
        let material = self.load()?;
        let identity = material.check(now)?;
        let expected = Identity::Service(service);
        if identity != expected {
            return Err(TlsError::BadCertificate(format!(
                "{} holds a certificate for {identity}, not {expected}",
                self.cert.display()
            )));
        }
        Ok(material)
    }

    /// Reads the three files and checks each holds the right kind of PEM
    /// (tonic would otherwise fail later without saying which file, or, for
    /// a bad CA file, silently trust nothing). Errors name the file, never
    /// its contents. See [`TlsMaterial::check`] for the semantic checks.
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TlsError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let bad = |path: &Path, reason: &str| TlsError::BadFile {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let ca_pem = read(&self.ca)?;
        cert::pem_certs(&ca_pem).map_err(|r| bad(&self.ca, r))?;
        let cert_pem = read(&self.cert)?;
        cert::pem_certs(&cert_pem).map_err(|r| bad(&self.cert, r))?;
        let key_pem = SecretString::from(read(&self.key)?);
        cert::pem_key(key_pem.expose_secret()).map_err(|r| bad(&self.key, r))?;
        Ok(TlsMaterial {
            ca_pem,
            cert_pem,
            key_pem,
        })
    }
}

/// A process's TLS material in memory.
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: String,
    cert_pem: String,
    key_pem: SecretString,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Material from PEM strings.
    pub fn from_pems(ca_pem: String, cert_pem: String, key_pem: SecretString) -> Self {
        Self {
            ca_pem,
            cert_pem,
            key_pem,
        }
    }

    /// Checks the material makes sense together at `now` and returns whose it
    /// is: the first certificate carries a Locksmith identity, is valid at
    /// `now`, was signed by the CA, and the private key is its key. Call it at
    /// startup (and refuse to start as the wrong service): each of these
    /// otherwise shows up only as an opaque handshake failure at the peer.
    pub fn check(&self, now: OffsetDateTime) -> Result<Identity, TlsError> {
        let bad = |what: &str, reason: &str| TlsError::BadCertificate(format!("{what}: {reason}"));
        let ca_der = cert::pem_certs(&self.ca_pem).map_err(|r| bad("CA", r))?;
        let chain = cert::pem_certs(&self.cert_pem).map_err(|r| bad("certificate", r))?;
        let leaf_der = chain
            .first()
            .ok_or_else(|| bad("certificate", "empty chain"))?;
        let identity = Identity::from_cert_der(leaf_der)?;
        let leaf = cert::parse(leaf_der)?;
        cert::check_valid_at(&leaf, now)?;
        let issued_by_ca = ca_der
            .iter()
            .any(|ca| cert::parse(ca).is_ok_and(|ca| cert::issued_by(&leaf, &ca)));
        if !issued_by_ca {
            return Err(bad(
                "certificate",
                "not issued by the suite CA (reissue it: `locksmith pki init --force`)",
            ));
        }
        let key = cert::pem_key(self.key_pem.expose_secret())
            .map_err(|r| TlsError::BadCertificate(format!("private key: {r}")))?;
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
            _ => TlsError::BadCertificate("private key: unsupported or malformed".into()),
        })?;
        Ok(identity)
    }

    fn identity(&self) -> TlsIdentity {
        TlsIdentity::from_pem(&self.cert_pem, self.key_pem.expose_secret())
    }

    /// Server side: present our certificate and verify callers against the
    /// suite CA. Client certificates are optional at the handshake on purpose:
    /// a caller without one then gets a clear UNAUTHENTICATED status from
    /// `MtlsAuthLayer` instead of an opaque TLS alert. A certificate from
    /// another CA still fails the handshake.
    pub fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(true)
    }

    /// Client side: our certificate as client identity, the suite CA as the
    /// only trusted root, and `server_name` checked against the server's SANs.
    pub fn client_tls(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(self.identity())
            .domain_name(server_name)
    }
}

/// Installs rustls' ring provider for the process. Call first thing in every
/// `main` (and in tests); a second call is harmless.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::{CertificateAuthority, LEAF_VALIDITY, init_dir};

    #[test]
    fn a_service_refuses_another_services_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        init_dir(dir.path(), now, false).unwrap();
        let edge_files = TlsFiles::in_dir(dir.path(), ServiceName::Edge);
        assert!(edge_files.load_for_service(ServiceName::Edge, now).is_ok());
        let err = edge_files
            .load_for_service(ServiceName::Registry, now)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spiffe://locksmith/edge, not spiffe://locksmith/registry"),
            "{err}"
        );
        let later = now + Duration::days(400);
        assert!(
            edge_files
                .load_for_service(ServiceName::Edge, later)
                .is_err(),
            "expired"
        );
    }

    #[test]
    fn load_names_the_failing_file_never_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        init_dir(dir.path(), now, false).unwrap();
        let files = TlsFiles::in_dir(dir.path(), ServiceName::Edge);
        assert_eq!(
            files.load().unwrap().check(now).unwrap(),
            Identity::Service(ServiceName::Edge)
        );

        let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz!!\n-----END PRIVATE KEY-----\n";
        std::fs::write(&files.key, secret).unwrap();
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("edge-key.pem"), "{err}");
        assert!(
            !err.contains("c2VjcmV0") && !err.contains("PRIVATE KEY"),
            "{err}"
        );

        std::fs::write(&files.ca, "not a certificate").unwrap();
        let err = files.load().unwrap_err().to_string();
        assert!(
            err.contains("ca.pem") && err.contains("no PEM CERTIFICATE"),
            "{err}"
        );
        assert!(!err.contains("not a certificate"), "{err}");

        let missing = TlsFiles::in_dir(&dir.path().join("nowhere"), ServiceName::Edge);
        assert!(
            missing
                .load()
                .unwrap_err()
                .to_string()
                .contains("nowhere/ca.pem")
        );
    }

    #[test]
    fn check_catches_expiry_foreign_issuers_and_swapped_keys() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ca = CertificateAuthority::generate("suite", now).unwrap();
        let edge = ca
            .issue(
                &Identity::Service(ServiceName::Edge),
                now,
                Duration::days(1),
            )
            .unwrap();
        let proxy = ca
            .issue(&Identity::Service(ServiceName::Proxy), now, LEAF_VALIDITY)
            .unwrap();
        let material = |cert: &str, key: &SecretString| {
            TlsMaterial::from_pems(ca.cert_pem().into(), cert.into(), key.clone())
        };

        let ok = material(&edge.cert_pem, &edge.key_pem);
        assert!(ok.check(now).is_ok());
        assert!(ok.check(now + Duration::hours(23)).is_ok());
        assert!(matches!(
            ok.check(now + Duration::days(2)),
            Err(TlsError::NotValidAt { .. })
        ));
        assert!(matches!(
            ok.check(now - Duration::hours(2)),
            Err(TlsError::NotValidAt { .. })
        ));
        assert!(matches!(
            material(&edge.cert_pem, &proxy.key_pem).check(now),
            Err(TlsError::KeyMismatch)
        ));

        let other = CertificateAuthority::generate("suite", now).unwrap();
        let foreign = other
            .issue(&Identity::Service(ServiceName::Edge), now, LEAF_VALIDITY)
            .unwrap();
        let err = material(&foreign.cert_pem, &foreign.key_pem)
            .check(now)
            .unwrap_err();
        assert!(
            err.to_string().contains("not issued by the suite CA"),
            "{err}"
        );
    }
}
