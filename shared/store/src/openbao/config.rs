//! How to reach the OpenBao server and where in it the documents live.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::{Key, StoreError};

fn default_mount() -> String {
    "gbo".to_owned()
}

const fn default_connect_timeout_ms() -> u64 {
    2_000
}

const fn default_request_timeout_ms() -> u64 {
    10_000
}

/// The OpenBao backend's configuration, e.g. in TOML:
///
/// ```toml
/// address = "https://bao.internal:8200"
/// mount = "gbo"
/// prefix = "locksmith"
/// token = "…"
/// connect_timeout_ms = 2000
/// request_timeout_ms = 10000
/// ```
///
/// Authentication is a token only for now; AppRole login (a role id and a
/// secret id exchanged for a renewable token) can be added later as another
/// way to obtain the same token, without touching the KV mapping.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBaoConfig {
    /// The server's base URL, `http(s)://host:port`, without `/v1`.
    pub address: String,
    /// Where the KV v2 engine is mounted (default `gbo`).
    #[serde(default = "default_mount")]
    pub mount: String,
    /// A folder inside the mount that every key is stored under (none: the
    /// mount's root). Lets several stores share one mount without seeing each
    /// other, e.g. one fresh prefix per test.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The token sent as `X-Vault-Token`; its policy needs create, read,
    /// update, delete and list on `<mount>/data|metadata|delete|undelete|destroy/<prefix>/*`.
    /// Never printed: its `Debug` is redacted.
    pub token: SecretString,
    /// Longest wait for a TCP (and TLS) connection, in milliseconds (default 2000).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest time one store operation may take, retries of reads included,
    /// in milliseconds (default 10000). Past it the operation answers
    /// [`StoreError::Unavailable`].
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

impl OpenBaoConfig {
    /// A configuration with the defaults for everything but the address and token.
    pub fn new(address: impl Into<String>, token: SecretString) -> Self {
        Self {
            address: address.into(),
            mount: default_mount(),
            prefix: None,
            token,
            connect_timeout_ms: default_connect_timeout_ms(),
            request_timeout_ms: default_request_timeout_ms(),
        }
    }

    /// The connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The per-operation timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Checks the fields and answers the path every key is placed under:
    /// `<mount>/` or `<mount>/<prefix>/` is split off as `(mount, prefix)`,
    /// the prefix empty or ending in `/`.
    pub(super) fn validated(&self) -> Result<(String, String), StoreError> {
        let address = self.address.trim_end_matches('/');
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(StoreError::Invalid(
                "openbao address must start with http:// or https://".into(),
            ));
        }
        // The mount and prefix go into URL paths: the key grammar keeps them
        // free of anything that would need escaping or resolve differently.
        let mount = Key::parse(&self.mount)
            .map_err(|e| StoreError::Invalid(format!("openbao mount: {e}")))?;
        let prefix = match &self.prefix {
            None => String::new(),
            Some(p) => {
                let p = Key::parse(p)
                    .map_err(|e| StoreError::Invalid(format!("openbao prefix: {e}")))?;
                format!("{p}/")
            }
        };
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return Err(StoreError::Invalid(
                "openbao timeouts must be above 0".into(),
            ));
        }
        Ok((mount.as_str().to_owned(), prefix))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn defaults_fill_what_is_left_out_and_unknown_fields_are_refused() {
        let config: OpenBaoConfig =
            toml::from_str("address = \"http://127.0.0.1:8200\"\ntoken = \"s.hunter2\"").unwrap();
        assert_eq!(config.mount, "gbo");
        assert_eq!(config.prefix, None);
        assert_eq!(config.connect_timeout(), Duration::from_secs(2));
        assert_eq!(config.request_timeout(), Duration::from_secs(10));
        assert_eq!(config.token.expose_secret(), "s.hunter2");
        assert_eq!(config.validated().unwrap(), ("gbo".into(), String::new()));

        let typo = "address = \"http://x\"\ntoken = \"t\"\nmonut = \"kv\"";
        let err = toml::from_str::<OpenBaoConfig>(typo).unwrap_err();
        assert!(err.to_string().contains("monut"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let config = OpenBaoConfig::new("http://x", SecretString::from("s.hunter2"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let store = crate::OpenBaoStore::new(&config).unwrap();
        assert!(!format!("{store:?}").contains("hunter2"));
    }

    #[test]
    fn mount_prefix_and_address_are_checked() {
        let mut config = OpenBaoConfig::new("http://x/", SecretString::from("t"));
        config.prefix = Some("tests/run-1".into());
        assert_eq!(
            config.validated().unwrap(),
            ("gbo".into(), "tests/run-1/".into())
        );
        for (field, bad) in [
            ("prefix", "a/../b"),
            ("prefix", "/abs"),
            ("mount", "g bo"),
            ("address", "bao:8200"),
        ] {
            let mut c = config.clone();
            match field {
                "prefix" => c.prefix = Some(bad.into()),
                "mount" => c.mount = bad.into(),
                _ => c.address = bad.into(),
            }
            assert!(
                matches!(c.validated(), Err(StoreError::Invalid(_))),
                "{field} {bad:?}"
            );
        }
        config.request_timeout_ms = 0;
        assert!(matches!(config.validated(), Err(StoreError::Invalid(_))));
    }
}
