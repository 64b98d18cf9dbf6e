//! CBOR ↔ component-model values, driven by the function's reflected WIT types.
//!
//! The mapping is the table in PROTOCOL.md ("Values"). Every failure names
//! where in the value it happened, so `invalid_args` can say
//! ``parameter `person`: at .age: 300 is out of range for u8``.

use std::fmt;

use ciborium::Value;
use wasmrpc_protocol::bignum;
use wasmtime::component::{Type, Val};

use super::signature::type_to_wit;

/// A value that does not fit its WIT type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// Where the mismatch is, outermost first (`.field`, `[3]`, `.case`).
    path: Vec<String>,
    message: String,
}

impl ValueError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        ValueError {
            path: Vec::new(),
            message: message.into(),
        }
    }

    fn at(mut self, segment: impl Into<String>) -> Self {
        self.path.insert(0, segment.into());
        self
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "at {}: {}", self.path.concat(), self.message)
        }
    }
}

/// Converts a CBOR value to a component value of type `ty`.
///
/// # Errors
///
/// [`ValueError`] when the value's shape, range or names do not match `ty`.
pub fn to_val(value: &Value, ty: &Type) -> Result<Val, ValueError> {
    Ok(match ty {
        Type::Bool => match value {
            Value::Bool(b) => Val::Bool(*b),
            other => return Err(expected("bool", other)),
        },
        Type::S8 => Val::S8(int(value, "s8")?),
        Type::U8 => Val::U8(int(value, "u8")?),
        Type::S16 => Val::S16(int(value, "s16")?),
        Type::U16 => Val::U16(int(value, "u16")?),
        Type::S32 => Val::S32(int(value, "s32")?),
        Type::U32 => Val::U32(int(value, "u32")?),
        Type::S64 => Val::S64(int(value, "s64")?),
        Type::U64 => Val::U64(int(value, "u64")?),
        Type::Float32 => {
            let f = float(value, "f32")?;
            if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                return Err(ValueError::new(format!("{f:e} is out of range for f32")));
            }
            Val::Float32(f as f32)
        }
        Type::Float64 => Val::Float64(float(value, "f64")?),
        Type::Char => match value {
            Value::Text(s) => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Val::Char(c),
                    _ => {
                        return Err(ValueError::new(format!(
                            "expected a char (text of exactly one character), got text of {} characters",
                            s.chars().count()
                        )));
                    }
                }
            }
            other => return Err(expected("a char (text of one character)", other)),
        },
        Type::String => match value {
            Value::Text(s) => Val::String(s.clone()),
            other => return Err(expected("text", other)),
        },
        Type::List(list) => {
            let elem = list.ty();
            match (value, &elem) {
                (Value::Bytes(bytes), Type::U8) => {
                    Val::List(bytes.iter().map(|b| Val::U8(*b)).collect())
                }
                (Value::Array(items), _) => Val::List(elements(items, &elem)?),
                (other, Type::U8) => return Err(expected("bytes or an array", other)),
                (other, _) => return Err(expected("an array", other)),
            }
        }
        Type::FixedLengthList(list) => match value {
            Value::Array(items) if items.len() == list.len() as usize => {
                Val::FixedLengthList(elements(items, &list.ty())?)
            }
            Value::Array(items) => {
                return Err(ValueError::new(format!(
                    "expected an array of {} elements, got {}",
                    list.len(),
                    items.len()
                )));
            }
            other => return Err(expected("an array", other)),
        },
        Type::Tuple(tuple) => match value {
            Value::Array(items) if items.len() == tuple.types().len() => Val::Tuple(
                items
                    .iter()
                    .zip(tuple.types())
                    .enumerate()
                    .map(|(i, (v, t))| to_val(v, &t).map_err(|e| e.at(format!("[{i}]"))))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Array(items) => {
                return Err(ValueError::new(format!(
                    "expected a tuple of {} elements, got {}",
                    tuple.types().len(),
                    items.len()
                )));
            }
            other => return Err(expected("an array (tuple)", other)),
        },
        Type::Record(record) => {
            let entries = match value {
                Value::Map(entries) => entries,
                other => return Err(expected("a map (record)", other)),
            };
            let fields: Vec<_> = record.fields().collect();
            let mut slots: Vec<Option<Val>> = vec![None; fields.len()];
            for (key, v) in entries {
                let name = text_key(key)?;
                let index = fields
                    .iter()
                    .position(|f| f.name == name)
                    .ok_or_else(|| ValueError::new(format!("unknown field `{name}`")))?;
                if slots[index].is_some() {
                    return Err(ValueError::new(format!("duplicate field `{name}`")));
                }
                slots[index] =
                    Some(to_val(v, &fields[index].ty).map_err(|e| e.at(format!(".{name}")))?);
            }
            let mut out = Vec::with_capacity(fields.len());
            for (field, slot) in fields.iter().zip(slots) {
                let val =
                    slot.ok_or_else(|| ValueError::new(format!("missing field `{}`", field.name)))?;
                out.push((field.name.to_owned(), val));
            }
            Val::Record(out)
        }
        Type::Variant(variant) => {
            let (name, payload) = single_key(value, "variant")?;
            let case = variant
                .cases()
                .find(|c| c.name == name)
                .ok_or_else(|| ValueError::new(format!("unknown case `{name}`")))?;
            let payload =
                payload_val(payload, case.ty.as_ref()).map_err(|e| e.at(format!(".{name}")))?;
            Val::Variant(name.to_owned(), payload)
        }
        Type::Enum(en) => match value {
            Value::Text(name) if en.names().any(|n| n == name) => Val::Enum(name.clone()),
            Value::Text(name) => {
                return Err(ValueError::new(format!(
                    "unknown case `{name}`; expected one of {}",
                    en.names().collect::<Vec<_>>().join(", ")
                )));
            }
            other => return Err(expected("text (an enum case)", other)),
        },
        Type::Option(option) => {
            let inner = option.ty();
            match value {
                Value::Null => Val::Option(None),
                // `some(x)` of an option-typed payload is `[x]`, so that
                // `some(none)` (`[null]`) differs from `none` (`null`).
                Value::Array(items) if matches!(inner, Type::Option(_)) => match items.as_slice() {
                    [item] => Val::Option(Some(Box::new(
                        to_val(item, &inner).map_err(|e| e.at("[0]"))?,
                    ))),
                    _ => {
                        return Err(ValueError::new(
                            "expected null or an array of one element (some of an option)",
                        ));
                    }
                },
                other if matches!(inner, Type::Option(_)) => {
                    return Err(expected(
                        "null or an array of one element (some of an option)",
                        other,
                    ));
                }
                other => Val::Option(Some(Box::new(to_val(other, &inner)?))),
            }
        }
        Type::Result(result) => {
            let (name, payload) = single_key(value, "result")?;
            match name {
                "ok" => Val::Result(Ok(
                    payload_val(payload, result.ok().as_ref()).map_err(|e| e.at(".ok"))?
                )),
                "err" => Val::Result(Err(
                    payload_val(payload, result.err().as_ref()).map_err(|e| e.at(".err"))?
                )),
                other => {
                    return Err(ValueError::new(format!(
                        "expected key `ok` or `err`, got `{other}`"
                    )));
                }
            }
        }
        Type::Flags(flags) => match value {
            Value::Array(items) => {
                let mut set: Vec<String> = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let name = match item {
                        Value::Text(name) => name,
                        other => {
                            return Err(expected("text (a flag name)", other).at(format!("[{i}]")));
                        }
                    };
                    if !flags.names().any(|n| n == name) {
                        return Err(ValueError::new(format!(
                            "unknown flag `{name}`; expected some of {}",
                            flags.names().collect::<Vec<_>>().join(", ")
                        )));
                    }
                    if !set.contains(name) {
                        set.push(name.clone());
                    }
                }
                Val::Flags(set)
            }
            other => return Err(expected("an array of flag names", other)),
        },
        Type::Map(map) => match value {
            Value::Map(entries) => {
                let (kt, vt) = (map.key(), map.value());
                Val::Map(
                    entries
                        .iter()
                        .enumerate()
                        .map(|(i, (k, v))| {
                            Ok((
                                to_val(k, &kt).map_err(|e| e.at(format!("<key {i}>")))?,
                                to_val(v, &vt).map_err(|e| e.at(format!("<value {i}>")))?,
                            ))
                        })
                        .collect::<Result<_, ValueError>>()?,
                )
            }
            other => return Err(expected("a map", other)),
        },
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(ValueError::new(format!(
                "`{}` values cannot be passed over RPC",
                type_to_wit(ty)
            )));
        }
    })
}

