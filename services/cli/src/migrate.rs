//! `locksmith migrate env`: seed 000's environment variables → system
//! secrets. This module is the plan, free of I/O: which variables map where
//! ([`locksmith_domain::secrets::migration::ENV_MAPPING`]), what to write,
//! what is already there, what conflicts, and which variables of a `.env`
//! file nothing maps. Values are held as secrets and never printed: the plan
//! names variables, secrets and fields only.

use std::collections::BTreeMap;

use locksmith_domain::secrets::migration::{ENV_MAPPING, mapping_of};
use secrecy::{ExposeSecret, SecretString};

/// Why a `.env` file cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DotEnvError {
    /// A line that is neither blank, a comment nor `NAME=value`.
    #[error("line {0} is not NAME=value")]
    BadLine(usize),
    /// A quoted value without its closing quote.
    #[error("line {0} has an unterminated quote")]
    Unterminated(usize),
}

/// Parses a `.env` file: `NAME=value` lines, an optional `export ` prefix,
/// `#` comments, values optionally in single or double quotes.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, SecretString)>, DotEnvError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (name, value) = line.split_once('=').ok_or(DotEnvError::BadLine(n))?;
        let name = name.trim();
        let valid_name = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid_name {
            return Err(DotEnvError::BadLine(n));
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..]
                .strip_suffix(q)
                .ok_or(DotEnvError::Unterminated(n))?,
            _ => value.split(" #").next().unwrap_or(value).trim_end(),
        };
        out.push((name.to_owned(), SecretString::from(value.to_owned())));
    }
    Ok(out)
}

/// What happens to one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Absent: written.
    Write,
    /// Already holds this value.
    Unchanged,
    /// Holds another value: kept, unless forced.
    Conflict,
    /// Holds another value and `--force` replaces it.
    Overwrite,
}

/// One field of the plan.
#[derive(Debug)]
pub struct Step {
    /// The system secret (`email`).
    pub secret: &'static str,
    /// Its field (`smtp-host`).
    pub field: &'static str,
    /// The variable it comes from.
    pub env: String,
    /// What happens.
    pub action: Action,
    /// The value, never printed.
    pub value: SecretString,
}

/// The whole plan.
#[derive(Debug, Default)]
pub struct Plan {
    /// One step per mapped variable that was set.
    pub steps: Vec<Step>,
    /// Variables of a `.env` file that nothing maps.
    pub unknown: Vec<String>,
    /// Two variables mapped to one field with different values
    /// (`LLM_KEY` and `OPENAI_API_KEY`): nothing is written for the field.
    pub clashes: Vec<(String, String)>,
}

impl Plan {
    /// The fields to write, by secret: the steps that write or overwrite.
    pub fn writes(&self) -> BTreeMap<&'static str, Vec<&Step>> {
        let mut out: BTreeMap<&'static str, Vec<&Step>> = BTreeMap::new();
        for step in &self.steps {
            if matches!(step.action, Action::Write | Action::Overwrite) {
                out.entry(step.secret).or_default().push(step);
            }
        }
        out
    }

    /// `written, unchanged, conflicting, unknown` counts, for the summary.
    pub fn summary(&self) -> String {
        let count = |a: Action| self.steps.iter().filter(|s| s.action == a).count();
        format!(
            "{} written, {} unchanged, {} conflicting, {} unknown variables",
            count(Action::Write) + count(Action::Overwrite),
            count(Action::Unchanged),
            count(Action::Conflict) + self.clashes.len(),
            self.unknown.len()
        )
    }

    /// One line per step, naming variable, secret, field and action, never
    /// a value.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .steps
            .iter()
            .map(|s| {
                let what = match s.action {
                    Action::Write => "write",
                    Action::Unchanged => "unchanged",
                    Action::Conflict => "conflict: a different value is stored; kept (use --force)",
                    Action::Overwrite => "overwrite (forced)",
                };
                format!(
                    "{} -> system/secrets/{} field {}: {what}",
                    s.env, s.secret, s.field
                )
            })
            .collect();
        for (a, b) in &self.clashes {
            lines.push(format!(
                "{a} and {b} map to one field with different values: neither is written"
            ));
        }
        for name in &self.unknown {
            lines.push(format!("{name}: not a variable seed 000 maps; ignored"));
        }
        lines
    }
}

