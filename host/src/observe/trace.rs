//! W3C trace context on calls: each host that routes a call is one span of
//! the call's trace.
//!
//! A call's metadata may hold a `traceparent` (`00-<trace id>-<parent span
//! id>-<flags>`) and a `tracestate`. A host that exports spans
//! (`--otlp-endpoint`, [`super::otlp`]) takes part in the trace: at the
//! router's entry ([`Tracing::enter`]) it reads the `traceparent`, makes a
//! span id of its own and writes `00-<trace id>-<its span id>-<flags>` back
//! into the metadata. The attempts it forwards and the nested calls its
//! guests make carry the metadata on, so the next hosts' spans are its
//! children without any other hand-over. A missing or malformed
//! `traceparent` starts a new trace there (and drops the `tracestate` that
//! went with it); it never fails the call. The span is recorded when the
//! call is sampled: a valid `traceparent`'s sampled flag decides, a new
//! trace is sampled with the probability `--trace-sample`.
//!
//! A host that exports nothing records no span, so it does not name itself
//! as anyone's parent: it passes the trace context on unchanged (a
//! downstream span's parent stays a span its collector can know), starts
//! no trace, and only reads the trace id for its log lines. That costs a
//! map lookup per call, and nothing at all for a call without metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{self as otel, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::metrics::Placement;
use super::otlp::SpanSink;
use crate::protocol::{CallError, ErrorCode, Processed};

/// The metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// The metadata key of vendors' trace state, passed on unchanged.
pub const TRACESTATE: &str = "tracestate";

/// Length of a version-`00` `traceparent`.
const HEADER_LEN: usize = 55;

/// A trace's id: 16 bytes, never all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

/// A span's id: 8 bytes, never all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(u64);

impl TraceId {
    /// A random trace id.
    pub fn random() -> TraceId {
        TraceId(fastrand::u128(1..))
    }

    /// The id as a number (big-endian bytes).
    pub fn get(self) -> u128 {
        self.0
    }
}

impl SpanId {
    /// A random span id.
    pub fn random() -> SpanId {
        SpanId(fastrand::u64(1..))
    }

    /// The id as a number (big-endian bytes).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TraceId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    /// 16 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A call's place in its trace: what a `traceparent` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The span of whoever wrote this context: for a call received, the
    /// caller's span; for the context a host writes, its own.
    pub span_id: SpanId,
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceContext {
    /// The sampled flag: the caller may have recorded its span, and asks
    /// the hosts after it to record theirs.
    pub const SAMPLED: u8 = 0x01;
    /// The flags of version `00` (sampled, random trace id); the others are
    /// not passed on.
    const KNOWN_FLAGS: u8 = 0x03;

    /// Reads a `traceparent` value; `None` unless it is well formed.
    ///
    /// Version `00` must be exactly 55 characters; a later version may be
    /// longer, its extra fields after a `-` ignored; version `ff` is
    /// invalid. Hex digits are lowercase; trace and span ids may not be all
    /// zero.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let bytes = header.as_bytes();
        if bytes.len() < HEADER_LEN {
            return None;
        }
        let version = hex(&bytes[0..2])?;
        match version {
            0xff => return None,
            0 if bytes.len() != HEADER_LEN => return None,
            _ if bytes.len() > HEADER_LEN && bytes[HEADER_LEN] != b'-' => return None,
            _ => {}
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex(&bytes[3..35])?;
        let span_id = hex(&bytes[36..52])?;
        let flags = hex(&bytes[53..55])?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceContext {
            trace_id: TraceId(trace_id),
            span_id: SpanId(u64::try_from(span_id).ok()?),
            flags: u8::try_from(flags).ok()?,
        })
    }

    /// The `traceparent` of `metadata`, if it has a valid one.
    pub fn of(metadata: &BTreeMap<String, String>) -> Option<TraceContext> {
        metadata
            .get(TRACEPARENT)
            .and_then(|v| TraceContext::parse(v))
    }

    /// Whether the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }

    /// Replaces `out` with this context's version-`00` `traceparent`,
    /// reusing its buffer (no allocation when it held one already).
    pub fn write_to(&self, out: &mut String) {
        let mut header = *b"00-________________________________-________________-__";
        hex_into(&mut header[3..35], self.trace_id.0);
        hex_into(&mut header[36..52], u128::from(self.span_id.0));
        hex_into(&mut header[53..55], u128::from(self.flags));
        out.clear();
        out.push_str(std::str::from_utf8(&header).expect("hex digits and dashes are ASCII"));
    }

