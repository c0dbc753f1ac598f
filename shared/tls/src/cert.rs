//! Small X.509 helpers shared by the CA and the material checks. They turn
//! the failures that otherwise surface only as an opaque handshake error (a
//! stale certificate from an old CA, an expired leaf, a key from another
//! pair) into errors that say which of those it is.

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, prelude::FromDer, time::ASN1Time};

use crate::TlsError;

/// The certificates in a PEM text, in order. The reason is a fixed string:
/// PEM parser messages can quote bytes of the input.
pub(crate) fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, &'static str> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "malformed PEM")?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE block");
    }
    Ok(certs)
}

/// The private key in a PEM text (PKCS#8, SEC1 or PKCS#1). Never says more
/// than that it failed: the input is secret.
pub(crate) fn pem_key(pem: &str) -> Result<PrivateKeyDer<'static>, &'static str> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| "no PEM private key block")
}

/// Parses one DER certificate.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, TlsError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| TlsError::BadCertificate(format!("does not parse: {e}")))
}

fn to_time(t: ASN1Time) -> Result<OffsetDateTime, TlsError> {
    OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|_| TlsError::BadCertificate("validity date out of range".into()))
}

/// Whether `now` falls inside the certificate's validity window.
pub(crate) fn check_valid_at(
    cert: &X509Certificate<'_>,
    now: OffsetDateTime,
) -> Result<(), TlsError> {
    let not_before = to_time(cert.validity().not_before)?;
    let not_after = to_time(cert.validity().not_after)?;
    if now < not_before || now > not_after {
        return Err(TlsError::NotValidAt {
            now,
            not_before,
            not_after,
        });
    }
    Ok(())
}

/// Whether `leaf` names `ca` as issuer and carries a signature by its key.
pub(crate) fn issued_by(leaf: &X509Certificate<'_>, ca: &X509Certificate<'_>) -> bool {
    leaf.issuer().as_raw() == ca.subject().as_raw()
        && leaf.verify_signature(Some(ca.public_key())).is_ok()
}
