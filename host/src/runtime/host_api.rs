//! The `wasmrpc:host/host` interface offered to plugins: `log`, `region`, `call`.

use ciborium::Value;

use super::state::PluginState;
use crate::protocol::{self, ARGS_NESTING, ErrorCode, Processed};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasmrpc:host/plugin",
        imports: {
            "wasmrpc:host/host.call": async,
        },
    });
}

use bindings::wasmrpc::host::host;
use bindings::wasmrpc::host::types::{self, CallError, Level};

/// Adds the host interface to `linker`.
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<PluginState>,
) -> wasmtime::Result<()> {
    bindings::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: Level, mut message: String) {
        let plugin = tracing::field::display(&self.scope().plugin);
        if message.len() > self.max_guest_output {
            message.truncate(message.floor_char_boundary(self.max_guest_output));
            message.push_str(" [truncated]");
        }
        let message = message.escape_debug();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn region(&mut self) -> String {
        self.scope().region.to_string()
    }

    async fn call(&mut self, function: String, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        if function.len().saturating_add(args.len()) > self.max_guest_output {
            let scope = self.scope();
            let who = format!("plugin `{}`", scope.plugin);
            let error = super::call::data_limit(&who, self.max_guest_output, Processed::No);
            return Err(to_wit_error(error.in_region(&scope.region)));
        }
        let args: Vec<Value> =
            ciborium::de::from_reader_with_recursion_limit(args.as_slice(), ARGS_NESTING).map_err(
                |e| CallError {
                    code: types::ErrorCode::InvalidArgs,
                    message: format!("`args` must be a CBOR array of arguments: {e}"),
                    region: Some(self.scope().region.to_string()),
                    processed: types::Processed::No,
                    detail: None,
                },
            )?;
        let request = self.scope().nested(function, args);
        let router = self.scope().router.clone();
        match router.call(request).await {
            Ok(value) => {
                let mut out = Vec::new();
                ciborium::ser::into_writer(&value, &mut out)
                    .expect("encoding a CBOR value into a Vec cannot fail");
                Ok(out)
            }
            Err(error) => Err(to_wit_error(error)),
        }
    }
}

fn to_wit_error(error: protocol::CallError) -> CallError {
    let detail = error.detail.map(|d| {
        let mut out = Vec::new();
        ciborium::ser::into_writer(&d, &mut out).expect("encoding into a Vec cannot fail");
        out
    });
    CallError {
        code: match error.code {
            ErrorCode::NotFound => types::ErrorCode::NotFound,
            ErrorCode::InvalidArgs => types::ErrorCode::InvalidArgs,
            ErrorCode::HandlerError => types::ErrorCode::HandlerError,
            ErrorCode::Trap => types::ErrorCode::Trap,
            ErrorCode::DeadlineExceeded => types::ErrorCode::DeadlineExceeded,
            ErrorCode::Cancelled => types::ErrorCode::Cancelled,
            ErrorCode::Unavailable => types::ErrorCode::Unavailable,
            ErrorCode::ResourceExhausted => types::ErrorCode::ResourceExhausted,
            ErrorCode::LoopDetected => types::ErrorCode::LoopDetected,
            ErrorCode::Unauthenticated => types::ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied => types::ErrorCode::Unauthenticated,
            ErrorCode::ProtocolError => types::ErrorCode::ProtocolError,
            ErrorCode::Internal => types::ErrorCode::Internal,
        },
        message: error.message,
        region: error.region,
        processed: match error.processed {
            Processed::No => types::Processed::No,
            Processed::Maybe => types::Processed::Maybe,
            Processed::Yes => types::Processed::Yes,
        },
        detail,
    }
}
