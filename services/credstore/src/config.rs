//! The credential store's configuration (see `deploy/config/credstore.toml`).

use std::{net::SocketAddr, path::PathBuf};

use locksmith_store::StorageConfig;
use locksmith_tls::TlsFiles;
use serde::Deserialize;

/// Everything the credential store process needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredStoreConfig {
    /// gRPC listen address (mTLS).
    pub listen: SocketAddr,
    /// The service's certificate, key and the suite CA.
    pub tls: TlsFiles,
    /// Where sealed secrets and wrapped keys live.
    pub storage: StorageConfig,
    /// How data keys are wrapped.
    pub keys: KeysConfig,
    /// Where the audit trail goes.
    pub audit: AuditConfig,
    /// The resolve cache (optional section; defaults below).
    #[serde(default)]
    pub cache: CacheSection,
}

/// Data key wrapping, e.g. the embedded default:
///
/// ```toml
/// [keys]
/// master_key_file = "var/data/credstore-master-key"
/// ```
///
/// or OpenBao Transit, one key per tenant (`transit/keys/{tenant}`), on the
/// server and identity of `[storage.openbao]`:
///
/// ```toml
/// [keys]
/// backend = "transit"
/// transit_mount = "transit"
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// `master_key_file` (default) or `transit`.
    #[serde(default)]
    pub backend: KeyBackend,
    /// File holding the 256-bit master key that wraps every data key (mode
    /// 0600; created on first start). Losing it loses every secret. Required
    /// with `backend = "master_key_file"`.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// Where the Transit engine is mounted (`backend = "transit"`; default
    /// `transit`).
    #[serde(default = "default_transit_mount")]
    pub transit_mount: String,
}

fn default_transit_mount() -> String {
    "transit".to_owned()
}

/// What wraps data keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyBackend {
    /// A local master key file ([`locksmith_crypto::MasterKeyWrapper`]).
    #[default]
    MasterKeyFile,
    /// OpenBao Transit, one key per owner ([`locksmith_crypto::TransitWrapper`]);
    /// needs `[storage.openbao]`, whose server and identity it uses.
    Transit,
}

/// The resolve cache of decrypted answers (crate docs, "The resolve cache").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    /// Bounded staleness in milliseconds: how long a resolve answer may be
    /// served after it was read, i.e. how long a write through another
    /// replica may go unseen here (writes through this replica are seen at
    /// once). 0 disables the cache.
    pub ttl_ms: u64,
    /// Most answers kept (the oldest go first); 0 disables the cache.
    pub max_entries: usize,
}

impl Default for CacheSection {
    fn default() -> Self {
        // A few seconds: long enough that a hot name is read from storage a
        // few times a minute per replica, short enough for rotation of a
        // credential elsewhere to be picked up quickly.
        Self {
            ttl_ms: 3000,
            max_entries: 10_000,
        }
    }
}

impl CacheSection {
    /// The cache settings this section asks for.
    pub fn config(&self) -> crate::CacheConfig {
        crate::CacheConfig {
            ttl: std::time::Duration::from_millis(self.ttl_ms),
            max_entries: self.max_entries,
        }
    }
}

/// Audit trail settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// JSON-lines file the audit events are appended to (created if absent).
    pub path: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_file_parses_with_its_cache_section() {
        let file: CredStoreConfig =
            toml::from_str(include_str!("../../../deploy/config/credstore.toml")).unwrap();
        assert_eq!(file.cache, CacheSection::default());
    }

    #[test]
    fn the_cache_section_is_optional_and_zero_disables_it() {
        let default = CacheSection::default();
        assert_eq!(
            default.config(),
            crate::CacheConfig {
                ttl: std::time::Duration::from_millis(3000),
                max_entries: 10_000,
            }
        );
        let off: CacheSection = toml::from_str("ttl_ms = 0").unwrap();
        assert_eq!(off.config().ttl, std::time::Duration::ZERO);
        assert_eq!(off.max_entries, 10_000);
        assert!(toml::from_str::<CacheSection>("ttl = 5").is_err());
    }

    #[test]
    fn keys_default_to_the_master_key_file_and_transit_is_chosen_by_name() {
        let file: KeysConfig = toml::from_str(r#"master_key_file = "var/k""#).unwrap();
        assert_eq!(file.backend, KeyBackend::MasterKeyFile);
        assert_eq!(file.master_key_file, Some(PathBuf::from("var/k")));
        let transit: KeysConfig = toml::from_str(r#"backend = "transit""#).unwrap();
        assert_eq!(transit.backend, KeyBackend::Transit);
        assert_eq!(transit.transit_mount, "transit");
        assert!(toml::from_str::<KeysConfig>(r#"backend = "kms""#).is_err());
        assert!(toml::from_str::<KeysConfig>(r#"transit_mnt = "x""#).is_err());
    }
}
