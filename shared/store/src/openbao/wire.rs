//! KV v2's JSON, parsed into the contract's types. Anything missing or of the
//! wrong shape is [`StoreError::Corrupt`]: the server broke the contract.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Deserialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{Child, Document, Metadata, StoreError, VersionInfo, VersionState};

/// The field of KV's `data` object that holds the document, base64: KV
/// stores JSON objects, documents are opaque bytes.
const BODY_FIELD: &str = "b";

/// KV's `data` for a write: the document wrapped as `{"b": "<base64>"}`.
pub(super) fn write_body(body: &[u8], cas: Option<u64>) -> Value {
    let data = json!({ BODY_FIELD: STANDARD.encode(body) });
    match cas {
        Some(cas) => json!({ "data": data, "options": { "cas": cas } }),
        None => json!({ "data": data }),
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("openbao {what}: {e}"))
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, value: Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| corrupt(what, e))
}

fn timestamp(what: &str, s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| corrupt(what, e))
}

/// One version's record, as in a read's `metadata` or the `versions` map.
#[derive(Deserialize)]
struct VersionRecord {
    created_time: String,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

impl VersionRecord {
    /// We never set `delete_version_after`, so any deletion time is a past
    /// soft delete, not a scheduled one.
    fn state(&self) -> VersionState {
        if self.destroyed {
            VersionState::Destroyed
        } else if !self.deletion_time.is_empty() {
            VersionState::Deleted
        } else {
            VersionState::Live
        }
    }
}

#[derive(Deserialize)]
struct ReadMetadata {
    version: u64,
    #[serde(flatten)]
    record: VersionRecord,
}

#[derive(Deserialize)]
struct ReadData {
    data: Option<Value>,
    metadata: ReadMetadata,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

/// A 200 to `GET data/:key`: the document, or `NotFound { deleted: true }`
/// if the server answers a deleted version with no data.
pub(super) fn document(answer: Value) -> Result<Document, StoreError> {
    let read: Envelope<ReadData> = parse("read", answer)?;
    let meta = read.data.metadata;
    let Some(data) = read.data.data.filter(|d| !d.is_null()) else {
        return Err(StoreError::NotFound {
            deleted: meta.record.state() != VersionState::Live,
        });
    };
    let encoded = data
        .get(BODY_FIELD)
        .and_then(Value::as_str)
        .ok_or_else(|| corrupt("read", "data holds no base64 body"))?;
    let body = STANDARD
        .decode(encoded)
        .map_err(|e| corrupt("read body", e))?;
    Ok(Document {
        version: meta.version,
        created: timestamp("read created_time", &meta.record.created_time)?,
        body,
    })
}

/// A 404 to `GET data/:key`: KV attaches the version's metadata when the
/// version exists but was deleted or destroyed, and nothing otherwise.
pub(super) fn not_found(answer: &Value) -> StoreError {
    let metadata = answer.pointer("/data/metadata").cloned();
    let deleted = metadata
        .and_then(|m| serde_json::from_value::<VersionRecord>(m).ok())
        .is_some_and(|r| r.state() != VersionState::Live);
    StoreError::NotFound { deleted }
}

/// A 200 to `POST data/:key`: the version written.
pub(super) fn written_version(answer: Value) -> Result<u64, StoreError> {
    #[derive(Deserialize)]
    struct Written {
        version: u64,
    }
    let written: Envelope<Written> = parse("write", answer)?;
    Ok(written.data.version)
}

#[derive(Deserialize)]
struct KeyMetadata {
    current_version: u64,
    created_time: String,
    updated_time: String,
    versions: std::collections::BTreeMap<String, VersionRecord>,
}

/// A 200 to `GET metadata/:key`.
pub(super) fn metadata(answer: Value) -> Result<Metadata, StoreError> {
    let meta: Envelope<KeyMetadata> = parse("metadata", answer)?;
    let meta = meta.data;
    let mut versions = meta
        .versions
        .iter()
        .map(|(n, record)| {
            Ok(VersionInfo {
                version: n.parse().map_err(|e| corrupt("version number", e))?,
                created: timestamp("version created_time", &record.created_time)?,
                state: record.state(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // The map's keys are strings ("10" < "9"): order by number.
    versions.sort_by_key(|v| v.version);
    Ok(Metadata {
        current_version: meta.current_version,
        created: timestamp("created_time", &meta.created_time)?,
        updated: timestamp("updated_time", &meta.updated_time)?,
        versions,
    })
}

/// A 200 to a LIST: `name` is a document, `name/` a folder.
pub(super) fn children(answer: Value) -> Result<Vec<Child>, StoreError> {
    #[derive(Deserialize)]
    struct Keys {
        keys: Vec<String>,
    }
    let listed: Envelope<Keys> = parse("list", answer)?;
    listed
        .data
        .keys
        .into_iter()
        .map(|entry| {
            let child = match entry.strip_suffix('/') {
                Some(name) => Child::Folder(name.to_owned()),
                None => Child::Document(entry),
            };
            // One level only: a name is one non-empty segment.
            if child.name().is_empty() || child.name().contains('/') {
                return Err(corrupt("list", "an entry is not one segment"));
            }
            Ok(child)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_through_the_wrapper() {
        let body = [0u8, 255, 1, b'"'];
        let sent = write_body(&body, Some(0));
        assert_eq!(sent["options"]["cas"], 0);
        assert_eq!(sent["data"]["b"], "AP8BIg==");
        let read = json!({"data": {"data": sent["data"].clone(), "metadata": {
            "version": 3, "created_time": "2026-11-23T16:37:41.823550775Z",
            "deletion_time": "", "destroyed": false}}});
        let doc = document(read).unwrap();
        assert_eq!((doc.version, doc.body.as_slice()), (3, &body[..]));
        assert!(write_body(b"", None).get("options").is_none());
    }

    #[test]
    fn not_found_tells_deleted_from_absent() {
        let deleted = json!({"data": {"data": null, "metadata": {
            "version": 1, "created_time": "2026-11-23T16:37:41Z",
            "deletion_time": "2026-11-23T16:37:42Z", "destroyed": false}}});
        assert_eq!(not_found(&deleted), StoreError::NotFound { deleted: true });
        assert_eq!(
            not_found(&json!({"errors": []})),
            StoreError::NotFound { deleted: false }
        );
    }

    #[test]
    fn malformed_answers_are_corrupt() {
        let bad = [
            json!({"data": {"data": {"b": "not base64!"}, "metadata": {
                "version": 1, "created_time": "2026-11-23T16:37:41Z"}}}),
            json!({"data": {"data": {"x": 1}, "metadata": {
                "version": 1, "created_time": "2026-11-23T16:37:41Z"}}}),
            json!({"data": {"data": {"b": ""}, "metadata": {
                "version": 1, "created_time": "yesterday"}}}),
            json!({"nothing": true}),
        ];
        for answer in bad {
            assert!(
                matches!(document(answer.clone()), Err(StoreError::Corrupt(_))),
                "{answer}"
            );
        }
        let nested = json!({"data": {"keys": ["a/b"]}});
        assert!(matches!(children(nested), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn versions_are_ordered_by_number_not_text() {
        let record = json!({"created_time": "2026-11-23T16:37:41Z", "deletion_time": "", "destroyed": false});
        let answer = json!({"data": {"current_version": 10, "created_time": "2026-11-23T16:37:41Z",
            "updated_time": "2026-11-23T16:37:41Z",
            "versions": {"10": record.clone(), "9": {"created_time": "2026-11-23T16:37:41Z",
                "deletion_time": "2026-11-23T16:37:42Z", "destroyed": true}}}});
        let meta = metadata(answer).unwrap();
        let got: Vec<_> = meta.versions.iter().map(|v| (v.version, v.state)).collect();
        assert_eq!(
            got,
            [(9, VersionState::Destroyed), (10, VersionState::Live)]
        );
    }
}
