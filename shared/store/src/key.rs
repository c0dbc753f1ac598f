//! Document keys: the one validated path type every backend accepts.
//!
//! The grammar is deliberately narrower than what KV v2 tolerates: a key
//! travels in a URL path to OpenBao, in an SQL parameter here and in logs, so
//! nothing in it may need escaping (`%`, spaces), resolve differently on the
//! way (`.`, `..`, `//`), or change the listing order between backends
//! (non-ASCII). With only `[A-Za-z0-9._-]` and `/`, byte order is the same
//! everywhere and a key printed in a log is exactly the key stored.

use std::{fmt, str::FromStr};

use crate::StoreError;

/// Longest key, in bytes. Leaves room under OpenBao's request-line and
/// storage-key limits once the mount and `data/` prefix are added.
pub const MAX_KEY_BYTES: usize = 512;

/// A validated document key: `/`-separated segments of `[A-Za-z0-9._-]+`,
/// none of them `.` or `..`, at most [`MAX_KEY_BYTES`] bytes.
///
/// [`Key::parse`] (or `str::parse`) is the only way to make one, so holding a
/// `Key` proves the path is safe to hand to any backend.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

/// Why a string is not a [`Key`]. The message never repeats the input: it may
/// hold control characters or be large, and it is logged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    /// The string is empty.
    #[error("key is empty")]
    Empty,
    /// Longer than [`MAX_KEY_BYTES`].
    #[error("key is {len} bytes, more than {MAX_KEY_BYTES}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A `/` at the start or end, or two in a row.
    #[error("key has an empty segment (segment {index})")]
    EmptySegment {
        /// Zero-based index of the empty segment.
        index: usize,
    },
    /// A `.` or `..` segment.
    #[error("key has a relative segment (segment {index})")]
    RelativeSegment {
        /// Zero-based index of the segment.
        index: usize,
    },
    /// A byte outside `[A-Za-z0-9._-/]`.
    #[error("key has a character outside [A-Za-z0-9._-/] at byte {at}")]
    BadCharacter {
        /// Byte offset of the first bad character.
        at: usize,
    },
}

impl From<InvalidKey> for StoreError {
    fn from(e: InvalidKey) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

fn segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

impl Key {
    /// Parses `s` strictly; nothing is normalised (no trimming, no collapsing
    /// of `//`), because a key that would need fixing is a caller's bug.
    pub fn parse(s: &str) -> Result<Self, InvalidKey> {
        if s.is_empty() {
            return Err(InvalidKey::Empty);
        }
        if s.len() > MAX_KEY_BYTES {
            return Err(InvalidKey::TooLong { len: s.len() });
        }
        if let Some(at) = s.bytes().position(|b| b != b'/' && !segment_byte(b)) {
            return Err(InvalidKey::BadCharacter { at });
        }
        for (index, segment) in s.split('/').enumerate() {
            match segment {
                "" => return Err(InvalidKey::EmptySegment { index }),
                "." | ".." => return Err(InvalidKey::RelativeSegment { index }),
                _ => {}
            }
        }
        Ok(Key(s.to_owned()))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its segments, first to last.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The key one level up, or `None` for a one-segment key (whose parent is
    /// the root, which is not a key).
    pub fn parent(&self) -> Option<Key> {
        // A prefix of a valid key ending before a `/` is itself valid.
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| Key(parent.to_owned()))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Key {
    type Err = InvalidKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Key::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_seed_layout_paths() {
        for ok in [
            "system",
            "tenants/acme/config",
            "tenants/acme/orgs/o-1/bots/b_2/secrets/db.password",
            "a/.../b",
            "A.b-C_9",
        ] {
            let key = Key::parse(ok).unwrap();
            assert_eq!(key.as_str(), ok);
        }
        let longest = "a".repeat(MAX_KEY_BYTES);
        assert_eq!(Key::parse(&longest).unwrap().as_str().len(), 512);
    }

    #[test]
    fn refuses_everything_outside_the_grammar() {
        let cases: &[(&str, InvalidKey)] = &[
            ("", InvalidKey::Empty),
            ("/", InvalidKey::EmptySegment { index: 0 }),
            ("/a", InvalidKey::EmptySegment { index: 0 }),
            ("a/", InvalidKey::EmptySegment { index: 1 }),
            ("a//b", InvalidKey::EmptySegment { index: 1 }),
            (".", InvalidKey::RelativeSegment { index: 0 }),
            ("a/./b", InvalidKey::RelativeSegment { index: 1 }),
            ("a/..", InvalidKey::RelativeSegment { index: 1 }),
            ("../a", InvalidKey::RelativeSegment { index: 0 }),
            ("a%2Fb", InvalidKey::BadCharacter { at: 1 }),
            ("a%2F..%2Fb", InvalidKey::BadCharacter { at: 1 }),
            ("a\0b", InvalidKey::BadCharacter { at: 1 }),
            ("a\nb", InvalidKey::BadCharacter { at: 1 }),
            ("a\tb", InvalidKey::BadCharacter { at: 1 }),
            ("a\u{7f}", InvalidKey::BadCharacter { at: 1 }),
            ("a b", InvalidKey::BadCharacter { at: 1 }),
            ("a\\b", InvalidKey::BadCharacter { at: 1 }),
            ("é", InvalidKey::BadCharacter { at: 0 }),
            ("tenants/a?x=1", InvalidKey::BadCharacter { at: 9 }),
            ("tenants/a#x", InvalidKey::BadCharacter { at: 9 }),
        ];
        for (input, expected) in cases {
            assert_eq!(Key::parse(input).as_ref(), Err(expected), "{input:?}");
        }
        let over = "a".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            Key::parse(&over),
            Err(InvalidKey::TooLong {
                len: MAX_KEY_BYTES + 1
            })
        );
    }

    #[test]
    fn errors_never_echo_the_input() {
        let err = Key::parse("secret\u{1b}[31m").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(matches!(
            StoreError::from(err),
            StoreError::Invalid(msg) if msg == "key has a character outside [A-Za-z0-9._-/] at byte 6"
        ));
    }

    #[test]
    fn name_parent_and_segments() {
        let key: Key = "tenants/acme/config".parse().unwrap();
        assert_eq!(key.name(), "config");
        assert_eq!(
            key.segments().collect::<Vec<_>>(),
            ["tenants", "acme", "config"]
        );
        let parent = key.parent().unwrap();
        assert_eq!(parent.as_str(), "tenants/acme");
        assert_eq!(parent.parent().unwrap().as_str(), "tenants");
        assert_eq!(Key::parse("system").unwrap().parent(), None);
        assert_eq!(Key::parse("system").unwrap().name(), "system");
    }
}
