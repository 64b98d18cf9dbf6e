//! The `relay` plugin: one nested call, guest → host `call` import → guest,
//! exchanging arguments and the result as CBOR. Used by `bench/` to measure
//! the cost of a nested call, and by tests to make any nested call.

use ciborium::Value;
use wasmrpc::host::host::{call, log};
use wasmrpc::host::types::Level;

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "example:relay/relay",
    // Also generate bindings for `wasmrpc:host/types`, which the imported
    // `host` interface uses but the world does not name.
    generate_all,
});

struct Relay;

impl Guest for Relay {
    fn add(a: i64, b: i64) -> i64 {
        relay_add(a, b).unwrap_or_else(|error| {
            log(Level::Error, &format!("math.add({a}, {b}) failed: {error}"));
            0
        })
    }

    fn call(function: String, args: Vec<u8>) -> Result<Vec<u8>, String> {
        call(&function, &args).map_err(|e| {
            log(Level::Warn, &format!("{function} failed: {}", e.message));
            e.message
        })
    }

    fn try_call(function: String, args: Vec<u8>) -> Result<Vec<u8>, CallError> {
        call(&function, &args)
    }
}

/// Calls `math.add(a, b)` through the host.
fn relay_add(a: i64, b: i64) -> Result<i64, String> {
    let args = Value::Array(vec![Value::Integer(a.into()), Value::Integer(b.into())]);
    let mut encoded = Vec::new();
    ciborium::into_writer(&args, &mut encoded).map_err(|e| e.to_string())?;
    let reply = call("math.add", &encoded).map_err(|e| e.message)?;
    let sum: Value = ciborium::from_reader(reply.as_slice())
        .map_err(|e| format!("math.add sent invalid CBOR: {e}"))?;
    sum.as_integer()
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| format!("math.add returned {sum:?}, not an s64"))
}

export!(Relay);
