//! Seed 000's table of environment variables and the system secret field
//! each one moves to (`JWT_SECRET` → `system/jwt` field `secret`). The
//! `locksmith migrate env` command reads it; every target is a field of a
//! system entry of the catalogue (tested).

/// One row: variable, system secret name, field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvMapping {
    /// The environment variable.
    pub env: &'static str,
    /// The system secret it moves to.
    pub secret: &'static str,
    /// The field of that secret.
    pub field: &'static str,
}

const fn m(env: &'static str, secret: &'static str, field: &'static str) -> EnvMapping {
    EnvMapping { env, secret, field }
}

/// Every row of seed 000's mapping, in its order. `LLM_KEY` and
/// `OPENAI_API_KEY` both move to the OpenAI key: set to different values, they
/// are a conflict the migration reports.
pub const ENV_MAPPING: &[EnvMapping] = &[
    m("JWT_SECRET", "jwt", "secret"),
    m("LLM_KEY", "llm/providers/openai", "api-key"),
    m("OPENAI_API_KEY", "llm/providers/openai", "api-key"),
    m("SMTP_HOST", "email", "smtp-host"),
    m("SMTP_USER", "email", "smtp-user"),
    m("SMTP_PASS", "email", "smtp-password"),
    m("SMTP_FROM", "email", "smtp-from"),
    m("FORGEJO_URL", "alm", "url"),
    m("FORGEJO_TOKEN", "alm", "token"),
    m("FORGEJO_DEFAULT_ORG", "alm", "default-org"),
    m("AWS_ACCESS_KEY_ID", "cloud", "access-key"),
    m("AWS_SECRET_ACCESS_KEY", "cloud", "secret-key"),
    m("AWS_REGION", "cloud", "region"),
    m("S3_ENDPOINT", "cloud", "s3-endpoint"),
    m("ZITADEL_ISSUER_URL", "directory", "zitadel-issuer"),
    m("ZITADEL_CLIENT_ID", "directory", "zitadel-client-id"),
    m("REQUIRE_AUTH", "security", "require-auth"),
    m("ANONYMOUS_PATHS", "security", "anonymous-paths"),
    m("APP_URL", "app", "url"),
    m("BOTSERVER_ENV", "app", "environment"),
    m("LLM_URL", "llm", "url"),
    m("LLM_MODEL", "llm", "model"),
    m("BOTMODELS_URL", "models", "url"),
];

/// The row of `env`, if the variable is one seed 000 maps.
pub fn mapping_of(env: &str) -> Option<&'static EnvMapping> {
    ENV_MAPPING.iter().find(|m| m.env == env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::catalogue::{Level, entry};

    #[test]
    fn every_row_lands_in_a_catalogue_field_of_the_system_scope() {
        assert_eq!(ENV_MAPPING.len(), 23, "seed 000 lists 23 variables");
        for row in ENV_MAPPING {
            let e = entry(Level::System, row.secret)
                .unwrap_or_else(|| panic!("{} → {}: no system entry", row.env, row.secret));
            assert!(
                e.fields.iter().any(|f| f.name == row.field),
                "{} → {}.{}: no such field",
                row.env,
                row.secret,
                row.field
            );
        }
        assert_eq!(
            mapping_of("SMTP_PASS").map(|m| m.field),
            Some("smtp-password")
        );
        assert_eq!(mapping_of("PATH"), None);
    }
}