    /// This context's version-`00` `traceparent`.
    pub fn header(&self) -> String {
        let mut out = String::with_capacity(HEADER_LEN);
        self.write_to(&mut out);
        out
    }
}

impl fmt::Display for TraceContext {
    /// The version-`00` `traceparent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header())
    }
}

/// Fills `digits` with the low hex digits of `value`, lowercase (the
/// formatting machinery is several times slower on the call path).
fn hex_into(digits: &mut [u8], value: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, digit) in digits.iter_mut().rev().enumerate() {
        *digit = HEX[((value >> (i * 4)) & 0xf) as usize];
    }
}

/// The value of lowercase hex digits (at most 32 of them).
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u128::from(nibble))
    })
}

/// The trace id of a call's metadata for a log line: its hex, or `-`
/// without a valid `traceparent`.
pub fn trace_id(metadata: &BTreeMap<String, String>) -> LogTraceId {
    LogTraceId(TraceContext::of(metadata).map(|c| c.trace_id))
}

/// A trace id as a log field shows it (see [`trace_id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogTraceId(pub Option<TraceId>);

impl fmt::Display for LogTraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => id.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// How a host takes part in traces: the probability of recording a new
/// trace, and where recorded spans go (none: nothing is recorded). A cheap
/// handle, cloned into the router.
#[derive(Clone)]
pub struct Tracing {
    sink: Option<Arc<SpanSink>>,
    sample: f64,
    region: Arc<str>,
    /// Whether this host is a span of the traces it sees (it exports
    /// them); otherwise it passes trace contexts on unchanged.
    takes_part: bool,
}

impl Tracing {
    /// Trace contexts are passed on unchanged, nothing is recorded.
    pub fn off() -> Tracing {
        Tracing {
            sink: None,
            sample: 1.0,
            region: "".into(),
            takes_part: false,
        }
    }

    /// Records the sampled calls of this host (of `region`) into `sink`;
    /// a new trace is sampled with probability `sample`. Without a sink,
    /// the same as [`Tracing::off`].
    pub fn new(sink: Option<Arc<SpanSink>>, sample: f64, region: &str) -> Tracing {
        Tracing {
            takes_part: sink.is_some(),
            sink,
            sample: sample.clamp(0.0, 1.0),
            region: region.into(),
        }
    }

    /// Takes part in traces (rewrites contexts, starts traces with
    /// probability `sample`) without recording: the rules of
    /// [`Tracing::enter`] without an exporter, for tests.
    #[cfg(test)]
    fn taking_part(sample: f64) -> Tracing {
        Tracing {
            sample,
            takes_part: true,
            ..Tracing::off()
        }
    }

    /// Starts this host's span of the call with `metadata` (running
    /// `function`): reads its `traceparent` (or starts a trace), and
    /// rewrites it to name this host's span as the parent of what the call
    /// causes.
    pub fn enter(&self, function: &str, metadata: &mut BTreeMap<String, String>) -> CallTrace {
        if !self.takes_part {
            return CallTrace {
                context: if metadata.is_empty() {
                    None
                } else {
                    TraceContext::of(metadata)
                },
                span: None,
            };
        }
        let span_id = SpanId::random();
        let incoming = TraceContext::of(metadata);
        let (context, parent) = match incoming {
            Some(caller) => (
                TraceContext {
                    trace_id: caller.trace_id,
                    span_id,
                    flags: caller.flags & TraceContext::KNOWN_FLAGS,
                },
                Some(caller.span_id),
            ),
            None => {
                // The trace state of a context we cannot read belongs to no
                // trace we take part in.
                metadata.remove(TRACESTATE);
                let sampled = self.sample >= 1.0 || fastrand::f64() < self.sample;
                let context = TraceContext {
                    trace_id: TraceId::random(),
                    span_id,
                    flags: if sampled { TraceContext::SAMPLED } else { 0 },
                };
                (context, None)
            }
        };
        match metadata.get_mut(TRACEPARENT) {
            Some(value) => context.write_to(value),
            None => {
                metadata.insert(TRACEPARENT.to_owned(), context.header());
            }
        }
        let span = match &self.sink {
            Some(sink) if context.sampled() => Some(Box::new(Recording {
                sink: sink.clone(),
                region: self.region.clone(),
                function: function.to_owned(),
                parent,
                trace_state: metadata.get(TRACESTATE).cloned(),
                start: SystemTime::now(),
                placement: None,
            })),
            _ => None,
        };
        CallTrace {
            context: Some(context),
            span,
        }
    }
}

