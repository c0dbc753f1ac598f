//! The audit trail's machinery, shared by every service that keeps one: one
//! event per call, success or failure, naming who did what to which
//! resource and how it ended — never a value. What an event holds is the
//! service's business (its own `Serialize` type); how it reaches the trail
//! is this crate's.
//!
//! [`JsonLinesAudit`] keeps file I/O off the request path: a call hands its
//! event to a bounded queue and goes on; a dedicated writer thread
//! serialises events, writes them in batches and flushes once per batch,
//! then rests 2 ms before waiting again, so that under load the callers'
//! events queue without waking it one by one. When the queue is full the call waits for room (backpressure): a request
//! is slowed rather than its event dropped, because "every call is audited"
//! must hold under load too. [`JsonLinesAudit::close`] writes out everything
//! queued before it; an event recorded after that goes to the service log
//! instead of the trail, with an error, never nowhere.
//!
//! [`MemoryAudit`] keeps events in memory, for tests.

use std::{
    future::Future,
    io::Write,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// What [`AuditSink::record`] answers: a future that completes once the
/// event is accepted (queued or written).
pub type Recording<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where audit events of type `E` go. Recording cannot fail from the
/// caller's point of view: the call has already happened, so a sink that
/// cannot write logs the failure itself (an operator alert) instead of
/// undoing the call. It may make the caller wait (backpressure), never drop
/// the event silently.
pub trait AuditSink<E>: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: E) -> Recording<'_>;
}

/// How many events may wait for the writer before callers wait in turn: a
/// few seconds of a busy replica's calls, so a slow disk hiccup never
/// reaches a request, and a bounded amount of memory when the disk is gone.
pub const AUDIT_QUEUE: usize = 8192;
/// How long the writer rests after a batch before it waits for the next
/// event: the most an event waits in the queue for a batch to fill.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// Largest batch the writer builds before writing and flushing it.
const BATCH_BYTES: usize = 256 * 1024;

enum Msg<E> {
    Event(E),
    /// Write out everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then stop: later events go to the service log.
    Close(oneshot::Sender<()>),
}

/// Writes one JSON object per event and line to any writer (a file,
/// stdout), from a writer thread fed by a bounded queue (see the crate
/// docs).
pub struct JsonLinesAudit<E> {
    queue: mpsc::Sender<Msg<E>>,
    /// Whether the queue was last seen full, so a sustained overload is
    /// reported once rather than once per event.
    saturated: AtomicBool,
}

impl<E: Serialize + Send + 'static> JsonLinesAudit<E> {
    /// A sink writing to `out` through a writer thread, with a queue of
    /// [`AUDIT_QUEUE`] events.
    pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<Self> {
        Self::with_capacity(out, AUDIT_QUEUE)
    }

    /// [`JsonLinesAudit::start`] with a queue of `capacity` events (at least 1).
    pub fn with_capacity<W: Write + Send + 'static>(
        out: W,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let (queue, events) = mpsc::channel(capacity.max(1));
        // A thread, not a task: file writes block, and they must not hold a
        // runtime worker that requests need.
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(out, events))?;
        Ok(Self {
            queue,
            saturated: AtomicBool::new(false),
        })
    }

    /// Waits until every event recorded before this call is written and
    /// flushed to the writer.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.queue.send(Msg::Flush(ack)).await.is_ok() {
            // The writer answers once the batch holding everything before
            // the request is written; if it is gone, there is nothing to wait for.
            let _ = done.await;
        }
    }

    /// Writes out every event recorded so far and stops the writer (at
    /// shutdown, after the server has drained its calls). Events recorded
    /// later are logged as errors instead. Closing twice is harmless.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.queue.send(Msg::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// The event's line, without its trailing newline.
fn line_of<E: Serialize>(event: &E) -> Option<Vec<u8>> {
    match serde_json::to_vec(event) {
        Ok(line) => Some(line),
        Err(e) => {
            // Events hold names and numbers only; this is a bug, not data.
            tracing::error!(error = %e, "audit event not serialisable");
            None
        }
    }
}

