//! The credential store's audit trail: one event per call, success or
//! failure, naming who did what to which resource and how it ended — never
//! a value.
//!
//! The event is [`AuditEvent`]; how it reaches the trail is
//! `locksmith-audit`'s (a writer thread behind a bounded queue: "every read
//! is audited" holds under load too, see that crate's docs). The names the
//! credential store has always used are kept here, fixed to [`AuditEvent`].

use serde::Serialize;
use time::OffsetDateTime;

pub use locksmith_audit::{AUDIT_QUEUE, AuditSink, Recording};

/// The credential store's JSON-lines audit writer
/// ([`locksmith_audit::JsonLinesAudit`] of [`AuditEvent`]s).
pub type JsonLinesAudit = locksmith_audit::JsonLinesAudit<AuditEvent>;

/// The credential store's in-memory trail, for tests
/// ([`locksmith_audit::MemoryAudit`] of [`AuditEvent`]s).
pub type MemoryAudit = locksmith_audit::MemoryAudit<AuditEvent>;

/// What was attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Read one secret.
    Get,
    /// Write a secret version.
    Put,
    /// List names under a scope.
    List,
    /// Resolve a name up a scope's ancestry.
    Resolve,
    /// Soft-delete versions.
    SoftDelete,
    /// Restore soft-deleted versions.
    Undelete,
    /// Destroy versions for good.
    Destroy,
    /// Erase a secret with its whole history.
    Purge,
    /// Create an owner's key ring.
    ProvisionKey,
    /// Add a key version.
    RotateKey,
    /// Destroy an owner's key ring (crypto-shredding).
    ShredKey,
    /// Rewrite a secret's latest version sealed under the owner's newest key
    /// (the background sweep after a rotation; a new secret version).
    Reencrypt,
    /// Read a connection record (tokens and state).
    GetConnection,
    /// Write a connection record's next version.
    PutConnection,
    /// List an owner's connection records (names only).
    ListConnections,
    /// Erase a connection record with its history.
    DeleteConnection,
    /// Read every connection record of a tenant (the broker's health counts).
    ListTenantConnections,
    /// Erase a member scope's secrets and connection records.
    EraseScope,
}

/// How a call ended: `ok`, or the error code it answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed with this error code (`NOT_FOUND`…); the cause, if ours,
    /// is in the service log.
    Failed(String),
}

/// One audit record. Holds names and numbers only: no field values, no
/// field names even (they can be chosen by the caller and say too much).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// When, from the store's injected clock.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who ([`locksmith_auth::Principal::describe`]).
    pub principal: String,
    /// What.
    pub operation: Operation,
    /// The resource: a secret's resource name, a scope, or a key ring.
    pub resource: String,
    /// The secret version read or written, when there is one; for a key
    /// provisioning or rotation, the owner's key version afterwards.
    pub version: Option<u64>,
    /// For a resolve, the scope that answered.
    pub answered_by: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_json_object_of_names_and_numbers() {
        let event = AuditEvent {
            at: OffsetDateTime::UNIX_EPOCH,
            principal: "operator api-key:k1".into(),
            operation: Operation::Put,
            resource: "system/secrets/email".into(),
            version: Some(2),
            answered_by: None,
            outcome: Outcome::Failed("VERSION_CONFLICT".into()),
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"at":"1970-01-01T00:00:00Z","principal":"operator api-key:k1","operation":"put","resource":"system/secrets/email","version":2,"answered_by":null,"outcome":{"failed":"VERSION_CONFLICT"}}"#
        );
        let ok = AuditEvent {
            operation: Operation::ListTenantConnections,
            answered_by: Some("tenant/acme".into()),
            outcome: Outcome::Ok,
            ..event
        };
        let json = serde_json::to_string(&ok).unwrap();
        assert!(
            json.contains(r#""operation":"list_tenant_connections""#),
            "{json}"
        );
        assert!(json.contains(r#""answered_by":"tenant/acme""#), "{json}");
        assert!(json.contains(r#""outcome":"ok""#), "{json}");
    }

    #[tokio::test]
    async fn the_credential_stores_sinks_take_its_events() {
        let memory = std::sync::Arc::new(MemoryAudit::new());
        let sink: std::sync::Arc<dyn AuditSink<AuditEvent>> = memory.clone();
        let event = AuditEvent {
            at: OffsetDateTime::UNIX_EPOCH,
            principal: "service credstore".into(),
            operation: Operation::Reencrypt,
            resource: "tenant/acme/secrets/db".into(),
            version: Some(3),
            answered_by: None,
            outcome: Outcome::Ok,
        };
        sink.record(event.clone()).await;
        assert_eq!(memory.events(), vec![event]);
    }
}