/// Plans the migration of `vars` (the process environment, or a `.env`
/// file's lines with `report_unknown`), given what each system secret holds
/// now (`stored(secret, field)`).
pub fn plan(
    vars: impl IntoIterator<Item = (String, SecretString)>,
    report_unknown: bool,
    force: bool,
    stored: impl Fn(&str, &str) -> Option<SecretString>,
) -> Plan {
    let mut plan = Plan::default();
    let mut by_field: BTreeMap<(&'static str, &'static str), (String, SecretString)> =
        BTreeMap::new();
    for (name, value) in vars {
        let Some(row) = mapping_of(&name) else {
            if report_unknown {
                plan.unknown.push(name);
            }
            continue;
        };
        match by_field.get(&(row.secret, row.field)) {
            Some((other, existing)) if existing.expose_secret() != value.expose_secret() => {
                plan.clashes.push((other.clone(), name));
            }
            Some(_) => {}
            None => {
                by_field.insert((row.secret, row.field), (name, value));
            }
        }
    }
    let clashing: Vec<&str> = plan
        .clashes
        .iter()
        .flat_map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    // Seed 000's order, so the plan reads like its table.
    for row in ENV_MAPPING {
        let Some((env, value)) = by_field.remove(&(row.secret, row.field)) else {
            continue;
        };
        if clashing.contains(&env.as_str()) {
            continue;
        }
        let action = match stored(row.secret, row.field) {
            None => Action::Write,
            Some(current) if current.expose_secret() == value.expose_secret() => Action::Unchanged,
            Some(_) if force => Action::Overwrite,
            Some(_) => Action::Conflict,
        };
        plan.steps.push(Step {
            secret: row.secret,
            field: row.field,
            env,
            action,
            value,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, SecretString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretString::from((*v).to_owned())))
            .collect()
    }

    #[test]
    fn a_first_run_writes_a_second_changes_nothing_and_a_different_value_is_kept() {
        let env = vars(&[
            ("SMTP_HOST", "smtp.example.com"),
            ("SMTP_PASS", "hunter2"),
            ("PATH", "/bin"),
        ]);
        let first = plan(env.clone(), false, false, |_, _| None);
        assert_eq!(
            first.summary(),
            "2 written, 0 unchanged, 0 conflicting, 0 unknown variables"
        );
        assert_eq!(first.writes()["email"].len(), 2);
        let stored = |secret: &str, field: &str| match (secret, field) {
            ("email", "smtp-host") => Some(SecretString::from("smtp.example.com".to_owned())),
            ("email", "smtp-password") => Some(SecretString::from("other".to_owned())),
            _ => None,
        };
        let again = plan(env.clone(), false, false, stored);
        assert_eq!(
            again.summary(),
            "0 written, 1 unchanged, 1 conflicting, 0 unknown variables"
        );
        assert!(again.writes().is_empty());
        let forced = plan(env, false, true, stored);
        assert_eq!(
            forced.summary(),
            "1 written, 1 unchanged, 0 conflicting, 0 unknown variables"
        );
    }

    #[test]
    fn the_plan_never_shows_a_value() {
        let env = vars(&[
            ("SMTP_PASS", "hunter2-secret"),
            ("JWT_SECRET", "jwt-secret-value"),
        ]);
        let p = plan(env, false, false, |_, _| {
            Some(SecretString::from("old-secret".to_owned()))
        });
        let text = format!("{:?}\n{}", p, p.describe().join("\n"));
        for secret in ["hunter2-secret", "jwt-secret-value", "old-secret"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(
            text.contains("SMTP_PASS -> system/secrets/email field smtp-password"),
            "{text}"
        );
    }

    #[test]
    fn two_variables_for_one_field_must_agree() {
        let same = plan(
            vars(&[("LLM_KEY", "k"), ("OPENAI_API_KEY", "k")]),
            false,
            false,
            |_, _| None,
        );
        assert_eq!(same.steps.len(), 1);
        let differ = plan(
            vars(&[("LLM_KEY", "a"), ("OPENAI_API_KEY", "b")]),
            false,
            false,
            |_, _| None,
        );
        assert!(differ.steps.is_empty());
        assert_eq!(
            differ.clashes,
            [("LLM_KEY".to_owned(), "OPENAI_API_KEY".to_owned())]
        );
    }

    #[test]
    fn dotenv_files_are_read_and_their_unknown_variables_reported() {
        let text = "# comment\nexport SMTP_HOST=smtp.example.com\nSMTP_PASS='p#ss word'\nAPP_URL=\"https://app.example.com\"\nFOO=bar # trailing\n\n";
        let parsed = parse_dotenv(text).unwrap();
        let values: Vec<(&str, &str)> = parsed
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        assert_eq!(
            values,
            [
                ("SMTP_HOST", "smtp.example.com"),
                ("SMTP_PASS", "p#ss word"),
                ("APP_URL", "https://app.example.com"),
                ("FOO", "bar")
            ]
        );
        let p = plan(parsed, true, false, |_, _| None);
        assert_eq!(p.unknown, ["FOO"]);
        assert_eq!(parse_dotenv("NOPE").err(), Some(DotEnvError::BadLine(1)));
        assert_eq!(
            parse_dotenv("A=\"x").err(),
            Some(DotEnvError::Unterminated(1))
        );
        assert_eq!(parse_dotenv("1A=x").err(), Some(DotEnvError::BadLine(1)));
    }
}
