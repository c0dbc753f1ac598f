//! How to reach the OpenBao server, who we are to it, and where in it the
//! documents live.

use std::{path::PathBuf, time::Duration};

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
/// Exactly one way to authenticate: a static `token`, or AppRole login
/// (a renewable token obtained with a role id and a secret id, renewed in
/// the background and re-obtained when renewal stops working):
///
/// ```toml
/// [approle]
/// role_id = "…"
/// secret_id_file = "/run/secrets/openbao-secret-id"
/// mount = "approle"
/// ```
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
    /// A static token sent as `X-Vault-Token`; its policy needs create, read,
    /// update, delete and list on `<mount>/data|metadata|delete|undelete|destroy/<prefix>/*`
    /// (`deploy/openbao/credstore-policy.hcl`). Never printed: its `Debug` is
    /// redacted. Exclusive with `approle`.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// AppRole login instead of a static token. Exclusive with `token`.
    #[serde(default)]
    pub approle: Option<AppRoleConfig>,
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
            token: Some(token),
            approle: None,
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

    /// A configuration logging in with AppRole, defaults for everything else.
    pub fn with_approle(address: impl Into<String>, approle: AppRoleConfig) -> Self {
        let mut config = Self::new(address, SecretString::from(String::new()));
        config.token = None;
        config.approle = Some(approle);
        config
    }

    /// Checks what the HTTP client needs (address, timeouts, one way to
    /// authenticate), whatever the client is used for (KV or Transit).
    pub(super) fn validated_connection(&self) -> Result<(), StoreError> {
        let address = self.address.trim_end_matches('/');
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(StoreError::Invalid(
                "openbao address must start with http:// or https://".into(),
            ));
        }
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return Err(StoreError::Invalid(
                "openbao timeouts must be above 0".into(),
            ));
        }
        match (&self.token, &self.approle) {
            (Some(_), None) => Ok(()),
            (None, Some(approle)) => approle.validated(),
            (Some(_), Some(_)) => Err(StoreError::Invalid(
                "openbao: give either token or [approle], not both".into(),
            )),
            (None, None) => Err(StoreError::Invalid(
                "openbao: a token or an [approle] section is required".into(),
            )),
        }
    }

    /// Checks the fields and answers the path every key is placed under:
    /// `<mount>/` or `<mount>/<prefix>/` is split off as `(mount, prefix)`,
    /// the prefix empty or ending in `/`.
    pub(super) fn validated(&self) -> Result<(String, String), StoreError> {
        self.validated_connection()?;
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
        Ok((mount.as_str().to_owned(), prefix))
    }
}

fn default_approle_mount() -> String {
    "approle".to_owned()
}

/// AppRole login: `POST auth/<mount>/login` with the role id and the secret
/// id read from `secret_id_file` at every login (so a rotated secret id is
/// picked up without a restart). Holds no secret itself, so `Debug` is safe.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleConfig {
    /// The role's id (an identifier, like a user name; not secret on its own).
    pub role_id: String,
    /// A file holding the secret id (surrounding whitespace is ignored). Keep
    /// it readable by this service only.
    pub secret_id_file: PathBuf,
    /// Where the AppRole auth method is mounted (default `approle`).
    #[serde(default = "default_approle_mount")]
    pub mount: String,
}

impl AppRoleConfig {
    /// An AppRole login on the default mount.
    pub fn new(role_id: impl Into<String>, secret_id_file: impl Into<PathBuf>) -> Self {
        Self {
            role_id: role_id.into(),
            secret_id_file: secret_id_file.into(),
            mount: default_approle_mount(),
        }
    }

    fn validated(&self) -> Result<(), StoreError> {
        // The mount goes into a URL path, the role id into a JSON body.
        Key::parse(&self.mount)
            .map_err(|e| StoreError::Invalid(format!("openbao approle mount: {e}")))?;
        if self.role_id.trim().is_empty() {
            return Err(StoreError::Invalid(
                "openbao approle role_id is empty".into(),
            ));
        }
        Ok(())
    }

    /// `auth/<mount>/login`.
    pub(super) fn login_path(&self) -> String {
        format!("auth/{}/login", self.mount)
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
        assert_eq!(
            config.token.as_ref().map(|t| t.expose_secret().to_owned()),
            Some("s.hunter2".to_owned())
        );
        assert!(config.approle.is_none());
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

    #[test]
    fn approle_replaces_the_token_and_exactly_one_is_required() {
        let config: OpenBaoConfig = toml::from_str(
            "address = \"http://x\"\n[approle]\nrole_id = \"r-1\"\nsecret_id_file = \"/run/sid\"",
        )
        .unwrap();
        let approle = config.approle.as_ref().unwrap();
        assert_eq!(approle.mount, "approle");
        assert_eq!(approle.login_path(), "auth/approle/login");
        assert!(config.token.is_none());
        assert!(config.validated().is_ok());

        let both = "address = \"http://x\"\ntoken = \"t\"\n[approle]\nrole_id = \"r\"\nsecret_id_file = \"/f\"";
        let both: OpenBaoConfig = toml::from_str(both).unwrap();
        assert!(matches!(both.validated(), Err(StoreError::Invalid(m)) if m.contains("not both")));
        let neither: OpenBaoConfig = toml::from_str("address = \"http://x\"").unwrap();
        assert!(
            matches!(neither.validated(), Err(StoreError::Invalid(m)) if m.contains("required"))
        );
        let mut bad_mount = config.clone();
        if let Some(a) = bad_mount.approle.as_mut() {
            a.mount = "../sys".into();
        }
        assert!(matches!(bad_mount.validated(), Err(StoreError::Invalid(_))));
        let typo = "address = \"http://x\"\n[approle]\nrole_id = \"r\"\nsecret_id = \"inline\"";
        assert!(toml::from_str::<OpenBaoConfig>(typo).is_err());
    }
}
