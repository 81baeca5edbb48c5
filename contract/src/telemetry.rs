//! Logging and tracing for every Surge process, and W3C trace context carried in events.
//!
//! Spans always get real trace and span ids (an SDK tracer provider is installed even when
//! nothing is exported), so `traceparent` travels gateway → queue → function → reply and a job
//! is one trace. Spans are exported over OTLP/gRPC only when an endpoint is configured.

use std::collections::HashMap;
use std::io::IsTerminal as _;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How a process logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `text` (readable, for development) or `json` (one object per line, for production).
    /// Logs go to stderr, so a command's output on stdout stays clean.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,surge_runtime=debug`.
    pub log_filter: String,
    /// OTLP/gRPC endpoint (`http://collector:4317`); spans are exported only when set.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) sets it too.
    pub otlp_endpoint: Option<String>,
    /// The service name spans are exported under, instead of the process's own
    /// (`surge-gateway`, `surge-<function>`); `OTEL_SERVICE_NAME` sets it too.
    pub service_name: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            otlp_endpoint: None,
            service_name: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the tracer provider alive; flush it with [`Telemetry::shutdown`] before exit.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Installs the global subscriber for `service` (unless `telemetry.service_name` names
    /// another). Call once, inside the tokio runtime.
    pub fn init(service: &str, settings: &TelemetrySettings) -> anyhow::Result<Self> {
        let service = settings
            .service_name
            .clone()
            .unwrap_or_else(|| service.to_owned());
        let mut builder = SdkTracerProvider::builder().with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.clone())
                .build(),
        );
        if let Some(endpoint) = &settings.otlp_endpoint {
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()?;
            builder = builder.with_batch_exporter(exporter);
        }
        let provider = builder.build();
        let tracer = provider.tracer(service);
        let filter = EnvFilter::try_new(&settings.log_filter)
            .map_err(|e| anyhow::anyhow!("telemetry.log_filter is invalid: {e}"))?;
        // The log filter applies to the log output only: quieter logs must not cut spans out
        // of traces (a filtered-out span has no trace context to propagate).
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
        let registry = tracing_subscriber::registry().with(otel);
        match settings.log_format {
            LogFormat::Json => registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_writer(std::io::stderr)
                        .with_filter(filter),
                )
                .try_init()?,
            LogFormat::Text => registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        // Colour for a person at a terminal only: redirected to a file or a
                        // pipe, escape codes are noise.
                        .with_ansi(std::io::stderr().is_terminal())
                        .with_filter(filter),
                )
                .try_init()?,
        }
        Ok(Self { provider })
    }

    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "flushing spans at exit failed");
        }
    }
}

/// The W3C trace context of `span`, as `traceparent` (and `tracestate` when set).
pub fn trace_context(span: &tracing::Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier
}

/// Makes `span` a child of the trace context in `carrier` (`traceparent`, `tracestate`).
/// An absent or malformed context leaves the span a root.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    let parent = TraceContextPropagator::new().extract(carrier);
    let _ = span.set_parent(parent);
    record_trace_id(span);
}

/// The W3C trace context a CloudEvent carries in its extensions (distributed tracing).
pub fn event_trace_context(event: &cloudevents::Event) -> HashMap<String, String> {
    [crate::job::ext::TRACEPARENT, crate::job::ext::TRACESTATE]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), event.extension(name)?.to_string())))
        .collect()
}

/// Records the span's trace id in its `trace_id` field (declared `Empty` where the span is
/// made), so every log line inside it names the trace to look up. Read from the span's
/// context as it is; a span without the field costs nothing.
fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    if span
        .metadata()
        .is_none_or(|m| m.fields().field("trace_id").is_none())
    {
        return;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}

/// The trace id in a `traceparent` value (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32).then_some(trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_read_from_traceparent() {
        assert_eq!(
            trace_id_of("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(trace_id_of("garbage"), None);
    }
}
