//! `locksmith pki …`: prints which files it wrote or kept, never key material.
//! Output goes to a writer so a closed pipe (`locksmith pki init | head`) is an
//! error to report, not a panic, and so tests can read it.

use std::{io::Write, path::Path};

use anyhow::Context;
use locksmith_tls::TlsFiles;
use time::OffsetDateTime;

/// `locksmith pki init`: the dev CA and one certificate per service.
pub fn init(dir: &Path, force: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let report = locksmith_tls::init_dir(dir, OffsetDateTime::now_utc(), force)
        .with_context(|| format!("creating the PKI in {}", dir.display()))?;
    for path in &report.written {
        writeln!(out, "pki: wrote {}", path.display())?;
    }
    for path in &report.kept {
        writeln!(out, "pki: kept  {}", path.display())?;
    }
    Ok(())
}

/// `locksmith pki issue`: a certificate for one tenant workload.
pub fn issue(dir: &Path, tenant: &str, workload: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let context =
        || format!("issuing a certificate for workload {workload:?} of tenant {tenant:?}");
    let files = TlsFiles::for_workload(dir, tenant, workload).with_context(context)?;
    locksmith_tls::issue_workload(dir, tenant, workload, OffsetDateTime::now_utc())
        .with_context(context)?;
    writeln!(out, "pki: wrote {}", files.cert.display())?;
    writeln!(out, "pki: wrote {}", files.key.display())?;
    writeln!(out, "pki: trust {}", files.ca.display())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_paths_never_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        init(dir.path(), false, &mut out).unwrap();
        init(dir.path(), false, &mut out).unwrap();
        issue(dir.path(), "acme", "billing", &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("wrote") && text.contains("kept  "), "{text}");
        assert!(text.contains("workloads/acme/billing-key.pem"), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let err = issue(dir.path(), "../x", "b", &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("must match"), "{err:#}");
    }
}