/// One host's part of one call: its trace context and, when sampled and
/// exported, the span being recorded. The span is exported when the call
/// finishes ([`CallTrace::finish`]), or as `cancelled` if it is dropped
/// first.
pub struct CallTrace {
    /// This host's context (with its span id) when it takes part; the
    /// caller's when it passes contexts on; `None` without one.
    context: Option<TraceContext>,
    span: Option<Box<Recording>>,
}

struct Recording {
    sink: Arc<SpanSink>,
    region: Arc<str>,
    function: String,
    parent: Option<SpanId>,
    trace_state: Option<String>,
    start: SystemTime,
    placement: Option<Placement>,
}

impl CallTrace {
    /// This host's trace context for the call (its span id), or the
    /// caller's when the host does not take part.
    pub fn context(&self) -> Option<TraceContext> {
        self.context
    }

    /// Whether a span is being recorded.
    pub fn is_recording(&self) -> bool {
        self.span.is_some()
    }

    /// The call runs at `placement`.
    pub fn placed(&mut self, placement: Placement) {
        if let Some(span) = &mut self.span {
            span.placement = Some(placement);
        }
    }

    /// Ends the span with the call's outcome.
    pub fn finish<T>(mut self, outcome: &Result<T, CallError>) {
        if let Some(span) = self.span.take() {
            let (code, processed, error) = match outcome {
                Ok(_) => (None, Processed::Yes, None),
                Err(error) => (Some(error.code), error.processed, Some(&error.message)),
            };
            if let Some(context) = self.context {
                span.end(context, code, processed, error.map(String::as_str));
            }
        }
    }
}

impl Drop for CallTrace {
    fn drop(&mut self) {
        if let (Some(span), Some(context)) = (self.span.take(), self.context) {
            span.end(
                context,
                Some(ErrorCode::Cancelled),
                Processed::Maybe,
                Some("the caller went away"),
            );
        }
    }
}

impl Recording {
    fn end(
        self,
        context: TraceContext,
        code: Option<ErrorCode>,
        processed: Processed,
        error: Option<&str>,
    ) {
        let end = SystemTime::now();
        let trace_state = self
            .trace_state
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let mut attributes = vec![
            KeyValue::new("rpc.system", "wasmrpc"),
            KeyValue::new("rpc.method", self.function.clone()),
            KeyValue::new("wasmrpc.region", self.region.to_string()),
        ];
        if let Some(placement) = self.placement {
            let placement = match placement {
                Placement::Local => "local",
                Placement::Forwarded => "forwarded",
                Placement::Refused => "refused",
            };
            attributes.push(KeyValue::new("wasmrpc.placement", placement));
        }
        attributes.push(KeyValue::new(
            "wasmrpc.code",
            code.map_or("ok", ErrorCode::as_str),
        ));
        attributes.push(KeyValue::new("wasmrpc.processed", processed.to_string()));
        let status = match error {
            Some(message) => Status::error(message.to_owned()),
            None => Status::Unset,
        };
        let span = SpanData {
            span_context: otel::SpanContext::new(
                otel::TraceId::from(context.trace_id.get()),
                otel::SpanId::from(context.span_id.get()),
                TraceFlags::new(context.flags),
                false,
                trace_state,
            ),
            parent_span_id: self
                .parent
                .map_or(otel::SpanId::INVALID, |p| otel::SpanId::from(p.get())),
            parent_span_is_remote: self.parent.is_some(),
            span_kind: SpanKind::Server,
            name: self.function.into(),
            start_time: self.start,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope(),
        };
        self.sink.send(span);
    }
}

