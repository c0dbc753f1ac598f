//! Identifiers. All share one grammar, a lowercase slug
//! `[a-z0-9][a-z0-9-]{0,62}`, which also admits lowercase hyphenated UUIDs.
//! Nothing that could be a path separator, a dot segment, an encoded byte or
//! a non-ASCII character survives parsing.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not an identifier. The offending value is not repeated in
/// the message: it may be long, or not printable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty.
    #[error("must not be empty")]
    Empty,
    /// Longer than the grammar allows.
    #[error("must be at most {max} characters")]
    TooLong {
        /// Largest accepted length.
        max: usize,
    },
    /// Starts with something other than a lowercase letter or digit.
    #[error("must start with a lowercase letter or a digit")]
    BadStart,
    /// Contains a character outside `[a-z0-9-]`.
    #[error("may contain only lowercase letters, digits and '-'")]
    BadCharacter,
}

const MAX_SLUG_LEN: usize = 63;

fn check_slug(s: &str) -> Result<(), IdError> {
    let bytes = s.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(IdError::Empty);
    };
    if bytes.len() > MAX_SLUG_LEN {
        return Err(IdError::TooLong { max: MAX_SLUG_LEN });
    }
    let slug_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !slug_char(first) {
        return Err(if first.is_ascii() {
            IdError::BadStart
        } else {
            IdError::BadCharacter
        });
    }
    if bytes.iter().all(|b| slug_char(b) || *b == b'-') {
        Ok(())
    } else {
        Err(IdError::BadCharacter)
    }
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses `s`, refusing anything outside the slug grammar.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_slug(s)?;
                Ok(Self(s.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check_slug(&s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

slug_id!(
    /// A tenant: one deployment (dev, staging, prod…).
    TenantId
);
slug_id!(
    /// An org, bot or user inside a tenant: a slug or a lowercase UUID.
    MemberId
);
slug_id!(
    /// An entry of the provider catalog (`notion`, `github`, …).
    IntegrationId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_slugs_and_lowercase_uuids() {
        for ok in [
            "a",
            "0",
            "acme-corp",
            "prod",
            "550e8400-e29b-41d4-a716-446655440000",
            &"a".repeat(63),
        ] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
            assert!(MemberId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        let cases: &[(&str, IdError)] = &[
            ("", IdError::Empty),
            ("A", IdError::BadStart),
            ("../x", IdError::BadStart),
            ("..", IdError::BadStart),
            ("-a", IdError::BadStart),
            ("a/b", IdError::BadCharacter),
            ("a%2Fb", IdError::BadCharacter),
            ("a_b", IdError::BadCharacter),
            ("a.b", IdError::BadCharacter),
            ("a b", IdError::BadCharacter),
            ("a\0", IdError::BadCharacter),
            ("ténant", IdError::BadCharacter),
            ("é", IdError::BadCharacter),
            (
                "550E8400-E29B-41D4-A716-446655440000",
                IdError::BadCharacter,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                TenantId::parse(input).err().as_ref(),
                Some(want),
                "{input:?}"
            );
        }
        assert_eq!(
            TenantId::parse(&"a".repeat(64)).err(),
            Some(IdError::TooLong { max: 63 })
        );
    }

    #[test]
    fn serde_validates() {
        let ok: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(ok.as_str(), "acme");
        assert!(serde_json::from_str::<TenantId>("\"../etc\"").is_err());
    }
}
