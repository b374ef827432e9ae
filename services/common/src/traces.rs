//! OpenTelemetry traces: exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set, and carried from service to service as a W3C `traceparent`: on HTTP
//! requests into ingest and on the Kafka messages it produces, so that one
//! event's ingest request, produce and processor write are one trace.
//!
//! The standard variables apply: `OTEL_SERVICE_NAME` (else the service's
//! own name), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` (default: follow the parent, else sample all),
//! `OTEL_SDK_DISABLED=true`. Without an endpoint, or in a build without the
//! `otel` feature, nothing is exported and every function here returns at
//! once.

use std::time::SystemTime;

/// The W3C trace context header, on HTTP requests and Kafka messages alike.
pub const TRACEPARENT: &str = "traceparent";

/// Keeps the exporter alive; dropping it sends the spans still queued.
#[derive(Default)]
pub struct TraceExport {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take() {
            // A collector that is gone must not hold up the exit: it is told in the log.
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "could not send the last spans");
            }
        }
    }
}

/// Whether spans are exported in this process.
pub fn enabled() -> bool {
    #[cfg(feature = "otel")]
    return otel::TRACER.get().is_some();
    #[cfg(not(feature = "otel"))]
    false
}

/// The `traceparent` of the current span, to put on what this span sends
/// (a Kafka message); `None` when traces are off or the span is not sampled.
pub fn current_traceparent() -> Option<String> {
    #[cfg(feature = "otel")]
    return otel::current_traceparent();
    #[cfg(not(feature = "otel"))]
    None
}

/// Makes `span` a child of a caller's `traceparent` (an HTTP header), so a
/// client's trace continues through us. A malformed value is ignored.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    #[cfg(feature = "otel")]
    otel::continue_from(span, traceparent);
    #[cfg(not(feature = "otel"))]
    let _ = (span, traceparent);
}

/// Records a finished span `name` from `started` until now, as a child of
/// `traceparent` (the trace of the event it is about) and linked to the
/// current span (the batch it was part of).
pub fn record_child(
    name: &'static str,
    traceparent: &str,
    started: SystemTime,
    attributes: &[(&'static str, String)],
) {
    #[cfg(feature = "otel")]
    otel::record_child(name, traceparent, started, attributes);
    #[cfg(not(feature = "otel"))]
    let _ = (name, traceparent, started, attributes);
}

#[cfg(feature = "otel")]
pub(crate) use otel::layer;

#[cfg(feature = "otel")]
mod otel {
    use std::sync::OnceLock;
    use std::time::SystemTime;

    use opentelemetry::trace::{
        Link, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
        TracerProvider,
    };
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use opentelemetry_sdk::Resource;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    use super::TraceExport;
    use crate::config::Env;

    /// The tracer of this process, once export is on.
    pub(super) static TRACER: OnceLock<SdkTracer> = OnceLock::new();

    /// The `tracing` layer that turns spans into OpenTelemetry spans, when
    /// an endpoint is configured; `None` (and nothing exported) otherwise.
    pub(crate) fn layer<S>(
        env: &Env,
        service: &'static str,
    ) -> (Option<Box<dyn Layer<S> + Send + Sync>>, TraceExport)
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let configured = env.optional("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || env.optional("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
        let disabled = env
            .optional("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env
                .optional("OTEL_TRACES_EXPORTER")
                .is_some_and(|v| v == "none");
        if !configured || disabled || TRACER.get().is_some() {
            return (None, TraceExport::default());
        }
        // The exporter reads the endpoint, headers and timeout from the
        // standard variables itself.
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("traces are off: cannot build the OTLP exporter: {e}");
                return (None, TraceExport::default());
            }
        };
        let named_by_env = env.optional("OTEL_SERVICE_NAME").is_some()
            || env
                .optional("OTEL_RESOURCE_ATTRIBUTES")
                .is_some_and(|a| a.contains("service.name="));
        let mut resource = Resource::builder();
        if !named_by_env {
            resource = resource.with_service_name(service);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("event-platform");
        let _ = TRACER.set(tracer.clone());
        // Our own spans at INFO and above; never the exporter's own
        // HTTP client, whose spans would be exported in turn.
        let targets = Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("opentelemetry", LevelFilter::OFF)
            .with_target("opentelemetry_sdk", LevelFilter::OFF)
            .with_target("opentelemetry_otlp", LevelFilter::OFF)
            .with_target("reqwest", LevelFilter::OFF)
            .with_target("hyper", LevelFilter::OFF)
            .with_target("hyper_util", LevelFilter::OFF)
            .with_target("h2", LevelFilter::OFF);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(targets)
            .boxed();
        (
            Some(layer),
            TraceExport {
                provider: Some(provider),
            },
        )
    }

    pub(super) fn current_traceparent() -> Option<String> {
        TRACER.get()?;
        let context = tracing::Span::current().context();
        let span = context.span();
        let span_context = span.span_context();
        (span_context.is_valid() && span_context.is_sampled()).then(|| {
            format!(
                "00-{}-{}-{:02x}",
                span_context.trace_id(),
                span_context.span_id(),
                span_context.trace_flags().to_u8()
            )
        })
    }

    /// A W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) as a remote parent.
    fn parse(traceparent: &str) -> Option<SpanContext> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace = TraceId::from_hex(trace).ok()?;
        let span = SpanId::from_hex(span).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let context = SpanContext::new(
            trace,
            span,
            TraceFlags::new(flags),
            true,
            TraceState::default(),
        );
        context.is_valid().then_some(context)
    }

    pub(super) fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
        if TRACER.get().is_none() {
            return;
        }
        if let Some(parent) = traceparent.and_then(parse) {
            let _ = span.set_parent(Context::new().with_remote_span_context(parent));
        }
    }

    pub(super) fn record_child(
        name: &'static str,
        traceparent: &str,
        started: SystemTime,
        attributes: &[(&'static str, String)],
    ) {
        let (Some(tracer), Some(parent)) = (TRACER.get(), parse(traceparent)) else {
            return;
        };
        let parent = Context::new().with_remote_span_context(parent);
        let batch = tracing::Span::current().context();
        let batch = batch.span().span_context().clone();
        let mut builder = tracer
            .span_builder(name)
            .with_start_time(started)
            .with_attributes(
                attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(*k, v.clone()))
                    .collect::<Vec<_>>(),
            );
        if batch.is_valid() {
            builder = builder.with_links(vec![Link::with_context(batch)]);
        }
        let mut span = builder.start_with_context(tracer, &parent);
        opentelemetry::trace::Span::end(&mut span);
    }

    #[cfg(test)]
    mod tests {
        use super::parse;

        #[test]
        fn traceparents_parse_only_when_well_formed() {
            let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let parsed = parse(good).expect("a valid traceparent");
            assert_eq!(
                parsed.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert!(parsed.is_sampled() && parsed.is_remote());
            for bad in [
                "",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-xx",
            ] {
                assert!(parse(bad).is_none(), "{bad:?} was accepted");
            }
        }
    }
}
