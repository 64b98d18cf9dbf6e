//! The `wasmrpc:host/host` interface offered to plugins: `log`, `region`, `call`.
//!
//! This file implements the current version, `wasmrpc:host@0.2.0`
//! (`wit/host.wit`). The host also serves plugins built against 0.1.0
//! ([`v0_1`]): the component model type-checks an import exactly, so a
//! plugin built against 0.1.0 links only to an instance whose `error-code`
//! enum has 0.1.0's cases and no others. Each version is linked under its own
//! instance name (`wasmrpc:host/host@0.1.0`, `…@0.2.0`), and the older one
//! runs this one's code, mapping what the guest cannot name down to what it
//! can.

mod v0_1;

use ciborium::Value;

use super::state::{CallScope, PluginState};
use crate::pattern::{Pattern, any_matches};
use crate::protocol::{self, ARGS_NESTING, ErrorCode, Processed};
use crate::service::CallRequest;

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

/// Adds every version of the host interface to `linker`.
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<PluginState>,
) -> wasmtime::Result<()> {
    bindings::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)?;
    v0_1::add_to_linker(linker)
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: Level, mut message: String) {
        let plugin = tracing::field::display(&self.scope().plugin);
        let trace_id = tracing::field::display(self.scope().trace_id);
        if message.len() > self.max_guest_output {
            message.truncate(message.floor_char_boundary(self.max_guest_output));
            message.push_str(" [truncated]");
        }
        let message = message.escape_debug();
        match level {
            Level::Trace => tracing::trace!(plugin, trace_id, "{message}"),
            Level::Debug => tracing::debug!(plugin, trace_id, "{message}"),
            Level::Info => tracing::info!(plugin, trace_id, "{message}"),
            Level::Warn => tracing::warn!(plugin, trace_id, "{message}"),
            Level::Error => tracing::error!(plugin, trace_id, "{message}"),
        }
    }

    fn region(&mut self) -> String {
        self.scope().region.to_string()
    }

    async fn call(&mut self, function: String, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let scope = self.scope();
        let request = checked(scope, self.max_guest_output, function, &args)
            .map_err(|error| to_wit_error(error.in_region(&scope.region)))?;
        let router = scope.router.clone();
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

/// The request of a nested call of `function` with the CBOR `args`, once it
/// has passed, in this order, the data limit (`max_guest_output` bytes of
/// name and arguments), the plugin's `calls` list and the decoding of its
/// arguments.
///
/// # Errors
///
/// The first check that fails: `resource_exhausted`, `permission_denied` or
/// `invalid_args`, all `processed: no`.
fn checked(
    scope: &CallScope,
    max_guest_output: usize,
    function: String,
    args: &[u8],
) -> Result<CallRequest, protocol::CallError> {
    if function.len().saturating_add(args.len()) > max_guest_output {
        let who = format!("plugin `{}`", scope.plugin);
        return Err(super::call::data_limit(
            &who,
            max_guest_output,
            Processed::No,
        ));
    }
    permit(&scope.plugin, &scope.calls, &function)?;
    let args: Vec<Value> = ciborium::de::from_reader_with_recursion_limit(args, ARGS_NESTING)
        .map_err(|e| {
            protocol::CallError::invalid_args(format!(
                "`args` must be a CBOR array of arguments: {e}"
            ))
        })?;
    Ok(scope.nested(function, args))
}

/// Whether plugin `plugin`, whose sidecar's `calls` list is `calls`, may
/// call `function` through the host.
///
/// # Errors
///
/// `permission_denied`, `processed: no`, naming the plugin, the function and
/// the fix, when no pattern of `calls` matches `function`.
fn permit(plugin: &str, calls: &[Pattern], function: &str) -> Result<(), protocol::CallError> {
    if any_matches(calls, function) {
        return Ok(());
    }
    Err(protocol::CallError::new(
        ErrorCode::PermissionDenied,
        Processed::No,
        format!(
            "plugin `{plugin}` may not call `{function}`: add it to `calls` in `{plugin}.toml`"
        ),
    ))
}

/// A nested call's error as the guest sees it: the one place where wire
/// error codes become the WIT ones.
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
            ErrorCode::PermissionDenied => types::ErrorCode::PermissionDenied,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(texts: &[&str]) -> Vec<Pattern> {
        texts.iter().map(|t| Pattern::parse(t).unwrap()).collect()
    }

    #[test]
    fn a_plugin_may_call_what_its_calls_list_matches_and_nothing_else() {
        let calls = patterns(&["inventory.*", "math.add"]);
        assert_eq!(permit("orders", &calls, "inventory.stock.reserve"), Ok(()));
        assert_eq!(permit("orders", &calls, "math.add"), Ok(()));
        let denied = permit("orders", &calls, "math.divide").unwrap_err();
        assert_eq!(
            (denied.code, denied.processed, denied.message.as_str()),
            (
                ErrorCode::PermissionDenied,
                Processed::No,
                "plugin `orders` may not call `math.divide`: add it to `calls` in `orders.toml`"
            )
        );
        // No list: nothing, not even the plugin's own functions.
        let denied = permit("orders", &[], "orders.place").unwrap_err();
        assert_eq!(denied.code, ErrorCode::PermissionDenied);
        assert_eq!(permit("relay", &patterns(&["*"]), "any.thing"), Ok(()));
    }

    #[test]
    fn the_guest_sees_permission_denied_as_its_own_code() {
        let error = permit("orders", &[], "billing.charge")
            .unwrap_err()
            .in_region("eu-west");
        let seen = to_wit_error(error);
        assert_eq!(seen.code, types::ErrorCode::PermissionDenied);
        assert_eq!(seen.processed, types::Processed::No);
        assert_eq!(seen.region.as_deref(), Some("eu-west"));
        assert_eq!(
            seen.message,
            "plugin `orders` may not call `billing.charge`: add it to `calls` in `orders.toml`"
        );
    }
}