/// Converts a component value of type `ty` to CBOR.
///
/// # Errors
///
/// [`ValueError`] for values that have no CBOR form (resources, streams,
/// futures); functions using them are never in the catalog.
pub fn from_val(val: Val, ty: &Type) -> Result<Value, ValueError> {
    Ok(match (val, ty) {
        (Val::Bool(b), _) => Value::Bool(b),
        (Val::S8(n), _) => Value::from(n),
        (Val::U8(n), _) => Value::from(n),
        (Val::S16(n), _) => Value::from(n),
        (Val::U16(n), _) => Value::from(n),
        (Val::S32(n), _) => Value::from(n),
        (Val::U32(n), _) => Value::from(n),
        (Val::S64(n), _) => Value::from(n),
        (Val::U64(n), _) => Value::from(n),
        (Val::Float32(f), _) => Value::Float(f64::from(f)),
        (Val::Float64(f), _) => Value::Float(f),
        (Val::Char(c), _) => Value::Text(c.to_string()),
        (Val::String(s), _) => Value::Text(s),
        (Val::List(items), Type::List(list)) => {
            let elem = list.ty();
            if matches!(elem, Type::U8) {
                Value::Bytes(
                    items
                        .into_iter()
                        .map(|v| match v {
                            Val::U8(b) => b,
                            _ => 0,
                        })
                        .collect(),
                )
            } else {
                Value::Array(
                    items
                        .into_iter()
                        .map(|v| from_val(v, &elem))
                        .collect::<Result<_, _>>()?,
                )
            }
        }
        (Val::FixedLengthList(items), Type::FixedLengthList(list)) => {
            let elem = list.ty();
            Value::Array(
                items
                    .into_iter()
                    .map(|v| from_val(v, &elem))
                    .collect::<Result<_, _>>()?,
            )
        }
        (Val::Tuple(items), Type::Tuple(tuple)) => Value::Array(
            items
                .into_iter()
                .zip(tuple.types())
                .map(|(v, t)| from_val(v, &t))
                .collect::<Result<_, _>>()?,
        ),
        (Val::Record(fields), Type::Record(record)) => Value::Map(
            fields
                .into_iter()
                .zip(record.fields())
                .map(|((name, v), field)| Ok((Value::Text(name), from_val(v, &field.ty)?)))
                .collect::<Result<_, ValueError>>()?,
        ),
        (Val::Variant(name, payload), Type::Variant(variant)) => {
            let case_ty = variant.cases().find(|c| c.name == name).and_then(|c| c.ty);
            let payload = payload_value(payload, case_ty.as_ref())?;
            Value::Map(vec![(Value::Text(name), payload)])
        }
        (Val::Enum(name), _) => Value::Text(name),
        (Val::Option(None), _) => Value::Null,
        (Val::Option(Some(inner)), Type::Option(option)) => {
            let inner_ty = option.ty();
            let value = from_val(*inner, &inner_ty)?;
            if matches!(inner_ty, Type::Option(_)) {
                Value::Array(vec![value])
            } else {
                value
            }
        }
        (Val::Result(Ok(payload)), Type::Result(result)) => Value::Map(vec![(
            Value::Text("ok".into()),
            payload_value(payload, result.ok().as_ref())?,
        )]),
        (Val::Result(Err(payload)), Type::Result(result)) => Value::Map(vec![(
            Value::Text("err".into()),
            payload_value(payload, result.err().as_ref())?,
        )]),
        (Val::Flags(names), _) => Value::Array(names.into_iter().map(Value::Text).collect()),
        (Val::Map(entries), Type::Map(map)) => {
            let (kt, vt) = (map.key(), map.value());
            Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| Ok((from_val(k, &kt)?, from_val(v, &vt)?)))
                    .collect::<Result<_, ValueError>>()?,
            )
        }
        (other, ty) => {
            return Err(ValueError::new(format!(
                "cannot convert {other:?} of type `{}` to CBOR",
                type_to_wit(ty)
            )));
        }
    })
}