/// The instrumentation scope of every span: this crate.
fn scope() -> InstrumentationScope {
    static SCOPE: std::sync::LazyLock<InstrumentationScope> = std::sync::LazyLock::new(|| {
        InstrumentationScope::builder("wasmrpc")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build()
    });
    SCOPE.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_parses_and_formats_back() {
        let context = TraceContext::parse(VALID).unwrap();
        assert_eq!(
            context,
            TraceContext {
                trace_id: TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736),
                span_id: SpanId(0x00f067aa0ba902b7),
                flags: 1,
            }
        );
        assert!(context.sampled());
        assert_eq!(context.to_string(), VALID);
        let unsampled = TraceContext::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn a_later_version_is_read_as_version_00_with_its_extra_fields_ignored() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert_eq!(
            TraceContext::parse(later),
            TraceContext::parse(VALID),
            "{later}"
        );
        let exact = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceContext::parse(exact), TraceContext::parse(VALID));
        // Its next field must start with a dash.
        assert_eq!(TraceContext::parse(&format!("{exact}x")), None);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        let cases = [
            ("", "empty"),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version not hex",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "00 with more",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "short flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "short trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
                "long trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
                "short span id",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "zero span id",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "upper-case trace",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                "upper-case span",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
                "upper-case flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
                "bad hex",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9+2b7-01",
                "bad hex span",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                "separators",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
                "not ASCII",
            ),
        ];
        for (header, why) in cases {
            assert_eq!(TraceContext::parse(header), None, "{why}: {header}");
        }
    }

    fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn entering_keeps_the_trace_and_names_this_host_as_the_parent() {
        let mut metadata = metadata(&[(TRACEPARENT, VALID), (TRACESTATE, "k=v"), ("a", "b")]);
        let call = Tracing::taking_part(1.0).enter("f", &mut metadata);
        let written = TraceContext::parse(&metadata[TRACEPARENT]).unwrap();
        assert_eq!(Some(written), call.context());
        assert_eq!(
            written.trace_id,
            TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736)
        );
        assert_ne!(written.span_id, SpanId(0x00f067aa0ba902b7));
        assert_eq!(written.flags, 1);
        assert_eq!(
            (metadata[TRACESTATE].as_str(), metadata["a"].as_str()),
            ("k=v", "b")
        );
        assert!(!call.is_recording(), "no exporter: nothing recorded");
    }

    #[test]
    fn entering_without_a_valid_traceparent_starts_a_trace_and_never_fails() {
        for bad in [
            None,
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ] {
            let mut metadata = metadata(&[(TRACESTATE, "k=v")]);
            if let Some(bad) = bad {
                metadata.insert(TRACEPARENT.into(), bad.into());
            }
            let call = Tracing::taking_part(1.0).enter("f", &mut metadata);
            let written = TraceContext::parse(&metadata[TRACEPARENT]).unwrap();
            assert_eq!(Some(written), call.context(), "{bad:?}");
            assert_eq!(written.flags, TraceContext::SAMPLED, "{bad:?}");
            assert!(!metadata.contains_key(TRACESTATE), "{bad:?}");
        }
        let mut metadata = BTreeMap::new();
        Tracing::taking_part(0.0).enter("f", &mut metadata);
        assert_eq!(
            TraceContext::of(&metadata).unwrap().flags,
            0,
            "sampled at 0"
        );
    }

    #[test]
    fn unknown_flags_are_not_passed_on() {
        let mut metadata = metadata(&[(TRACEPARENT, &VALID.replace("-01", "-ff"))]);
        let call = Tracing::taking_part(1.0).enter("f", &mut metadata);
        assert_eq!(call.context().unwrap().flags, 0x03);
    }

    #[test]
    fn a_host_that_exports_nothing_passes_contexts_on_unchanged() {
        for pairs in [
            &[(TRACEPARENT, VALID), (TRACESTATE, "k=v")][..],
            &[(TRACEPARENT, "garbage"), (TRACESTATE, "k=v")][..],
            &[("a", "b")][..],
            &[][..],
        ] {
            let mut metadata = metadata(pairs);
            let before = metadata.clone();
            let call = Tracing::new(None, 1.0, "r").enter("f", &mut metadata);
            assert_eq!(metadata, before, "{pairs:?}");
            assert_eq!(call.context(), TraceContext::of(&before), "{pairs:?}");
            assert!(!call.is_recording());
        }
    }

    #[test]
    fn a_log_shows_the_trace_id_or_a_dash() {
        assert_eq!(
            trace_id(&metadata(&[(TRACEPARENT, VALID)])).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(trace_id(&metadata(&[(TRACEPARENT, "x")])).to_string(), "-");
        assert_eq!(trace_id(&BTreeMap::new()).to_string(), "-");
    }
}
