//! Seed 000's catalogue of secrets, as data: every entry of its tree, the
//! scope level it belongs to, its fields, which of them are secret, and
//! their types. A known name is validated on write (no unknown fields, every
//! value of its type); any other name is a free map of strings.
//!
//! The same name can mean different things at different levels (`email` of
//! a bot holds SMTP and IMAP credentials, the system's `email` is the SMTP
//! fallback), so entries are looked up by `(level, name)`.

use std::collections::BTreeMap;

use crate::{FieldError, Invalid, Scope};

/// The level of a scope, for catalogue look-ups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `system`.
    System,
    /// A tenant.
    Tenant,
    /// An org.
    Org,
    /// A bot.
    Bot,
    /// A user.
    User,
}

impl Level {
    /// The level of `scope`.
    pub fn of(scope: &Scope) -> Level {
        match scope {
            Scope::System => Level::System,
            Scope::Tenant(_) => Level::Tenant,
            Scope::Org { .. } => Level::Org,
            Scope::Bot { .. } => Level::Bot,
            Scope::User { .. } => Level::User,
        }
    }
}

/// What a field's value must look like. Values are strings (a secret is a
/// map of strings); the type says which strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Any text without control characters.
    Text,
    /// A TCP port, 1 to 65535.
    Port,
    /// An `http://` or `https://` URL.
    Url,
    /// A host name or an IP address.
    Host,
    /// An email address.
    Email,
    /// `true` or `false`.
    Bool,
    /// A comma-separated list of paths, each starting with `/`.
    PathList,
}

/// One field of a catalogue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Its name in the secret's map.
    pub name: &'static str,
    /// What its value must look like.
    pub kind: FieldType,
    /// Whether it is a secret (returned only to principals allowed to read
    /// values, never listed, never logged); other fields are configuration.
    pub secret: bool,
}

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The level it belongs to.
    pub level: Level,
    /// Its name (`infrastructure/tables`, `api-keys/openai`).
    pub name: &'static str,
    /// What it is for.
    pub description: &'static str,
    /// Its fields.
    pub fields: &'static [Field],
}

const fn f(name: &'static str, kind: FieldType) -> Field {
    Field {
        name,
        kind,
        secret: false,
    }
}

const fn s(name: &'static str) -> Field {
    Field {
        name,
        kind: FieldType::Text,
        secret: true,
    }
}

use FieldType::{Bool, Email, Host, PathList, Port, Text, Url};

const SMTP: [Field; 4] = [
    f("smtp-host", Host),
    f("smtp-port", Port),
    f("smtp-user", Text),
    s("smtp-password"),
];
const MAILBOX: [Field; 8] = [
    f("smtp-host", Host),
    f("smtp-port", Port),
    f("smtp-user", Text),
    s("smtp-password"),
    f("imap-host", Host),
    f("imap-port", Port),
    f("imap-user", Text),
    s("imap-password"),
];
const OAUTH_APP: [Field; 2] = [f("client-id", Text), s("client-secret")];
const API_KEY: [Field; 1] = [s("api-key")];

