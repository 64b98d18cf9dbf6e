//! The `legacy` plugin: a nested call through `wasmrpc:host@0.1.0`, the host
//! interface as it was before 0.2.0, read from the host's frozen copy of it.

use wasmrpc::host::host::call;

wit_bindgen::generate!({
    path: ["../../host/wit/0.1.0", "wit"],
    world: "example:legacy/legacy",
    // Also generate bindings for `wasmrpc:host/types`, which the imported
    // `host` interface uses but the world does not name.
    generate_all,
});

struct Legacy;

impl Guest for Legacy {
    fn try_call(function: String, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        call(&function, &args)
    }
}

export!(Legacy);