/// Bytes of data in a lifted value, the measure of `max_guest_output`:
/// strings by their UTF-8 length, lists by their elements, scalars by their
/// size in the canonical ABI, flags by a bit per flag set, and the
/// discriminant of a variant, enum, option or result by one byte. Names (of a record's fields, a variant's cases) are
/// the type's, not data, and count nothing.
pub fn data_len(val: &Val) -> usize {
    let sum = |vals: &mut dyn Iterator<Item = &Val>| {
        vals.fold(0usize, |total, val| total.saturating_add(data_len(val)))
    };
    let payload = |val: &Option<Box<Val>>| val.as_deref().map_or(0, data_len).saturating_add(1);
    match val {
        Val::Bool(_) | Val::S8(_) | Val::U8(_) => 1,
        Val::S16(_) | Val::U16(_) => 2,
        Val::S32(_) | Val::U32(_) | Val::Float32(_) | Val::Char(_) => 4,
        Val::S64(_) | Val::U64(_) | Val::Float64(_) => 8,
        Val::String(text) => text.len(),
        Val::List(vals) | Val::Tuple(vals) | Val::FixedLengthList(vals) => sum(&mut vals.iter()),
        Val::Map(pairs) => sum(&mut pairs.iter().flat_map(|(k, v)| [k, v])),
        Val::Record(fields) => sum(&mut fields.iter().map(|(_, val)| val)),
        Val::Variant(_, val) | Val::Option(val) => payload(val),
        Val::Result(Ok(val) | Err(val)) => payload(val),
        Val::Enum(_) => 1,
        Val::Flags(flags) => flags.len().div_ceil(8),
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => 4,
    }
}

