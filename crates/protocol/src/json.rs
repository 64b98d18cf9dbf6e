//! A JSON view of CBOR values, for the CLI and for human-readable messages.
//!
//! JSON → CBOR: integers stay integers, other numbers become floats.
//! CBOR → JSON: byte strings become arrays of numbers (which is also how
//! `list<u8>` may be written in JSON), non-finite floats become the strings
//! `"NaN"`, `"inf"` and `"-inf"`, map keys that are not text are written as
//! their JSON text.

use ciborium::Value;
use serde_json::Value as Json;

/// Converts a JSON value to CBOR.
pub fn json_to_cbor(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::Text(s),
        Json::Array(items) => Value::Array(items.into_iter().map(json_to_cbor).collect()),
        Json::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (Value::Text(k), json_to_cbor(v)))
                .collect(),
        ),
    }
}

/// Converts a CBOR value to JSON.
pub fn cbor_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Integer(i) => {
            let n = i128::from(*i);
            if let Ok(u) = u64::try_from(n) {
                Json::from(u)
            } else if let Ok(i) = i64::try_from(n) {
                Json::from(i)
            } else {
                Json::String(n.to_string())
            }
        }
        Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None if f.is_nan() => Json::String("NaN".into()),
            None if *f > 0.0 => Json::String("inf".into()),
            None => Json::String("-inf".into()),
        },
        Value::Text(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::Array(b.iter().map(|b| Json::from(*b)).collect()),
        Value::Array(items) => Json::Array(items.iter().map(cbor_to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Text(s) => s.clone(),
                        other => cbor_to_json(other).to_string(),
                    };
                    (key, cbor_to_json(v))
                })
                .collect(),
        ),
        Value::Tag(_, inner) => cbor_to_json(inner),
        _ => Json::Null,
    }
}

/// Compact JSON text of a CBOR value.
pub fn to_json_text(value: &Value) -> String {
    cbor_to_json(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_kind() {
        let json: Json = serde_json::from_str(r#"[2, -3, 1.5, 18446744073709551615]"#).unwrap();
        assert_eq!(
            json_to_cbor(json),
            Value::Array(vec![
                Value::from(2u64),
                Value::from(-3i64),
                Value::Float(1.5),
                Value::from(u64::MAX)
            ])
        );
    }

    #[test]
    fn bytes_and_floats_render_as_json() {
        let v = Value::Array(vec![
            Value::Bytes(vec![1, 2]),
            Value::Float(2.0),
            Value::Float(f64::NAN),
        ]);
        assert_eq!(to_json_text(&v), r#"[[1,2],2.0,"NaN"]"#);
    }
}
