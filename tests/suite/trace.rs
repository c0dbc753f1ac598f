//! One edge request, one trace: the registry's span hangs under the edge's.

use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;

use crate::harness::{Suite, spans};

/// The server span that carries attribute `key` (`http.route` for the edge,
/// `rpc.system` for a gRPC service).
fn server_span_with<'a>(spans: &'a [SpanData], key: &str) -> Option<&'a SpanData> {
    spans.iter().find(|s| {
        s.span_kind == SpanKind::Server
            && s.attributes.iter().any(|kv| kv.key.as_str() == key)
            // The edge also verifies the caller's API key in this trace;
            // the span under test is the call the request itself made.
            && !s.name.ends_with("/VerifyApiKey")
    })
}

#[tokio::test]
async fn the_registry_span_is_a_child_of_the_edge_span() {
    let suite = Suite::start().await;
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let caller_span = "00f067aa0ba902b7";
    let resp = suite
        .http
        .post(suite.url("/tenants"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&serde_json::json!({"id": "traced", "display_name": "Traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);

    // Spans are exported as they end; the edge's ends just after the response.
    let mut ours = Vec::new();
    for _ in 0..50 {
        ours = spans()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect::<Vec<_>>();
        if server_span_with(&ours, "http.route").is_some()
            && server_span_with(&ours, "rpc.system").is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<&str> = ours.iter().map(|s| s.name.as_ref()).collect();
    let edge = server_span_with(&ours, "http.route")
        .unwrap_or_else(|| panic!("no edge span in {names:?}"));
    let registry = server_span_with(&ours, "rpc.system")
        .unwrap_or_else(|| panic!("no registry span in {names:?}"));

    // The edge continues the caller's trace...
    assert_eq!(edge.parent_span_id, SpanId::from_hex(caller_span).unwrap());
    assert_eq!(edge.name, "POST /tenants");
    assert_eq!(
        registry.name,
        "locksmith.registry.v1.TenantRegistryService/CreateTenant"
    );
    // ...and the registry's span descends from the edge's, in the same trace.
    let mut cursor = registry.parent_span_id;
    let mut hops = 0;
    while cursor != edge.span_context.span_id() {
        let parent = ours
            .iter()
            .find(|s| s.span_context.span_id() == cursor)
            .unwrap_or_else(|| panic!("registry span's ancestry leaves the trace: {names:?}"));
        cursor = parent.parent_span_id;
        hops += 1;
        assert!(hops < 5, "no path from the registry span to the edge span");
    }
}
