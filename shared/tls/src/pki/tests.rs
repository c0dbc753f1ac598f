use std::os::unix::fs::PermissionsExt;

use super::*;

fn der(pem_text: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).unwrap();
    pem.contents
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn issued_certificates_carry_their_identity_and_validity() {
    let now = at(1_800_000_000);
    let ca = CertificateAuthority::generate("test CA", now).unwrap();
    for id in [
        Identity::workload("acme", "billing").unwrap(),
        Identity::Service(ServiceName::CredentialStore),
    ] {
        let leaf = ca.issue(&id, now, Duration::days(2)).unwrap();
        let der = der(&leaf.cert_pem);
        assert_eq!(Identity::from_cert_der(&der).unwrap(), id);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        assert_eq!(
            cert.validity().not_after.timestamp(),
            (now + Duration::days(2)).unix_timestamp()
        );
        assert_eq!(
            cert.validity().not_before.timestamp(),
            (now - Duration::hours(1)).unix_timestamp()
        );
    }
    // A CA certificate has no Locksmith identity.
    assert!(Identity::from_cert_der(&der(ca.cert_pem())).is_err());
    // Neither malformed workload identities nor empty windows are signed.
    let sneaky = Identity::Workload {
        tenant: "../etc".into(),
        name: "x".into(),
    };
    assert!(ca.issue(&sneaky, now, LEAF_VALIDITY).is_err());
    let edge = Identity::Service(ServiceName::Edge);
    assert!(ca.issue(&edge, now, Duration::ZERO).is_err());
}

#[test]
fn a_ca_round_trips_through_pem_and_refuses_a_foreign_key() {
    let now = at(1_800_000_000);
    let ca = CertificateAuthority::generate("test CA", now).unwrap();
    let again = CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
    let leaf = again
        .issue(&Identity::Service(ServiceName::Edge), now, LEAF_VALIDITY)
        .unwrap();
    let material = TlsMaterial::from_pems(ca.cert_pem().into(), leaf.cert_pem, leaf.key_pem);
    assert_eq!(
        material.check(now).unwrap(),
        Identity::Service(ServiceName::Edge)
    );

    let other = CertificateAuthority::generate("other CA", now).unwrap();
    assert!(matches!(
        CertificateAuthority::from_pem(ca.cert_pem(), other.key_pem()),
        Err(TlsError::KeyMismatch)
    ));
    let leaf = ca
        .issue(&Identity::Service(ServiceName::Edge), now, LEAF_VALIDITY)
        .unwrap();
    let err = CertificateAuthority::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn init_dir_is_idempotent_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let now = at(1_800_000_000);
    let first = init_dir(&pki, now, false).unwrap();
    assert_eq!(first.written.len(), 2 + 2 * ServiceName::ALL.len());
    assert!(first.kept.is_empty());
    assert_eq!(mode(&pki), 0o700);
    for path in &first.written {
        let private = path.to_string_lossy().ends_with("-key.pem");
        let want = if private { 0o600 } else { 0o644 };
        assert_eq!(mode(path) & 0o700, want & 0o700, "{}", path.display());
        if private {
            assert_eq!(mode(path), 0o600, "{}", path.display());
        }
    }
    let edge_before = read(&pki.join("edge.pem")).unwrap();
    let second = init_dir(&pki, now + Duration::days(1), false).unwrap();
    assert!(second.written.is_empty(), "{second:?}");
    assert_eq!(second.kept.len(), first.written.len());
    assert_eq!(read(&pki.join("edge.pem")).unwrap(), edge_before);

    let forced = init_dir(&pki, now, true).unwrap();
    assert_eq!(forced.written.len(), 2 * ServiceName::ALL.len());
    assert_eq!(forced.kept.len(), 2, "the CA is kept");
    assert_ne!(read(&pki.join("edge.pem")).unwrap(), edge_before);
    assert_eq!(mode(&pki.join("edge-key.pem")), 0o600);
    assert!(
        fs::read_dir(&pki).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
}

#[test]
fn init_dir_replaces_only_unusable_service_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let now = at(1_800_000_000);
    init_dir(dir.path(), now, false).unwrap();

    // A year and a day later every service certificate has expired.
    let later = now + LEAF_VALIDITY + Duration::days(1);
    let report = init_dir(dir.path(), later, false).unwrap();
    assert_eq!(report.written.len(), 2 * ServiceName::ALL.len());

    // A lost key or a certificate from another CA is reissued; the rest kept.
    fs::remove_file(dir.path().join("broker-key.pem")).unwrap();
    let rogue = CertificateAuthority::generate("rogue", later).unwrap();
    let foreign = rogue
        .issue(&Identity::Service(ServiceName::Proxy), later, LEAF_VALIDITY)
        .unwrap();
    fs::write(dir.path().join("proxy.pem"), &foreign.cert_pem).unwrap();
    let report = init_dir(dir.path(), later, false).unwrap();
    let names: Vec<_> = report
        .written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["broker.pem", "broker-key.pem", "proxy.pem", "proxy-key.pem"]
    );
}

#[test]
fn half_a_ca_is_an_error_not_a_new_ca() {
    let dir = tempfile::tempdir().unwrap();
    let now = at(1_800_000_000);
    init_dir(dir.path(), now, false).unwrap();
    let ca_before = read(&dir.path().join("ca.pem")).unwrap();
    fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
    let err = init_dir(dir.path(), now, true).unwrap_err();
    assert!(err.to_string().contains("ca-key.pem"), "{err}");
    assert_eq!(read(&dir.path().join("ca.pem")).unwrap(), ca_before);
}

#[test]
fn workload_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    init_dir(dir.path(), now, false).unwrap();
    let cert = issue_workload(dir.path(), "acme", "billing", now).unwrap();
    assert_eq!(cert, dir.path().join("workloads/acme/billing.pem"));
    let files = TlsFiles::for_workload(dir.path(), "acme", "billing").unwrap();
    assert_eq!(files.cert, cert);
    assert_eq!(mode(&files.key), 0o600);
    assert_eq!(mode(&dir.path().join("workloads/acme")), 0o700);
    let id = Identity::from_cert_der(&der(&read(&cert).unwrap())).unwrap();
    assert_eq!(id.uri(), "spiffe://locksmith/tenant/acme/workload/billing");
    assert_eq!(files.load().unwrap().check(now).unwrap(), id);
    for (tenant, name) in [
        ("../etc", "x"),
        ("acme", "../x"),
        ("Acme", "x"),
        ("acme", ""),
    ] {
        assert!(issue_workload(dir.path(), tenant, name, now).is_err());
    }
    let empty = tempfile::tempdir().unwrap();
    let err = issue_workload(empty.path(), "acme", "billing", now).unwrap_err();
    assert!(err.to_string().contains("ca-key.pem"), "{err}");
}

#[test]
fn debug_output_redacts_keys() {
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate("test CA", now).unwrap();
    let leaf = ca
        .issue(&Identity::Service(ServiceName::Edge), now, LEAF_VALIDITY)
        .unwrap();
    let material = TlsMaterial::from_pems(
        ca.cert_pem().into(),
        leaf.cert_pem.clone(),
        leaf.key_pem.clone(),
    );
    for text in [
        format!("{ca:?}"),
        format!("{leaf:?}"),
        format!("{material:?}"),
    ] {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let key_line = leaf.key_pem.expose_secret().lines().nth(1).unwrap();
        assert!(!text.contains(key_line), "{text}");
    }
}