/// An event that cannot reach the trail is kept in the service log: it holds
/// no value, and an operator must see that the trail has a gap.
fn log_lost<E: Serialize>(event: &E, why: &str) {
    let line = line_of(event)
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default();
    tracing::error!(event = %line, "audit event not written to the trail: {why}");
}

fn write_loop<E: Serialize, W: Write>(mut out: W, mut events: mpsc::Receiver<Msg<E>>) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    let mut pending: Vec<E> = Vec::new();
    while let Some(first) = events.blocking_recv() {
        let mut acks = Vec::new();
        let mut stop = false;
        let mut next = Some(first);
        // Take whatever is already queued, up to one batch, so a burst costs
        // one write and one flush instead of one per event.
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(event) => {
                    if let Some(line) = line_of(&event) {
                        batch.extend_from_slice(&line);
                        batch.push(b'\n');
                        pending.push(event);
                    }
                }
                Msg::Flush(ack) => acks.push(ack),
                Msg::Close(ack) => {
                    acks.push(ack);
                    stop = true;
                    break;
                }
            }
            if batch.len() < BATCH_BYTES {
                next = events.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
                tracing::error!(error = %e, events = pending.len(), "audit trail write failed");
                for event in &pending {
                    log_lost(event, "the trail could not be written");
                }
            }
            batch.clear();
            pending.clear();
        }
        for ack in acks {
            let _ = ack.send(());
        }
        if !stop {
            // Linger before waiting again: events queued meanwhile wake no
            // one (a parked writer costs every sender a futex wake, which
            // under load cost more than writing) and go out as one batch.
            std::thread::sleep(LINGER);
        }
        if stop {
            events.close();
            // Events that raced with the close: still recorded, in the log.
            while let Ok(msg) = events.try_recv() {
                match msg {
                    Msg::Event(event) => log_lost(&event, "the trail is closed"),
                    Msg::Flush(ack) | Msg::Close(ack) => {
                        let _ = ack.send(());
                    }
                }
            }
            return;
        }
    }
}

impl<E: Serialize + Send + 'static> AuditSink<E> for JsonLinesAudit<E> {
    fn record(&self, event: E) -> Recording<'_> {
        Box::pin(async move {
            match self.queue.try_send(Msg::Event(event)) {
                Ok(()) => {
                    self.saturated.store(false, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    if !self.saturated.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "the audit queue is full: calls wait for the audit trail (disk too slow?)"
                        );
                    }
                    // Backpressure: this call waits for room rather than
                    // losing its record.
                    if let Err(mpsc::error::SendError(Msg::Event(event))) =
                        self.queue.send(msg).await
                    {
                        log_lost(&event, "the trail is closed");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(msg)) => {
                    if let Msg::Event(event) = msg {
                        log_lost(&event, "the trail is closed");
                    }
                }
            }
        })
    }
}

/// Keeps events in memory, for tests.
pub struct MemoryAudit<E> {
    events: Mutex<Vec<E>>,
}

impl<E> Default for MemoryAudit<E> {
    fn default() -> Self {
        Self {
            events: Mutex::new(Vec::new()),
        }
    }
}

impl<E> MemoryAudit<E> {
    /// An empty trail.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes and returns every event so far.
    pub fn take(&self) -> Vec<E> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<E: Clone> MemoryAudit<E> {
    /// Every event so far, oldest first.
    pub fn events(&self) -> Vec<E> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<E: Send + 'static> AuditSink<E> for MemoryAudit<E> {
    fn record(&self, event: E) -> Recording<'_> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        Box::pin(std::future::ready(()))
    }
}

