//! Guest stdout and stderr, line by line into the host log, tagged with the
//! plugin and the trace id of the call being served.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::observe::trace::LogTraceId;

/// Longest line kept; the rest of an overlong line is dropped.
const MAX_LINE: usize = 4096;

/// The trace id of the call an instance serves, shared by its store and its
/// output streams (made once per instance, which may serve many calls).
#[derive(Clone)]
pub struct TraceCell(Arc<Mutex<LogTraceId>>);

impl TraceCell {
    pub fn new(trace_id: LogTraceId) -> Self {
        TraceCell(Arc::new(Mutex::new(trace_id)))
    }

    /// The instance now serves a call of `trace_id`.
    pub fn set(&self, trace_id: LogTraceId) {
        *self.0.lock().expect("trace cell lock") = trace_id;
    }

    fn get(&self) -> LogTraceId {
        *self.0.lock().expect("trace cell lock")
    }
}

/// A WASI output stream that logs each complete line at `info` level.
#[derive(Clone)]
pub struct LogStream {
    plugin: Arc<str>,
    trace_id: TraceCell,
    stream: &'static str,
    /// Where to note a Rust panic message seen on this stream, so the trap
    /// that follows can say why the guest stopped.
    panic_note: Option<Arc<Mutex<Option<String>>>>,
}

impl LogStream {
    pub fn stdout(plugin: Arc<str>, trace_id: TraceCell) -> Self {
        LogStream {
            plugin,
            trace_id,
            stream: "stdout",
            panic_note: None,
        }
    }

    pub fn stderr(plugin: Arc<str>, trace_id: TraceCell) -> Self {
        LogStream {
            plugin,
            trace_id,
            stream: "stderr",
            panic_note: None,
        }
    }

    /// Also records the message of a Rust guest panic into `note`.
    pub fn capturing_panics(mut self, note: Arc<Mutex<Option<String>>>) -> Self {
        self.panic_note = Some(note);
        self
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            target: self.clone(),
            line: Vec::new(),
            after_panic: false,
        })
    }
}

struct LineWriter {
    target: LogStream,
    line: Vec<u8>,
    /// The previous line was Rust's `thread '…' panicked at …:` header.
    after_panic: bool,
}

impl LineWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches('\r');
        tracing::info!(
            plugin = %self.target.plugin,
            stream = self.target.stream,
            trace_id = %self.target.trace_id.get(),
            "{}",
            text.escape_debug()
        );
        if let Some(note) = &self.target.panic_note {
            if self.after_panic {
                *note.lock().expect("panic note lock") = Some(format!("guest panicked: {text}"));
            }
            self.after_panic = text.starts_with("thread '") && text.contains(" panicked at ");
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        for &byte in buf {
            if byte == b'\n' {
                this.emit();
            } else if this.line.len() < MAX_LINE {
                this.line.push(byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.line.is_empty() {
            this.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}
