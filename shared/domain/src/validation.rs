//! Field-level validation results shared by every resource.

use std::{collections::BTreeMap, fmt};

/// One field that failed validation, named by its wire path (`tenant.domain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Wire path of the field.
    pub field: String,
    /// What is wrong with it, without repeating its value.
    pub message: String,
}

impl FieldError {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A request that failed validation: every bad field, not only the first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Invalid(pub Vec<FieldError>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// Collects field errors while a request is checked.
#[derive(Default, Debug)]
pub(crate) struct Checker {
    errors: Vec<FieldError>,
}

pub(crate) const MAX_DISPLAY_NAME: usize = 200;
pub(crate) const MAX_MAP_ENTRIES: usize = 64;
pub(crate) const MAX_MAP_KEY: usize = 64;
pub(crate) const MAX_MAP_VALUE: usize = 1024;
pub(crate) const MAX_DOMAIN: usize = 253;
pub(crate) const MAX_EMAIL: usize = 254;

impl Checker {
    pub(crate) fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    pub(crate) fn finish(self) -> Result<(), Invalid> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.errors))
        }
    }

    pub(crate) fn display_name(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.fail(field, "is required");
        } else if value.chars().count() > MAX_DISPLAY_NAME {
            self.fail(
                field,
                format!("must be at most {MAX_DISPLAY_NAME} characters"),
            );
        } else if value.chars().any(char::is_control) {
            self.fail(field, "must not contain control characters");
        }
    }

    /// Settings and labels: small maps of non-secret strings.
    pub(crate) fn string_map(&mut self, field: &str, map: &BTreeMap<String, String>) {
        if map.len() > MAX_MAP_ENTRIES {
            self.fail(
                field,
                format!("must have at most {MAX_MAP_ENTRIES} entries"),
            );
        }
        for (key, value) in map {
            if !is_map_key(key) {
                self.fail(
                    format!("{field}.{}", printable(key)),
                    format!(
                        "keys must match [a-z0-9][a-z0-9_.-]{{0,{}}}",
                        MAX_MAP_KEY - 1
                    ),
                );
            } else if value.chars().count() > MAX_MAP_VALUE {
                self.fail(
                    format!("{field}.{key}"),
                    format!("must be at most {MAX_MAP_VALUE} characters"),
                );
            } else if value.chars().any(char::is_control) {
                self.fail(
                    format!("{field}.{key}"),
                    "must not contain control characters",
                );
            }
        }
    }

    pub(crate) fn domain(&mut self, field: &str, value: &str) {
        if !is_dns_name(value) {
            self.fail(
                field,
                "must be a DNS name: dot-separated labels of letters, digits and '-'",
            );
        }
    }

    pub(crate) fn email(&mut self, field: &str, value: &str) {
        let ok = value.len() <= MAX_EMAIL
            && value.split_once('@').is_some_and(|(local, host)| {
                !local.is_empty()
                    && local
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'@' && b != b'<' && b != b'>')
                    && is_dns_name(host)
            });
        if !ok {
            self.fail(field, "must be an email address (local@domain)");
        }
    }
}

fn is_map_key(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_MAP_KEY
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(c))
}

fn is_dns_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_DOMAIN
        && value.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// A map key as it may appear in a field path: bad keys are shown escaped and
/// shortened so an error message stays one readable line.
fn printable(key: &str) -> String {
    key.chars()
        .take(32)
        .flat_map(char::escape_default)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_name("acme.example.com"));
        assert!(is_dns_name("localhost"));
        for bad in [
            "", ".", "a..b", "-a.com", "a-.com", "a b.com", "ä.com", "a/b",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn map_keys() {
        assert!(is_map_key("region"));
        assert!(is_map_key("llm.model_v2"));
        for bad in ["", "A", "_x", "a/b", "a b"] {
            assert!(!is_map_key(bad), "{bad}");
        }
    }

    #[test]
    fn collects_every_error() {
        let mut c = Checker::default();
        c.display_name("display_name", "");
        c.email("email", "nope");
        let err = c.finish().unwrap_err();
        assert_eq!(err.0.len(), 2);
        assert_eq!(
            err.to_string(),
            "display_name: is required; email: must be an email address (local@domain)"
        );
    }
}
