//! JSON bodies, and what a caller is told when one does not fit.
//!
//! serde's messages name Rust types (`expected struct CreateTenant`,
//! `expected u64`) and quote the values they could not use, which may be
//! secrets. Here the body is read with `serde_path_to_error`, so the failing
//! field's JSON path is known, and each serde error is classified into one
//! fixed sentence. The raw message only reaches the debug log.

use locksmith_errors::{ApiError, FieldViolation};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::error::Category;
use serde_path_to_error::{Path, Segment};

use crate::problem::{self, BODY, GIVEN_TWICE, printable};

/// Sentences the edge's own deserializers (`dto`) raise: written for callers,
/// so they pass as they are. Any other custom message is not shown.
const CALLER_SENTENCES: &[&str] = &[
    GIVEN_TWICE,
    crate::dto::VERSION_AT_LEAST_1,
    crate::dto::NO_TENANT_CHANGE,
    crate::dto::NO_MEMBER_CHANGE,
    crate::dto::NO_USER_CHANGE,
];

/// Parses a request body as `T`, which must be a JSON object.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(body_error("is empty: send a JSON object")),
        Some(b'{') => {}
        // Every body of this API is an object. serde_json would fill a struct
        // from an array field by field, and name the fields by position.
        Some(_) => {
            return Err(match serde_json::from_slice::<IgnoredAny>(bytes) {
                Ok(_) => body_error("must be a JSON object"),
                Err(e) => not_json(&e),
            });
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| classify(&e))?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

fn body_error(description: &str) -> ApiError {
    problem::invalid_field(BODY, description)
}

fn not_json(e: &serde_json::Error) -> ApiError {
    tracing::debug!(error = %e, "request body is not JSON");
    body_error(&format!(
        "is not valid JSON (line {}, column {})",
        e.line(),
        e.column()
    ))
}

fn classify(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    if inner.classify() != Category::Data {
        return not_json(inner);
    }
    let path = json_path(e.path());
    let message = message_of(inner);
    tracing::debug!(error = %inner, path = %path, "request body does not fit");
    let (field, description) = describe(&path, &message);
    problem::invalid(vec![FieldViolation {
        field: if field.is_empty() {
            BODY.to_owned()
        } else {
            field
        },
        description,
    }])
}

/// serde_json's message without its ` at line L column C` suffix.
fn message_of(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&suffix) {
        Some(m) => m.to_owned(),
        None => full,
    }
}

/// The path in the caller's terms: `quotas.max_connections`, `settings.a`,
/// `enabled_integrations[1]`; empty for the body itself.
fn json_path(path: &Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                push_name(&mut out, &printable(key));
            }
            Segment::Unknown => push_name(&mut out, "?"),
        }
    }
    out
}

fn push_name(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
}

fn child(path: &str, name: &str) -> String {
    let mut out = path.to_owned();
    push_name(&mut out, &printable(name));
    out
}

/// The field and the sentence for a serde data error `message` at `path`.
fn describe(path: &str, message: &str) -> (String, String) {
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        return (child(path, name), "is required".to_owned());
    }
    if let Some(name) = message
        .strip_prefix("duplicate field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        return (child(path, name), GIVEN_TWICE.to_owned());
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // The name is the caller's text and may itself hold "`, expected":
        // serde's own part is the last one.
        let name = rest
            .rfind("`, expected ")
            .map(|end| &rest[..end])
            .or_else(|| rest.strip_suffix("`, there are no fields"))
            .unwrap_or(rest);
        // The key is read when the error strikes, so the path usually ends in it already.
        let named = path == printable(name) || path.ends_with(&format!(".{}", printable(name)));
        let field = if named {
            path.to_owned()
        } else {
            child(path, name)
        };
        return (field, "is not a field of this request".to_owned());
    }
    if CALLER_SENTENCES.contains(&message) {
        return (path.to_owned(), message.to_owned());
    }
    // The unexpected part may quote the caller's value, so only serde's
    // `expected …` tail (the last one) is read.
    const EXPECTED: &str = ", expected ";
    let expected = [
        "invalid type: ",
        "invalid value: ",
        "invalid length ",
        "unknown variant `",
    ]
    .iter()
    .any(|p| message.starts_with(p))
    .then(|| {
        message
            .rfind(EXPECTED)
            .map(|i| &message[i + EXPECTED.len()..])
    })
    .flatten()
    .and_then(sentence_for);
    match expected {
        Some(sentence) => (path.to_owned(), sentence),
        None => (path.to_owned(), "is not valid here".to_owned()),
    }
}

/// What a value must be, from serde's `expected …` (a Visitor's `expecting`).
fn sentence_for(expected: &str) -> Option<String> {
    let sentence = match expected {
        "a string" => "must be a string".to_owned(),
        "u32" => format!("must be a whole number from 0 to {}", u32::MAX),
        "u64" => format!("must be a whole number from 0 to {}", u64::MAX),
        "a map" => "must be an object".to_owned(),
        "a sequence" => "must be an array".to_owned(),
        "a boolean" => "must be true or false".to_owned(),
        e if e.starts_with("struct ") => "must be an object".to_owned(),
        // The edge's own visitors already speak in sentences.
        e if e.starts_with("a whole number from ") || e.starts_with("one of ") => {
            format!("must be {e}")
        }
        _ => return None,
    };
    Some(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_become_sentences() {
        let cases = [
            ("", "missing field `id`", "id", "is required"),
            (
                "quotas",
                "duplicate field `x`",
                "quotas.x",
                "is given twice",
            ),
            (
                "",
                "unknown field `a`, expected `b`, expected one of `c`",
                "a`, expected `b",
                "is not a field of this request",
            ),
            (
                "quotas",
                "unknown field `z`, there are no fields",
                "quotas.z",
                "is not a field of this request",
            ),
            (
                "quotas.z",
                "unknown field `z`, expected `a`",
                "quotas.z",
                "is not a field of this request",
            ),
            (
                "a",
                r#"invalid type: string "x, expected u32", expected a string"#,
                "a",
                "must be a string",
            ),
            (
                "a",
                "invalid value: integer `-1`, expected u32",
                "a",
                "must be a whole number from 0 to 4294967295",
            ),
            (
                "a",
                "invalid type: map, expected a sequence",
                "a",
                "must be an array",
            ),
            ("a", "something else entirely", "a", "is not valid here"),
            (
                "a",
                "invalid type: map, expected a wonder",
                "a",
                "is not valid here",
            ),
        ];
        for (path, message, field, sentence) in cases {
            assert_eq!(
                describe(path, message),
                (field.to_owned(), sentence.to_owned()),
                "{message}"
            );
        }
    }
}
