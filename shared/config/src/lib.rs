//! Configuration: a TOML file, then `LOCKSMITH_*` environment overrides.
//!
//! An override names a key path with `__` between levels:
//! `LOCKSMITH_LISTEN=127.0.0.1:9000` sets `listen`,
//! `LOCKSMITH_TLS__CERT=/pki/edge.pem` sets `tls.cert`. Values that read as
//! TOML booleans, numbers or arrays are taken as such, anything else as a
//! string. The environment is passed in, so tests never touch the process's.
//!
//! Unknown keys are errors (every service config denies them), so a typo in a
//! file or a variable fails at start instead of being ignored.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Prefix of every override variable.
pub const ENV_PREFIX: &str = "LOCKSMITH_";

/// Variables with the prefix that are not config keys: the config path itself
/// and the telemetry settings read by `locksmith-telemetry`.
const RESERVED: &[&str] = &["CONFIG", "LOG", "LOG_FORMAT"];

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// An override variable's name does not map to a key path.
    #[error("environment variable {name} does not name a config key")]
    BadVariable {
        /// The variable's name.
        name: String,
    },
    /// The merged configuration does not fit the service's schema.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Loads `T` from `file` (if any), overridden by the `LOCKSMITH_*` entries of `env`.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table = match file {
        Some(path) => read_file(path)?,
        None => Table::new(),
    };
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    // Deterministic order, so `A__B` and `A` conflicts resolve the same way every run.
    overrides.sort();
    for (name, value) in overrides {
        apply_override(&mut table, &name, &value)?;
    }
    Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))
}

/// The config file named by `LOCKSMITH_CONFIG` in `env`, if set.
pub fn config_path_from(env: &[(String, String)]) -> Option<PathBuf> {
    env.iter()
        .find(|(k, _)| k == "LOCKSMITH_CONFIG")
        .map(|(_, v)| PathBuf::from(v))
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<Table>().map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

fn apply_override(table: &mut Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let key = &name[ENV_PREFIX.len()..];
    if RESERVED.contains(&key) {
        return Ok(());
    }
    let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
    let bad = || ConfigError::BadVariable {
        name: name.to_owned(),
    };
    let valid_segment =
        |s: &String| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !path.iter().all(valid_segment) {
        return Err(bad());
    }
    let (leaf, parents) = path.split_last().ok_or_else(bad)?;
    let mut node = table;
    for segment in parents {
        let entry = node
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        node = match entry {
            Value::Table(t) => t,
            _ => return Err(bad()),
        };
    }
    node.insert(leaf.clone(), typed_value(raw));
    Ok(())
}

/// Booleans, numbers and arrays keep their type; everything else is a string
/// (an address such as `127.0.0.1:7101` is not valid TOML and stays text).
fn typed_value(raw: &str) -> Value {
    let looks_typed = raw == "true"
        || raw == "false"
        || raw.starts_with('[')
        || (!raw.is_empty()
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-'));
    if looks_typed
        && let Ok(table) = format!("v = {raw}").parse::<Table>()
        && let Some(v) = table.get("v")
    {
        return v.clone();
    }
    Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Tls {
        cert: String,
        key: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        listen: String,
        workers: u32,
        debug: bool,
        tls: Tls,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nworkers = 2\ndebug = false\n[tls]\ncert = \"a\"\nkey = \"b\"\n",
        )
        .unwrap();
        let c: Conf = load(
            Some(&path),
            env(&[
                ("LOCKSMITH_LISTEN", "127.0.0.1:9000"),
                ("LOCKSMITH_WORKERS", "8"),
                ("LOCKSMITH_TLS__CERT", "/pki/edge.pem"),
                ("LOCKSMITH_LOG", "debug"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.workers, 8);
        assert_eq!(c.tls.cert, "/pki/edge.pem");
        assert_eq!(c.tls.key, "b");
    }

    #[test]
    fn environment_alone_is_enough() {
        let c: Conf = load(
            None,
            env(&[
                ("LOCKSMITH_LISTEN", "x"),
                ("LOCKSMITH_WORKERS", "1"),
                ("LOCKSMITH_DEBUG", "true"),
                ("LOCKSMITH_TLS__CERT", "c"),
                ("LOCKSMITH_TLS__KEY", "k"),
            ]),
        )
        .unwrap();
        assert!(c.debug);
    }

    #[test]
    fn unknown_keys_and_bad_variables_are_errors() {
        let base = [
            ("LOCKSMITH_LISTEN", "x"),
            ("LOCKSMITH_WORKERS", "1"),
            ("LOCKSMITH_DEBUG", "true"),
            ("LOCKSMITH_TLS__CERT", "c"),
            ("LOCKSMITH_TLS__KEY", "k"),
        ];
        let mut typo = env(&base);
        typo.push(("LOCKSMITH_LISTN".into(), "y".into()));
        let err = load::<Conf>(None, typo).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");

        let mut bad = env(&base);
        bad.push(("LOCKSMITH_TLS____X".into(), "y".into()));
        assert!(matches!(
            load::<Conf>(None, bad),
            Err(ConfigError::BadVariable { .. })
        ));

        let mut wrong_type = env(&base);
        wrong_type.push(("LOCKSMITH_WORKERS".into(), "many".into()));
        assert!(matches!(
            load::<Conf>(None, wrong_type),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn missing_and_malformed_files_name_the_path() {
        let err = load::<Conf>(Some(Path::new("/nonexistent/x.toml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen = ").unwrap();
        assert!(matches!(
            load::<Conf>(Some(&path), env(&[])),
            Err(ConfigError::Syntax { .. })
        ));
    }
}
