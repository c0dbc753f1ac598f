//! A dev certificate authority: one CA, one certificate per service, and
//! certificates for tenant workloads. Time is passed in, so validity windows
//! are testable.

use std::{
    fmt,
    fs::{self, DirBuilder, OpenOptions},
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use secrecy::{ExposeSecret, SecretString};
use time::{Duration, OffsetDateTime};

use crate::{Identity, ServiceName, TlsError};

/// How long the dev CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long `init_dir` makes service and workload certificates valid.
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// Clock skew tolerated between machines.
const BACKDATE: Duration = Duration::hours(1);

/// The suite CA: its certificate and the key that signs leaves.
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: SecretString,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key, both PEM.
pub struct IssuedCertificate {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: SecretString,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA valid from `now` (backdated an hour) for ten years.
    pub fn generate(common_name: &str, now: OffsetDateTime) -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        let key_pem = SecretString::from(key.serialize_pem());
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &SecretString) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem.expose_secret())?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.clone(),
            issuer,
        })
    }

    /// The CA certificate (what every party trusts).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key.
    pub fn key_pem(&self) -> &SecretString {
        &self.key_pem
    }

    /// A leaf certificate for `identity`, usable as both TLS server and client.
    /// Services also get DNS SANs `localhost` and `<service>.locksmith.internal`
    /// and the loopback addresses, so they can serve on any of them.
    pub fn issue(
        &self,
        identity: &Identity,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<IssuedCertificate, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, identity.uri());
        let mut sans = vec![SanType::URI(identity.uri().try_into()?)];
        if let Identity::Service(service) = identity {
            sans.push(SanType::DnsName("localhost".try_into()?));
            sans.push(SanType::DnsName(
                format!("{service}.locksmith.internal").try_into()?,
            ));
            sans.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            sans.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = now + validity;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: SecretString::from(key.serialize_pem()),
        })
    }
}

/// What [`init_dir`] did.
#[derive(Debug, Default)]
pub struct InitReport {
    /// Files created or replaced.
    pub written: Vec<PathBuf>,
    /// Files that existed and were kept.
    pub kept: Vec<PathBuf>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn make_dir(dir: &Path) -> Result<(), TlsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Writes `contents` to `path`, replacing it; a private key is created with
/// mode 0600 from the start (never written world-readable, then narrowed).
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let mut options = OpenOptions::new();
    options
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 });
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(contents.as_bytes()).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(io_err(path))
}

fn write_pair(
    cert_path: &Path,
    key_path: &Path,
    issued: &IssuedCertificate,
) -> Result<(), TlsError> {
    write_file(key_path, issued.key_pem.expose_secret(), true)?;
    write_file(cert_path, &issued.cert_pem, false)
}

fn load_ca(dir: &Path) -> Result<CertificateAuthority, TlsError> {
    let key = SecretString::from(read(&dir.join("ca-key.pem"))?);
    CertificateAuthority::from_pem(&read(&dir.join("ca.pem"))?, &key)
}

