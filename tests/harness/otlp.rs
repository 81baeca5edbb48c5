//! An OTLP/gRPC trace receiver, so a test can see the spans the gateway and the function
//! processes export and check a job's whole span tree.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// One span as received, with ids in lowercase hex.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The `service.name` of the resource that sent it.
    pub service_name: String,
    pub kind: SpanKind,
    pub attributes: Vec<(String, String)>,
    pub start_unix_nano: u64,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// Serves the OTLP trace service on `127.0.0.1:<free port>` and keeps every span it gets.
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Spans,
}

impl OtlpReceiver {
    /// A receiver served by the current runtime (it stops with the test's runtime). The
    /// processes under test export to it (`SURGE_TELEMETRY__OTLP_ENDPOINT`).
    pub async fn start() -> Self {
        Self::start_on(&tokio::runtime::Handle::current())
    }

    fn start_on(runtime: &tokio::runtime::Handle) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the receiver's address");
        let spans = Spans::default();
        let service = TraceServiceServer::new(Collector {
            spans: Arc::clone(&spans),
        });
        let _entered = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        runtime.spawn(async move {
            let incoming = TcpIncoming::from(listener);
            let served = Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming);
            if let Err(e) = served.await {
                eprintln!("the OTLP receiver stopped: {e}");
            }
        });
        Self { addr, spans }
    }

    /// `http://127.0.0.1:<port>`: for `telemetry.otlp_endpoint` / `SURGE_TELEMETRY__OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans of one trace received so far.
    pub fn trace(&self, trace_id_hex: &str) -> Vec<ReceivedSpan> {
        let spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id_hex)
            .cloned()
            .collect()
    }

    /// Waits until `min_spans` spans of the trace arrived, at most `timeout`; returns what
    /// arrived either way (assert on it, with [`tree`] in the message).
    pub async fn wait_for_trace(
        &self,
        trace_id_hex: &str,
        min_spans: usize,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.trace(trace_id_hex);
            if spans.len() >= min_spans || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Collector {
    spans: Spans,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(ReceivedSpan {
                    kind: span.kind(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    service_name: service_name.clone(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect(),
                    start_unix_nano: span.start_time_unix_nano,
                    name: span.name,
                });
            }
        }
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn text(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
    }
}

/// The spans as an indented tree (children by start time); a span whose parent is not among
/// them (the caller's, or one not exported yet) is a root.
pub fn tree(spans: &[ReceivedSpan]) -> String {
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&ReceivedSpan>> = HashMap::new();
    for span in spans {
        let parent = span.parent_span_id.as_str();
        let key = if ids.contains(parent) { parent } else { "" };
        children.entry(key).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_unix_nano);
    }
    fn render(
        out: &mut String,
        children: &HashMap<&str, Vec<&ReceivedSpan>>,
        key: &str,
        depth: usize,
    ) {
        for span in children.get(key).into_iter().flatten() {
            let _ = writeln!(
                out,
                "{:indent$}{} [{} {}] {} <- {}",
                "",
                span.name,
                span.service_name,
                span.kind.as_str_name(),
                span.span_id,
                if span.parent_span_id.is_empty() {
                    "-"
                } else {
                    &span.parent_span_id
                },
                indent = 2 * depth,
            );
            render(out, children, &span.span_id, depth + 1);
        }
    }
    let mut out = String::new();
    render(&mut out, &children, "", 0);
    out
}