/// Every entry of seed 000's tree.
pub const CATALOGUE: &[Entry] = &[
    // Tenant infrastructure (seed 000: gbo/tenants/{t}/infrastructure/…).
    Entry {
        level: Level::Tenant,
        name: "infrastructure/tables",
        description: "the tenant's database",
        fields: &[
            f("host", Host),
            f("port", Port),
            f("username", Text),
            s("password"),
        ],
    },
    Entry {
        level: Level::Tenant,
        name: "infrastructure/drive",
        description: "the tenant's object storage",
        fields: &[
            f("host", Host),
            f("port", Port),
            s("accesskey"),
            s("secret"),
        ],
    },
    Entry {
        level: Level::Tenant,
        name: "infrastructure/cache",
        description: "the tenant's cache",
        fields: &[f("host", Host), f("port", Port), s("password")],
    },
    Entry {
        level: Level::Tenant,
        name: "infrastructure/email",
        description: "the tenant's SMTP server",
        fields: &SMTP,
    },
    Entry {
        level: Level::Tenant,
        name: "infrastructure/directory",
        description: "the tenant's directory (Zitadel)",
        fields: &[f("url", Url)],
    },
    Entry {
        level: Level::Tenant,
        name: "infrastructure/llm",
        description: "the tenant's LLM endpoint",
        fields: &[f("url", Url)],
    },
    Entry {
        level: Level::Tenant,
        name: "infrastructure/models",
        description: "the tenant's model server",
        fields: &[f("url", Url)],
    },
    // Bots (seed 000: …/orgs/{o}/bots/{b}/…).
    Entry {
        level: Level::Bot,
        name: "email",
        description: "the bot's mailbox",
        fields: &MAILBOX,
    },
    Entry {
        level: Level::Bot,
        name: "whatsapp",
        description: "the bot's WhatsApp Business account",
        fields: &[
            f("phone-number-id", Text),
            f("business-account-id", Text),
            s("api-key"),
        ],
    },
    Entry {
        level: Level::Bot,
        name: "llm",
        description: "the bot's own LLM (overrides the system default)",
        fields: &[f("provider", Text), f("model", Text), s("api-key")],
    },
    Entry {
        level: Level::Bot,
        name: "api-keys/openai",
        description: "the bot's OpenAI key",
        fields: &API_KEY,
    },
    Entry {
        level: Level::Bot,
        name: "api-keys/anthropic",
        description: "the bot's Anthropic key",
        fields: &API_KEY,
    },
    // Users (seed 000: …/orgs/{o}/users/{u}/…).
    Entry {
        level: Level::User,
        name: "email",
        description: "the user's mailbox",
        fields: &MAILBOX,
    },
    Entry {
        level: Level::User,
        name: "oauth/google",
        description: "the user's Google OAuth app",
        fields: &OAUTH_APP,
    },
    Entry {
        level: Level::User,
        name: "oauth/microsoft",
        description: "the user's Microsoft OAuth app",
        fields: &OAUTH_APP,
    },
    Entry {
        level: Level::User,
        name: "oauth/github",
        description: "the user's GitHub OAuth app",
        fields: &OAUTH_APP,
    },
    // System (seed 000: gbo/system/…), the fallback of every lookup.
    Entry {
        level: Level::System,
        name: "jwt",
        description: "the signing secret of the suite's own tokens",
        fields: &[s("secret")],
    },
    Entry {
        level: Level::System,
        name: "tables",
        description: "the default database",
        fields: &[
            f("host", Host),
            f("port", Port),
            f("database", Text),
            f("username", Text),
            s("password"),
        ],
    },
    Entry {
        level: Level::System,
        name: "drive",
        description: "the default object storage",
        fields: &[s("accesskey"), s("secret")],
    },
    Entry {
        level: Level::System,
        name: "cache",
        description: "the default cache",
        fields: &[f("url", Url)],
    },
    Entry {
        level: Level::System,
        name: "email",
        description: "the SMTP fallback of every bot",
        fields: &[
            f("smtp-host", Host),
            f("smtp-port", Port),
            f("smtp-user", Text),
            s("smtp-password"),
            f("smtp-from", Email),
        ],
    },
    Entry {
        level: Level::System,
        name: "llm",
        description: "the default LLM",
        fields: &[f("url", Url), f("model", Text)],
    },
    Entry {
        level: Level::System,
        name: "llm/providers/openai",
        description: "the default OpenAI key",
        fields: &API_KEY,
    },
    Entry {
        level: Level::System,
        name: "models",
        description: "the default model server",
        fields: &[f("url", Url)],
    },
    Entry {
        level: Level::System,
        name: "directory",
        description: "the directory (Zitadel)",
        fields: &[
            f("config", Text),
            f("zitadel-issuer", Url),
            f("zitadel-client-id", Text),
        ],
    },
    Entry {
        level: Level::System,
        name: "security",
        description: "the suite's security settings",
        fields: &[f("require-auth", Bool), f("anonymous-paths", PathList)],
    },
    Entry {
        level: Level::System,
        name: "alm",
        description: "ALM and deployment (Forgejo)",
        fields: &[f("url", Url), s("token"), f("default-org", Text)],
    },
    Entry {
        level: Level::System,
        name: "cloud",
        description: "cloud provider credentials (AWS and compatible)",
        fields: &[
            s("access-key"),
            s("secret-key"),
            f("region", Text),
            f("s3-endpoint", Url),
        ],
    },
    Entry {
        level: Level::System,
        name: "app",
        description: "the application's own settings",
        fields: &[
            f("url", Url),
            f("environment", Text),
            f("disable-tls", Bool),
        ],
    },
];