fn elements(items: &[Value], elem: &Type) -> Result<Vec<Val>, ValueError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| to_val(v, elem).map_err(|e| e.at(format!("[{i}]"))))
        .collect()
}

fn payload_val(payload: &Value, ty: Option<&Type>) -> Result<Option<Box<Val>>, ValueError> {
    match (ty, payload) {
        (None, Value::Null) => Ok(None),
        (None, other) => Err(expected("null (this case has no payload)", other)),
        (Some(ty), v) => Ok(Some(Box::new(to_val(v, ty)?))),
    }
}

fn payload_value(payload: Option<Box<Val>>, ty: Option<&Type>) -> Result<Value, ValueError> {
    match (payload, ty) {
        (Some(v), Some(ty)) => from_val(*v, ty),
        _ => Ok(Value::Null),
    }
}

/// A map with exactly one text key (variants and results); a bare text string
/// is accepted as a case without payload.
fn single_key<'a>(value: &'a Value, what: &str) -> Result<(&'a str, &'a Value), ValueError> {
    static NULL: Value = Value::Null;
    match value {
        Value::Map(entries) if entries.len() == 1 => Ok((text_key(&entries[0].0)?, &entries[0].1)),
        Value::Map(entries) => Err(ValueError::new(format!(
            "expected a map with exactly one key ({what}), got {} keys",
            entries.len()
        ))),
        Value::Text(name) => Ok((name.as_str(), &NULL)),
        other => Err(expected(&format!("a map with one key ({what})"), other)),
    }
}

fn text_key(key: &Value) -> Result<&str, ValueError> {
    match key {
        Value::Text(s) => Ok(s),
        other => Err(expected("a text key", other)),
    }
}

fn int<T: TryFrom<i128>>(value: &Value, name: &str) -> Result<T, ValueError> {
    let out_of_range =
        |shown: &dyn fmt::Display| ValueError::new(format!("{shown} is out of range for {name}"));
    let n = match bignum::integer(value) {
        Some(n) => n.map_err(|shown| out_of_range(&shown))?,
        None => return Err(expected(&format!("an integer ({name})"), value)),
    };
    T::try_from(n).map_err(|_| out_of_range(&n))
}

