//! The `[storage]` section every service reads: which backend, and where.

use std::path::PathBuf;

use serde::Deserialize;

use crate::OpenBaoConfig;

/// A service's `[storage]` section: the embedded SQLite file (the default,
/// for single machines) or OpenBao's KV v2 (production; every replica shares
/// it, and services may share one mount, so a deployment has one source of
/// truth). Every service that keeps documents reads this same shape.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `embedded` (default) or `openbao`.
    #[serde(default)]
    pub backend: Backend,
    /// The embedded store's SQLite file (`backend = "embedded"`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The OpenBao server (`backend = "openbao"`): address, mount (default
    /// `gbo`), prefix, token or AppRole, timeouts.
    #[serde(default)]
    pub openbao: Option<OpenBaoConfig>,
}

/// Which storage backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// One local SQLite file.
    #[default]
    Embedded,
    /// OpenBao KV v2.
    Openbao,
}

/// The storage a configuration names, checked.
#[derive(Debug)]
pub enum StorageChoice<'a> {
    /// The SQLite file.
    Embedded(&'a PathBuf),
    /// The OpenBao server.
    OpenBao(&'a OpenBaoConfig),
}

/// A storage section that does not say where to store.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StorageConfigError {
    /// `backend = "embedded"` without `path`.
    #[error("storage.path is required with backend = \"embedded\"")]
    MissingPath,
    /// `backend = "openbao"` without `[storage.openbao]`.
    #[error("[storage.openbao] is required with backend = \"openbao\"")]
    MissingOpenBao,
}

impl StorageConfig {
    /// The configured backend and its settings.
    pub fn choice(&self) -> Result<StorageChoice<'_>, StorageConfigError> {
        match self.backend {
            Backend::Embedded => self
                .path
                .as_ref()
                .map(StorageChoice::Embedded)
                .ok_or(StorageConfigError::MissingPath),
            Backend::Openbao => self
                .openbao
                .as_ref()
                .map(StorageChoice::OpenBao)
                .ok_or(StorageConfigError::MissingOpenBao),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(toml_text: &str) -> StorageConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn the_embedded_store_is_the_default_and_openbao_is_chosen_by_name() {
        let embedded = storage(r#"path = "var/data/credstore.db""#);
        assert!(
            matches!(embedded.choice(), Ok(StorageChoice::Embedded(p)) if p.ends_with("credstore.db"))
        );
        let bao = storage(
            r#"
            backend = "openbao"
            [openbao]
            address = "https://bao.internal:8200"
            token = "s.never-printed"
            "#,
        );
        match bao.choice() {
            Ok(StorageChoice::OpenBao(c)) => {
                assert_eq!(c.address, "https://bao.internal:8200");
                assert_eq!(c.mount, "gbo");
                assert!(!format!("{c:?}").contains("never-printed"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            storage("").choice().err(),
            Some(StorageConfigError::MissingPath)
        );
        assert_eq!(
            storage(r#"backend = "openbao""#).choice().err(),
            Some(StorageConfigError::MissingOpenBao)
        );
        assert!(toml::from_str::<StorageConfig>(r#"backend = "consul""#).is_err());
    }
}