/// Most fields in a free-form secret, and the longest field name and value.
pub const MAX_FIELDS: usize = 64;
/// Longest field name.
pub const MAX_FIELD_NAME: usize = 64;
/// Longest field value, in bytes.
pub const MAX_FIELD_VALUE: usize = 16 * 1024;

/// The catalogue entry for `name` at `level`, if it is a known name.
pub fn entry(level: Level, name: &str) -> Option<&'static Entry> {
    CATALOGUE
        .iter()
        .find(|e| e.level == level && e.name == name)
}

fn valid_value(kind: FieldType, v: &str) -> Result<(), &'static str> {
    let ok = match kind {
        Text => !v.chars().any(char::is_control),
        Port => v.parse::<u16>().is_ok_and(|p| p > 0) && !v.starts_with('+') && !v.starts_with('0'),
        Url => {
            let rest = v
                .strip_prefix("https://")
                .or_else(|| v.strip_prefix("http://"));
            rest.is_some_and(|r| {
                let host = r.split(['/', '?', '#']).next().unwrap_or_default();
                !host.is_empty() && !r.chars().any(|c| c.is_control() || c.is_whitespace())
            })
        }
        Host => {
            v.parse::<std::net::IpAddr>().is_ok()
                || (!v.is_empty()
                    && v.len() <= 253
                    && v.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                            && !l.starts_with('-')
                            && !l.ends_with('-')
                    }))
        }
        Email => v.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && d.contains('.')
                && !v.chars().any(|c| c.is_whitespace() || c.is_control())
        }),
        Bool => v == "true" || v == "false",
        PathList => v
            .split(',')
            .all(|p| p.trim().starts_with('/') && !p.chars().any(char::is_control)),
    };
    if ok {
        Ok(())
    } else {
        Err(match kind {
            Text => "must not contain control characters",
            Port => "must be a port number from 1 to 65535",
            Url => "must be an http:// or https:// URL",
            Host => "must be a host name or an IP address",
            Email => "must be an email address",
            Bool => "must be true or false",
            PathList => "must be a comma-separated list of paths starting with '/'",
        })
    }
}

/// Checks the fields of a secret `name` at `level`: a known name takes only
/// its own fields, each of its type; any name takes at least one and at most
/// [`MAX_FIELDS`] fields with bounded names and values. Every bad field is
/// reported, by `fields.<name>`, never with its value.
pub fn validate(
    level: Level,
    name: &str,
    fields: &BTreeMap<String, String>,
) -> Result<(), Invalid> {
    let mut errors = Vec::new();
    if fields.is_empty() {
        errors.push(FieldError::new("fields", "must hold at least one field"));
    }
    if fields.len() > MAX_FIELDS {
        errors.push(FieldError::new(
            "fields",
            format!("must hold at most {MAX_FIELDS} fields"),
        ));
    }
    let known = entry(level, name);
    for (key, value) in fields {
        let at = || {
            format!(
                "fields.{}",
                key.chars()
                    .take(MAX_FIELD_NAME)
                    .flat_map(char::escape_default)
                    .collect::<String>()
            )
        };
        let key_ok = !key.is_empty()
            && key.len() <= MAX_FIELD_NAME
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !key_ok {
            errors.push(FieldError::new(
                at(),
                "field names must match [a-z0-9._-]{1,64}",
            ));
            continue;
        }
        if value.len() > MAX_FIELD_VALUE {
            errors.push(FieldError::new(
                at(),
                format!("must be at most {MAX_FIELD_VALUE} bytes"),
            ));
            continue;
        }
        let kind = match known {
            None => FieldType::Text,
            Some(e) => match e.fields.iter().find(|f| f.name == key) {
                Some(f) => f.kind,
                None => {
                    errors.push(FieldError::new(at(), format!("is not a field of {name}")));
                    continue;
                }
            },
        };
        if let Err(why) = valid_value(kind, value) {
            errors.push(FieldError::new(at(), why));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errors))
    }
}

/// Names that never fall back: resolving one consults its own scope only.
/// Seed 000: a user's mailbox is the user's own ("user email has no
/// fallback"); sending as an org's or the system's address would impersonate.
const NO_FALLBACK: &[(Level, &str)] = &[(Level::User, "email")];

/// Whether resolving `name` from a scope of `level` may look at wider scopes
/// (bot → org → tenant → system) when this one holds no such secret.
pub fn falls_back(level: Level, name: &str) -> bool {
    !NO_FALLBACK.iter().any(|(l, n)| *l == level && *n == name)
}