fn float(value: &Value, name: &str) -> Result<f64, ValueError> {
    match value {
        Value::Float(f) => Ok(*f),
        Value::Integer(i) => Ok(i128::from(*i) as f64),
        other => Err(expected(&format!("a number ({name})"), other)),
    }
}

fn expected(what: &str, got: &Value) -> ValueError {
    ValueError::new(format!("expected {what}, got {}", describe(got)))
}

/// A short description of a CBOR value for error messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Integer(i) => format!("integer {}", i128::from(*i)),
        Value::Bytes(b) => format!("bytes ({} bytes)", b.len()),
        Value::Float(f) => format!("float {f}"),
        Value::Text(s) if s.len() <= 32 => format!("text {s:?}"),
        Value::Text(_) => "text".to_owned(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Null => "null".to_owned(),
        Value::Tag(tag, _) => format!("tag {tag}"),
        Value::Array(items) => format!("an array of {} elements", items.len()),
        Value::Map(entries) => format!("a map of {} entries", entries.len()),
        _ => "an unsupported CBOR item".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bignum_value(tag: u64, magnitude: &[u8]) -> Value {
        Value::Tag(tag, Box::new(Value::Bytes(magnitude.to_vec())))
    }

    #[test]
    fn a_bignum_out_of_range_is_reported_by_its_value() {
        let two_to_64 = [1, 0, 0, 0, 0, 0, 0, 0, 0];
        let cases = [
            (
                bignum_value(2, &two_to_64),
                "18446744073709551616 is out of range for u64",
            ),
            (
                bignum_value(3, &two_to_64),
                "-18446744073709551617 is out of range for s64",
            ),
            (
                bignum_value(2, &[0xff; 16]),
                "340282366920938463463374607431768211455 is out of range for u64",
            ),
            (
                bignum_value(3, &[0xff; 16]),
                "-340282366920938463463374607431768211456 is out of range for s64",
            ),
            (
                bignum_value(2, &[1; 17]),
                "a bignum of 17 bytes is out of range for u64",
            ),
            (
                bignum_value(3, &[1; 20]),
                "a negative bignum of 20 bytes is out of range for s64",
            ),
        ];
        for (value, message) in cases {
            let ty = if message.ends_with("u64") {
                Type::U64
            } else {
                Type::S64
            };
            assert_eq!(to_val(&value, &ty).unwrap_err().to_string(), message);
        }
        // Leading zero bytes do not count, and small bignums fit.
        let mut padded = vec![0; 20];
        padded.push(5);
        assert_eq!(
            to_val(&bignum_value(2, &padded), &Type::U8).unwrap(),
            Val::U8(5)
        );
        assert_eq!(
            to_val(&bignum_value(3, &[4]), &Type::S8).unwrap(),
            Val::S8(-5)
        );
        assert_eq!(
            to_val(&bignum_value(2, &[1, 0]), &Type::U8)
                .unwrap_err()
                .to_string(),
            "256 is out of range for u8"
        );
        // A tag 2 over anything but bytes is no bignum.
        assert_eq!(
            to_val(&Value::Tag(2, Box::new(Value::from(1))), &Type::U8)
                .unwrap_err()
                .to_string(),
            "expected an integer (u8), got tag 2"
        );
    }

    #[test]
    fn data_len_counts_bytes_not_values() {
        assert_eq!(data_len(&Val::String("héllo".into())), 6);
        assert_eq!(data_len(&Val::List(vec![Val::U8(1); 1000])), 1000);
        assert_eq!(data_len(&Val::List(vec![Val::U64(1); 10])), 80);
        let record = Val::Record(vec![
            ("a-long-field-name".into(), Val::String("abc".into())),
            ("n".into(), Val::S32(-1)),
        ]);
        assert_eq!(data_len(&record), 3 + 4);
        assert_eq!(data_len(&Val::Option(None)), 1);
        assert_eq!(
            data_len(&Val::Result(Err(Some(Box::new(Val::String("no".into())))))),
            1 + 2
        );
        assert_eq!(
            data_len(&Val::Variant(
                "case".into(),
                Some(Box::new(Val::Float64(1.0)))
            )),
            1 + 8
        );
        assert_eq!(
            data_len(&Val::Tuple(vec![Val::Bool(true), Val::Char('x')])),
            5
        );
    }
}
