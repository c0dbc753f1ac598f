//! `locksmith pki …`: prints what it did, never key material.

use std::path::Path;

use anyhow::Context;
use time::OffsetDateTime;

pub fn init(dir: &Path, force: bool) -> anyhow::Result<()> {
    let report = locksmith_tls::init_dir(dir, OffsetDateTime::now_utc(), force)
        .with_context(|| format!("creating the PKI in {}", dir.display()))?;
    if report.written.is_empty() {
        println!("pki: certificates in {} are in place", dir.display());
    }
    for path in &report.written {
        println!("pki: wrote {}", path.display());
    }
    Ok(())
}

pub fn issue(dir: &Path, tenant: &str, workload: &str) -> anyhow::Result<()> {
    let cert = locksmith_tls::issue_workload(dir, tenant, workload, OffsetDateTime::now_utc())
        .with_context(|| {
            format!("issuing a certificate for workload '{workload}' of tenant '{tenant}'")
        })?;
    println!("pki: wrote {}", cert.display());
    println!(
        "pki: wrote {}",
        cert.with_file_name(format!("{workload}-key.pem")).display()
    );
    Ok(())
}
