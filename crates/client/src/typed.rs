//! Typed arguments and answers (placeholder: ciborium's own serde mapping
//! until the PROTOCOL.md §8 mapping lands).

use ciborium::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be mapped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

/// The argument list `args` stands for.
///
/// # Errors
///
/// When `args` is not a sequence or a value cannot be encoded.
pub fn to_args<A: Serialize + ?Sized>(args: &A) -> Result<Vec<Value>, Error> {
    match to_value(args)? {
        Value::Array(values) => Ok(values),
        Value::Null => Ok(Vec::new()),
        other => Err(Error(format!(
            "arguments must be a tuple or a list, got {other:?}"
        ))),
    }
}

/// `value` as CBOR.
///
/// # Errors
///
/// When a value cannot be encoded.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, Error> {
    Value::serialized(value).map_err(|e| Error(e.to_string()))
}

/// `value` read as an `R`.
///
/// # Errors
///
/// When `value` does not fit `R`.
pub fn from_value<R: DeserializeOwned>(value: Value) -> Result<R, Error> {
    value.deserialized().map_err(|e| Error(e.to_string()))
}
