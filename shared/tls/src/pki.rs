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
    KeyUsagePurpose, PublicKeyData, SanType,
};
use secrecy::{ExposeSecret, SecretString};
use time::{Duration, OffsetDateTime};

use crate::{Identity, ServiceName, TlsError, TlsFiles, TlsMaterial, cert};

/// The CA's files in a PKI directory.
pub(crate) const CA_CERT: &str = "ca.pem";
pub(crate) const CA_KEY: &str = "ca-key.pem";

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
    /// A new self-signed CA valid from `now` (backdated an hour for clock
    /// skew) for ten years. It may sign leaves only (path length 0).
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

    /// A CA from its PEM certificate and key. Refuses a certificate that is
    /// not a CA and a key that is not the certificate's: either would sign
    /// leaves that no one can verify.
    pub fn from_pem(cert_pem: &str, key_pem: &SecretString) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem.expose_secret())?;
        let der = cert::pem_certs(cert_pem)
            .map_err(|reason| TlsError::BadCertificate(format!("CA: {reason}")))?;
        let first = der
            .first()
            .ok_or_else(|| TlsError::BadCertificate("CA: no certificate".into()))?;
        let parsed = cert::parse(first)?;
        if !parsed.is_ca() {
            return Err(TlsError::BadCertificate(
                "CA: certificate is not a CA (basicConstraints CA:false)".into(),
            ));
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(TlsError::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(first, key)?;
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

    /// A leaf certificate for `identity`, usable as both TLS server and client,
    /// valid from `now` (backdated an hour) for `validity`. Services also get
    /// DNS SANs `localhost` and `<service>.locksmith.internal` and the loopback
    /// addresses, so they can serve on any of them.
    pub fn issue(
        &self,
        identity: &Identity,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<IssuedCertificate, TlsError> {
        // `Identity::Workload` has public fields; never sign a URI that
        // `Identity::from_cert_der` would later refuse.
        let uri = identity.uri();
        Identity::parse_uri(&uri)?;
        if !validity.is_positive() {
            return Err(TlsError::BadCertificate("validity must be positive".into()));
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, &uri);
        let mut sans = vec![SanType::URI(uri.try_into()?)];
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

    /// Whether `files` hold a certificate for `identity` that this CA issued,
    /// that is valid at `now`, and whose key is present and matches.
    fn still_good(&self, files: &TlsFiles, identity: &Identity, now: OffsetDateTime) -> bool {
        let (Ok(cert_pem), Ok(key_pem)) = (read(&files.cert), read(&files.key)) else {
            return false;
        };
        let material =
            TlsMaterial::from_pems(self.cert_pem.clone(), cert_pem, SecretString::from(key_pem));
        matches!(material.check(now), Ok(found) if found == *identity)
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

/// Replaces `path` with `contents` atomically: written to a sibling temporary
/// file first, created with its final mode (0600 for private keys, so a key
/// is never readable by others, not even briefly), then renamed over `path`.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(contents.as_bytes()).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(io_err(path))
}

fn write_pair(files: &TlsFiles, issued: &IssuedCertificate) -> Result<(), TlsError> {
    write_file(&files.key, issued.key_pem.expose_secret(), true)?;
    write_file(&files.cert, &issued.cert_pem, false)
}

fn load_ca(dir: &Path) -> Result<CertificateAuthority, TlsError> {
    let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let key_pem = SecretString::from(read(&key)?);
    CertificateAuthority::from_pem(&read(&cert)?, &key_pem).map_err(|e| TlsError::BadFile {
        path: cert,
        reason: e.to_string(),
    })
}

/// Creates the dev PKI in `dir` (mode 0700), idempotently: `ca.pem`/`ca-key.pem`
/// and `<service>.pem`/`<service>-key.pem` for every service. An existing CA
/// is reused. An existing service certificate is kept unless `force`, or
/// unless it is no longer usable at `now` (expired, issued by another CA,
/// key missing or mismatched), which would only fail later at a handshake.
/// Half a CA (certificate without key or the reverse) is an error rather
/// than silently replaced, since replacing a CA invalidates every issued
/// certificate.
pub fn init_dir(dir: &Path, now: OffsetDateTime, force: bool) -> Result<InitReport, TlsError> {
    make_dir(dir)?;
    let mut report = InitReport::default();
    let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let ca = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => {
            let ca = load_ca(dir)?;
            report.kept.extend([ca_cert, ca_key]);
            ca
        }
        (false, false) => {
            let ca = CertificateAuthority::generate("Locksmith dev CA", now)?;
            write_file(&ca_key, ca.key_pem().expose_secret(), true)?;
            write_file(&ca_cert, ca.cert_pem(), false)?;
            report.written.extend([ca_cert, ca_key]);
            ca
        }
        (present, _) => {
            let (missing, other) = if present {
                (ca_key, CA_CERT)
            } else {
                (ca_cert, CA_KEY)
            };
            return Err(TlsError::BadFile {
                path: missing,
                reason: format!(
                    "missing while {other} exists; refusing to replace the CA (remove both to start over)"
                ),
            });
        }
    };
    for service in ServiceName::ALL {
        let files = TlsFiles::in_dir(dir, *service);
        let identity = Identity::Service(*service);
        if !force && ca.still_good(&files, &identity, now) {
            report.kept.extend([files.cert, files.key]);
            continue;
        }
        let issued = ca.issue(&identity, now, LEAF_VALIDITY)?;
        write_pair(&files, &issued)?;
        report.written.extend([files.cert, files.key]);
    }
    Ok(report)
}

/// Issues `spiffe://locksmith/tenant/{tenant}/workload/{name}` with the CA in
/// `dir`, written to `dir/workloads/{tenant}/{name}.pem` and `{name}-key.pem`
/// (see [`TlsFiles::for_workload`]), replacing any previous pair. Returns the
/// certificate's path.
pub fn issue_workload(
    dir: &Path,
    tenant: &str,
    name: &str,
    now: OffsetDateTime,
) -> Result<PathBuf, TlsError> {
    let identity = Identity::workload(tenant, name)?;
    let files = TlsFiles::for_workload(dir, tenant, name)?;
    let ca = load_ca(dir)?;
    if let Some(parent) = files.cert.parent() {
        make_dir(parent)?;
    }
    let issued = ca.issue(&identity, now, LEAF_VALIDITY)?;
    write_pair(&files, &issued)?;
    Ok(files.cert)
}

#[cfg(test)]
mod tests;
