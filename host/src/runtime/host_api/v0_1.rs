//! `wasmrpc:host@0.1.0` (`host/wit/0.1.0/host.wit`), for plugins built
//! before 0.2.0: the current version's code, with its values mapped to the
//! types 0.1.0 names.
//!
//! 0.1.0 has no `permission-denied`: a guest built against it sees that code
//! as `unauthenticated`, with the same message, region and `processed`.

use super::PluginState;
use super::types as current;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/0.1.0",
        world: "wasmrpc:host/plugin",
        imports: {
            "wasmrpc:host/host.call": async,
        },
    });
}

use bindings::wasmrpc::host::host;
use bindings::wasmrpc::host::types::{self, CallError, ErrorCode, Level, Processed};

/// Adds `wasmrpc:host/host@0.1.0` (and its `types`) to `linker`.
pub(super) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<PluginState>,
) -> wasmtime::Result<()> {
    bindings::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => current::Level::Trace,
            Level::Debug => current::Level::Debug,
            Level::Info => current::Level::Info,
            Level::Warn => current::Level::Warn,
            Level::Error => current::Level::Error,
        };
        super::host::Host::log(self, level, message);
    }

    fn region(&mut self) -> String {
        super::host::Host::region(self)
    }

    async fn call(&mut self, function: String, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        super::host::Host::call(self, function, args)
            .await
            .map_err(downgrade)
    }
}

/// A nested call's error as a 0.1.0 guest sees it.
fn downgrade(error: current::CallError) -> CallError {
    CallError {
        code: match error.code {
            current::ErrorCode::NotFound => ErrorCode::NotFound,
            current::ErrorCode::InvalidArgs => ErrorCode::InvalidArgs,
            current::ErrorCode::HandlerError => ErrorCode::HandlerError,
            current::ErrorCode::Trap => ErrorCode::Trap,
            current::ErrorCode::DeadlineExceeded => ErrorCode::DeadlineExceeded,
            current::ErrorCode::Cancelled => ErrorCode::Cancelled,
            current::ErrorCode::Unavailable => ErrorCode::Unavailable,
            current::ErrorCode::ResourceExhausted => ErrorCode::ResourceExhausted,
            current::ErrorCode::LoopDetected => ErrorCode::LoopDetected,
            current::ErrorCode::Unauthenticated => ErrorCode::Unauthenticated,
            // The closest code 0.1.0 has: the caller's rights were refused.
            current::ErrorCode::PermissionDenied => ErrorCode::Unauthenticated,
            current::ErrorCode::ProtocolError => ErrorCode::ProtocolError,
            current::ErrorCode::Internal => ErrorCode::Internal,
        },
        message: error.message,
        region: error.region,
        processed: match error.processed {
            current::Processed::No => Processed::No,
            current::Processed::Maybe => Processed::Maybe,
            current::Processed::Yes => Processed::Yes,
        },
        detail: error.detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_0_1_0_guest_sees_permission_denied_as_unauthenticated_with_the_same_message() {
        let seen = downgrade(current::CallError {
            code: current::ErrorCode::PermissionDenied,
            message: "plugin `old` may not call `math.divide`: add it to `calls` in `old.toml`"
                .into(),
            region: Some("eu-west".into()),
            processed: current::Processed::No,
            detail: None,
        });
        assert_eq!(seen.code, ErrorCode::Unauthenticated);
        assert_eq!(
            seen.message,
            "plugin `old` may not call `math.divide`: add it to `calls` in `old.toml`"
        );
        assert_eq!(seen.region.as_deref(), Some("eu-west"));
        assert_eq!(seen.processed, Processed::No);
    }
}