/// Whether field `field` of `name` at `level` is a secret. Fields of free
/// names are all secret: nothing says otherwise.
pub fn is_secret_field(level: Level, name: &str, field: &str) -> bool {
    entry(level, name)
        .and_then(|e| e.fields.iter().find(|f| f.name == field))
        .is_none_or(|f| f.secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretName;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_entry_is_a_valid_name_at_its_level_with_unique_fields() {
        for e in CATALOGUE {
            let scope = match e.level {
                Level::System => Scope::System,
                Level::Tenant => Scope::parse("tenant/t").unwrap(),
                Level::Org => Scope::parse("tenant/t/org/o").unwrap(),
                Level::Bot => Scope::parse("tenant/t/org/o/bot/b").unwrap(),
                Level::User => Scope::parse("tenant/t/org/o/user/u").unwrap(),
            };
            assert!(SecretName::parse(e.name, &scope).is_ok(), "{}", e.name);
            let mut names: Vec<_> = e.fields.iter().map(|f| f.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), e.fields.len(), "{}", e.name);
            assert_eq!(
                CATALOGUE
                    .iter()
                    .filter(|o| o.level == e.level && o.name == e.name)
                    .count(),
                1,
                "{} listed twice",
                e.name
            );
        }
    }

    #[test]
    fn known_names_check_their_fields_and_types() {
        let ok = map(&[
            ("smtp-host", "smtp.example.com"),
            ("smtp-port", "587"),
            ("smtp-password", "p"),
        ]);
        assert_eq!(validate(Level::System, "email", &ok), Ok(()));
        let bad = map(&[
            ("smtp-port", "abc"),
            ("smtp-from", "nobody"),
            ("colour", "red"),
        ]);
        let err = validate(Level::System, "email", &bad).unwrap_err();
        let fields: Vec<_> = err
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("fields.colour", "is not a field of email"),
                ("fields.smtp-from", "must be an email address"),
                ("fields.smtp-port", "must be a port number from 1 to 65535"),
            ]
        );
        for port in ["0", "65536", "-1", "+80", "080", "8 0"] {
            let e = validate(
                Level::Tenant,
                "infrastructure/cache",
                &map(&[("port", port)]),
            );
            assert!(e.is_err(), "{port}");
        }
        assert!(
            validate(
                Level::Tenant,
                "infrastructure/llm",
                &map(&[("url", "ftp://x")])
            )
            .is_err()
        );
        assert!(
            validate(
                Level::Tenant,
                "infrastructure/llm",
                &map(&[("url", "https://llm.internal:8443/v1")])
            )
            .is_ok()
        );
        assert!(validate(Level::System, "security", &map(&[("require-auth", "yes")])).is_err());
        assert!(
            validate(
                Level::System,
                "security",
                &map(&[("anonymous-paths", "/health,/ready")])
            )
            .is_ok()
        );
    }

    #[test]
    fn free_names_are_maps_with_limits() {
        assert!(validate(Level::Org, "stripe", &map(&[("api-key", "sk_live_x")])).is_ok());
        assert!(validate(Level::Org, "stripe", &BTreeMap::new()).is_err());
        let many: BTreeMap<String, String> =
            (0..65).map(|i| (format!("f{i}"), "v".to_owned())).collect();
        assert!(validate(Level::Org, "stripe", &many).is_err());
        let err = validate(Level::Org, "x", &map(&[("Bad Key", "v")])).unwrap_err();
        assert_eq!(err.0[0].field, "fields.Bad Key");
        assert!(validate(Level::Org, "x", &map(&[("k", "a\u{7}")])).is_err());
        // Fields of free names are secret; a known configuration field is not.
        assert!(is_secret_field(Level::Org, "stripe", "api-key"));
        assert!(!is_secret_field(Level::System, "email", "smtp-host"));
        assert!(is_secret_field(Level::System, "email", "smtp-password"));
    }

    #[test]
    fn only_a_users_email_is_pinned_to_its_scope() {
        assert!(!falls_back(Level::User, "email"));
        assert!(falls_back(Level::Bot, "email"));
        assert!(falls_back(Level::User, "oauth/github"));
        assert!(falls_back(Level::Bot, "llm"));
    }

    #[test]
    fn the_same_name_differs_by_level() {
        let imap = map(&[("imap-host", "imap.example.com")]);
        assert!(validate(Level::Bot, "email", &imap).is_ok());
        assert!(validate(Level::System, "email", &imap).is_err());
    }
}
