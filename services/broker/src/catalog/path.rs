//! Dotted paths into a JSON token response (`authed_user.access_token`).
//!
//! Segments are keys; a segment of digits also indexes an array
//! (`data.0.token`). No wildcards or escapes: provider keys never need them,
//! and a path that can only ever name one field is easy to review.

use std::fmt;

use serde_json::Value;

const MAX_SEGMENTS: usize = 8;
const MAX_SEGMENT_LEN: usize = 64;

/// A parsed dotted path.
#[derive(Clone, PartialEq, Eq)]
pub struct FieldPath {
    source: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses `source`: 1–8 segments of `[A-Za-z0-9_-]`, joined by dots.
    pub fn parse(source: &str) -> Result<Self, String> {
        let segments: Vec<String> = source.split('.').map(str::to_owned).collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("must have at most {MAX_SEGMENTS} segments"));
        }
        for s in &segments {
            if s.is_empty() {
                return Err(
                    "must be dotted keys like `authed_user.access_token` (empty segment)".into(),
                );
            }
            if s.len() > MAX_SEGMENT_LEN
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "segments may only hold letters, digits, '_' and '-' (at most {MAX_SEGMENT_LEN})"
                ));
            }
        }
        Ok(Self {
            source: source.to_owned(),
            segments,
        })
    }

    /// A one-segment path (a top-level key).
    pub(crate) fn top(key: &str) -> Self {
        Self {
            source: key.to_owned(),
            segments: vec![key.to_owned()],
        }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The last segment (the key that holds the value).
    pub fn leaf(&self) -> &str {
        self.segments.last().map_or("", String::as_str)
    }

    /// Whether the path is a single top-level key: the only kind a
    /// form-encoded body can hold.
    pub fn is_top_level(&self) -> bool {
        self.segments.len() == 1
    }

    /// The value at this path, if every step exists. `null` counts as
    /// absent: providers send `"refresh_token": null` to mean "none".
    pub fn lookup<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut at = root;
        for seg in &self.segments {
            at = match at {
                Value::Object(map) => map.get(seg)?,
                Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        (!at.is_null()).then_some(at)
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({:?})", self.source)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_looks_up() {
        let v = serde_json::json!({
            "authed_user": {"access_token": "xoxp", "refresh_token": null},
            "data": [{"token": "t0"}],
        });
        let p = FieldPath::parse("authed_user.access_token").unwrap();
        assert_eq!(p.lookup(&v), Some(&serde_json::json!("xoxp")));
        assert_eq!(p.leaf(), "access_token");
        assert!(!p.is_top_level());
        assert_eq!(
            FieldPath::parse("authed_user.refresh_token")
                .unwrap()
                .lookup(&v),
            None
        );
        assert_eq!(
            FieldPath::parse("data.0.token").unwrap().lookup(&v),
            Some(&serde_json::json!("t0"))
        );
        assert_eq!(FieldPath::parse("data.1.token").unwrap().lookup(&v), None);
        assert_eq!(
            FieldPath::parse("authed_user.access_token.x")
                .unwrap()
                .lookup(&v),
            None
        );
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a b",
            "a/b",
            "a.b.c.d.e.f.g.h.i",
            "a[0]",
        ] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