/// Creates the dev PKI in `dir`, idempotently: `ca.pem`/`ca-key.pem` and
/// `<service>.pem`/`<service>-key.pem` for every service. An existing CA is
/// reused and existing service certificates kept, unless `force`; a new CA
/// always reissues every service certificate.
pub fn init_dir(dir: &Path, now: OffsetDateTime, force: bool) -> Result<InitReport, TlsError> {
    make_dir(dir)?;
    let mut report = InitReport::default();
    let (ca_cert, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let new_ca = !(ca_cert.exists() && ca_key.exists());
    let ca = if new_ca {
        let ca = CertificateAuthority::generate("Locksmith dev CA", now)?;
        write_file(&ca_key, ca.key_pem().expose_secret(), true)?;
        write_file(&ca_cert, ca.cert_pem(), false)?;
        report.written.extend([ca_cert, ca_key]);
        ca
    } else {
        report.kept.extend([ca_cert, ca_key]);
        load_ca(dir)?
    };
    for service in ServiceName::ALL {
        let cert = dir.join(format!("{service}.pem"));
        let key = dir.join(format!("{service}-key.pem"));
        if !force && !new_ca && cert.exists() && key.exists() {
            report.kept.extend([cert, key]);
            continue;
        }
        let issued = ca.issue(&Identity::Service(*service), now, LEAF_VALIDITY)?;
        write_pair(&cert, &key, &issued)?;
        report.written.extend([cert, key]);
    }
    Ok(report)
}

/// Issues `spiffe://locksmith/tenant/{tenant}/workload/{name}` with the CA in
/// `dir`, written to `dir/workloads/{tenant}/{name}.pem` and `{name}-key.pem`.
/// Returns the certificate's path.
pub fn issue_workload(
    dir: &Path,
    tenant: &str,
    name: &str,
    now: OffsetDateTime,
) -> Result<PathBuf, TlsError> {
    let identity = Identity::workload(tenant, name)?;
    let ca = load_ca(dir)?;
    let out = dir.join("workloads").join(tenant);
    make_dir(&out)?;
    let issued = ca.issue(&identity, now, LEAF_VALIDITY)?;
    let cert = out.join(format!("{name}.pem"));
    write_pair(&cert, &out.join(format!("{name}-key.pem")), &issued)?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn der(pem_text: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).unwrap();
        pem.contents
    }

    #[test]
    fn issued_certificates_carry_their_identity_and_validity() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ca = CertificateAuthority::generate("test CA", now).unwrap();
        let id = Identity::workload("acme", "billing").unwrap();
        let leaf = ca.issue(&id, now, Duration::days(2)).unwrap();
        let der = der(&leaf.cert_pem);
        assert_eq!(Identity::from_cert_der(&der).unwrap(), id);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.validity().not_after.timestamp(),
            (now + Duration::days(2)).unix_timestamp()
        );
        // A CA certificate has no Locksmith identity.
        assert!(Identity::from_cert_der(&self::der(ca.cert_pem())).is_err());
    }

    #[test]
    fn init_dir_is_idempotent_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let first = init_dir(dir.path(), now, false).unwrap();
        assert_eq!(first.written.len(), 2 + 2 * ServiceName::ALL.len());
        for path in first
            .written
            .iter()
            .filter(|p| p.to_string_lossy().ends_with("-key.pem"))
        {
            assert_eq!(
                fs::metadata(path).unwrap().permissions().mode() & 0o777,
                0o600,
                "{}",
                path.display()
            );
        }
        let edge_before = read(&dir.path().join("edge.pem")).unwrap();
        let second = init_dir(dir.path(), now, false).unwrap();
        assert!(second.written.is_empty());
        assert_eq!(read(&dir.path().join("edge.pem")).unwrap(), edge_before);
        let forced = init_dir(dir.path(), now, true).unwrap();
        assert_eq!(
            forced.written.len(),
            2 * ServiceName::ALL.len(),
            "CA kept, leaves reissued"
        );
        assert_ne!(read(&dir.path().join("edge.pem")).unwrap(), edge_before);
    }

    #[test]
    fn workload_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        init_dir(dir.path(), now, false).unwrap();
        let cert = issue_workload(dir.path(), "acme", "billing", now).unwrap();
        let id = Identity::from_cert_der(&der(&read(&cert).unwrap())).unwrap();
        assert_eq!(id.uri(), "spiffe://locksmith/tenant/acme/workload/billing");
        assert!(issue_workload(dir.path(), "../etc", "x", now).is_err());
    }

    #[test]
    fn debug_output_redacts_keys() {
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::generate("test CA", now).unwrap();
        let leaf = ca
            .issue(&Identity::Service(ServiceName::Edge), now, LEAF_VALIDITY)
            .unwrap();
        for text in [format!("{ca:?}"), format!("{leaf:?}")] {
            assert!(!text.contains("PRIVATE KEY"), "{text}");
        }
    }
}
