//! The audit trail: one event per call, success or failure, naming who did
//! what to which resource and how it ended — never a value.

use std::{
    io::Write,
    sync::{Mutex, PoisonError},
};

use serde::Serialize;
use time::OffsetDateTime;

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
    /// The secret version read or written, when there is one.
    pub version: Option<u64>,
    /// For a resolve, the scope that answered.
    pub answered_by: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Where audit events go. Recording cannot fail from the caller's point of
/// view: the call has already happened, so a sink that cannot write logs the
/// failure itself (an operator alert) instead of undoing the call.
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: &AuditEvent);
}

/// Writes one JSON object per line to any writer (a file, stdout).
///
/// The writer sits behind a mutex and is written synchronously by the
/// calling task: fine for a file on local disk; a channel to a writer task,
/// so that callers never wait on audit I/O, is a later optimisation.
pub struct JsonLinesAudit<W: Write + Send + 'static> {
    out: Mutex<W>,
}

impl<W: Write + Send + 'static> JsonLinesAudit<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    /// The writer back (for tests and shutdown).
    pub fn into_inner(self) -> W {
        self.out
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W: Write + Send + 'static> AuditSink for JsonLinesAudit<W> {
    fn record(&self, event: &AuditEvent) {
        let line = match serde_json::to_vec(event) {
            Ok(mut line) => {
                line.push(b'\n');
                line
            }
            Err(e) => {
                tracing::error!(error = %e, "audit event not serialisable");
                return;
            }
        };
        // A writer that panicked mid-line leaves at worst a torn line; later
        // events are still worth keeping, so a poisoned lock is reused.
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
            tracing::error!(error = %e, "audit trail write failed");
        }
    }
}

/// Keeps events in memory, for tests.
#[derive(Default)]
pub struct MemoryAudit {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAudit {
    /// An empty trail.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Removes and returns every event so far.
    pub fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: &AuditEvent) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.clone());
    }
}

impl<S: AuditSink + ?Sized> AuditSink for std::sync::Arc<S> {
    fn record(&self, event: &AuditEvent) {
        (**self).record(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_writes_one_object_per_event() {
        let sink = JsonLinesAudit::new(Vec::new());
        let event = AuditEvent {
            at: OffsetDateTime::UNIX_EPOCH,
            principal: "operator api-key:k1".into(),
            operation: Operation::Put,
            resource: "system/secrets/email".into(),
            version: Some(2),
            answered_by: None,
            outcome: Outcome::Failed("VERSION_CONFLICT".into()),
        };
        sink.record(&event);
        sink.record(&event);
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            r#"{"at":"1970-01-01T00:00:00Z","principal":"operator api-key:k1","operation":"put","resource":"system/secrets/email","version":2,"answered_by":null,"outcome":{"failed":"VERSION_CONFLICT"}}"#
        );
    }
}
