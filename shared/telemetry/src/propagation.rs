//! W3C trace context in HTTP headers; gRPC metadata is HTTP/2 headers too, so
//! one pair of functions serves axum handlers and tower layers around tonic.
//!
//! These always speak W3C TraceContext rather than asking the global
//! propagator: they then work in unit tests and tools that never call
//! [`init`](crate::init), and the wire format cannot drift per process.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // `insert`, not `append`: a stale traceparent from an earlier hop must not survive.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The remote context carried by `headers`; an empty context when there is
/// none or it does not parse (the caller then starts a new trace).
pub fn extract_context(headers: &HeaderMap) -> Context {
    // From an empty base, not `Context::current()`: the result must say what
    // the *headers* carry, not echo whatever span happens to be active.
    TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(headers))
}

/// Writes `cx` into `headers` as `traceparent` (and `tracestate`); writes
/// nothing when `cx` has no valid span.
pub fn inject_context(cx: &Context, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the remote context in `headers`, if they carry
/// one; otherwise `span` keeps its local parent (or starts a trace).
///
/// Call it right after creating the span: `set_parent` fails once the span
/// has been entered or its context read.
pub fn set_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    let parent = extract_context(headers);
    if parent.span().span_context().is_valid() {
        // Errs only when the span is disabled, has no OpenTelemetry layer, or
        // already started; in each case there is nothing useful to link.
        let _ = span.set_parent(parent);
    }
}

/// Hex trace id (32 chars) of the current span, for problem bodies and logs;
/// `None` outside any span known to the OpenTelemetry layer.
pub fn current_trace_id() -> Option<String> {
    let from_span = tracing::Span::current().context();
    // The current tracing span may be below the OpenTelemetry layer's level;
    // entering spans activates their context, so the nearest one seen by the
    // layer is still the active OpenTelemetry context.
    [from_span, Context::current()].into_iter().find_map(|cx| {
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| sc.trace_id().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn extract_then_inject_round_trips_without_a_global_propagator() {
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
        let cx = extract_context(&incoming);
        assert!(cx.span().span_context().is_remote());
        let mut outgoing = HeaderMap::new();
        inject_context(&cx, &mut outgoing);
        assert_eq!(outgoing["traceparent"], TRACEPARENT);
    }

    #[test]
    fn no_or_bad_header_means_no_context() {
        assert!(!extract_context(&HeaderMap::new()).has_active_span());
        let mut bad = HeaderMap::new();
        bad.insert("traceparent", HeaderValue::from_static("00-zz-zz-01"));
        assert!(!extract_context(&bad).has_active_span());
        let mut out = HeaderMap::new();
        inject_context(&Context::new(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn no_trace_id_outside_spans() {
        assert_eq!(current_trace_id(), None);
    }
}