impl<E, S: AuditSink<E> + ?Sized> AuditSink<E> for Arc<S> {
    fn record(&self, event: E) -> Recording<'_> {
        (**self).record(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read while the sink owns it; counts flushes.
    #[derive(Clone, Default)]
    struct Shared {
        bytes: Arc<Mutex<Vec<u8>>>,
        flushes: Arc<Mutex<usize>>,
    }

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            *self.flushes.lock().unwrap() += 1;
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.bytes.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// A writer that blocks until the test opens the gate.
    struct Gated {
        inner: Shared,
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.inner.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }

    /// A test event, about the size of a real one (so a batch holds about
    /// as many).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    struct Event {
        at: &'static str,
        principal: &'static str,
        operation: &'static str,
        resource: &'static str,
        version: Option<u64>,
        answered_by: Option<&'static str>,
        outcome: Outcome,
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Outcome {
        Failed(&'static str),
    }

    fn event(n: u64) -> Event {
        Event {
            at: "1970-01-01T00:00:00Z",
            principal: "operator api-key:k1",
            operation: "put",
            resource: "system/secrets/email",
            version: Some(n),
            answered_by: None,
            outcome: Outcome::Failed("VERSION_CONFLICT"),
        }
    }

    #[tokio::test]
    async fn json_lines_writes_one_object_per_event_in_order() {
        let out = Shared::default();
        let sink = JsonLinesAudit::start(out.clone()).unwrap();
        for n in 1..=3 {
            sink.record(event(n)).await;
        }
        sink.flush().await;
        let lines = out.lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            r#"{"at":"1970-01-01T00:00:00Z","principal":"operator api-key:k1","operation":"put","resource":"system/secrets/email","version":2,"answered_by":null,"outcome":{"failed":"VERSION_CONFLICT"}}"#
        );
        assert!(lines[2].contains(r#""version":3"#));
    }

    #[tokio::test]
    async fn close_writes_everything_queued_and_later_events_do_not_reach_the_file() {
        let out = Shared::default();
        // Held shut until every event is queued, so batching is observable.
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let sink = JsonLinesAudit::start(Gated {
            inner: out.clone(),
            gate: gate.clone(),
        })
        .unwrap();
        for n in 1..=500 {
            sink.record(event(n)).await;
        }
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        sink.close().await;
        let lines = out.lines();
        assert_eq!(lines.len(), 500);
        assert!(lines[499].contains(r#""version":500"#));
        // Batched: the batch the writer held when the gate shut, then the
        // rest at once; not one flush per event.
        let flushes = *out.flushes.lock().unwrap();
        assert!((1..=3).contains(&flushes), "{flushes} flushes");
        // After close: logged instead, and the call still returns.
        sink.record(event(501)).await;
        sink.close().await;
        sink.flush().await;
        assert_eq!(out.lines().len(), 500);
    }

    #[tokio::test]
    async fn a_full_queue_makes_callers_wait_and_loses_nothing() {
        let out = Shared::default();
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let sink = Arc::new(
            JsonLinesAudit::with_capacity(
                Gated {
                    inner: out.clone(),
                    gate: gate.clone(),
                },
                2,
            )
            .unwrap(),
        );
        // The writer is stuck writing its first batch (at most BATCH_BYTES,
        // about 1300 of these events); the queue of 2 fills up behind it.
        const EVENTS: u64 = 3000;
        let writer = {
            let sink = sink.clone();
            tokio::spawn(async move {
                for n in 1..=EVENTS {
                    sink.record(event(n)).await;
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !writer.is_finished(),
            "the caller should be waiting for room"
        );
        assert!(sink.saturated.load(Ordering::Relaxed));
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        writer.await.unwrap();
        sink.close().await;
        let versions: Vec<String> = out
            .lines()
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["version"].to_string()
            })
            .collect();
        let want: Vec<String> = (1..=EVENTS).map(|n| n.to_string()).collect();
        assert_eq!(versions, want);
    }

    #[tokio::test]
    async fn memory_keeps_events_in_order_until_taken() {
        let sink = MemoryAudit::new();
        sink.record(event(1)).await;
        sink.record(event(2)).await;
        assert_eq!(sink.events(), vec![event(1), event(2)]);
        assert_eq!(sink.take(), vec![event(1), event(2)]);
        assert!(sink.events().is_empty());
    }

    #[tokio::test]
    async fn a_shared_sink_records_through_its_arc_as_a_trait_object() {
        let memory = Arc::new(MemoryAudit::new());
        let sink: Arc<dyn AuditSink<Event>> = memory.clone();
        sink.record(event(7)).await;
        // `Arc<S>` is a sink too: a service can hold it by value.
        fn record_via<S: AuditSink<Event>>(sink: &S) -> Recording<'_> {
            sink.record(event(8))
        }
        record_via(&sink).await;
        assert_eq!(memory.take(), vec![event(7), event(8)]);
    }
}
