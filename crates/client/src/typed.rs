//! Typed values: ordinary serde types ↔ the CBOR values a host expects for
//! each WIT type (the mapping of PROTOCOL.md §8).
//!
//! [`to_args`] builds a call's argument list, [`to_value`] one value and
//! [`from_value`] reads an answer (or a `handler_error`'s `detail`) back
//! into a Rust type. `Client::call` uses them; call them directly to work
//! with [`ciborium::Value`]s.
//!
//! # The Rust shape of each WIT type
//!
//! | WIT | Rust | CBOR |
//! |---|---|---|
//! | `bool`, `u8`…`u64`, `s8`…`s64` | `bool`, `u8`…`u64`, `i8`…`i64` | bool, integer |
//! | `f32`, `f64` | `f32`, `f64` | float |
//! | `char`, `string` | `char`, `String` | text |
//! | `list<u8>` | `Vec<u8>` (or `&[u8]`, `serde_bytes`) | byte string |
//! | `list<T>` | `Vec<T>` | array |
//! | `tuple<A, B>` | `(A, B)` | array |
//! | `record` | a struct with `#[serde(rename_all = "kebab-case")]` | map keyed by field name |
//! | `variant` | an enum with `#[serde(rename_all = "kebab-case")]` | `{"case": payload}`, or `"case"` |
//! | `enum` | an enum of unit variants, `#[serde(rename_all = "kebab-case")]` | `"case"` |
//! | `option<T>` | `Option<T>` | `null` or T; `[x]` when T is an option |
//! | `result<T, E>` | `Result<T, E>` | `{"ok": v}` / `{"err": e}` |
//! | `flags` | `BTreeSet<F>` of a unit enum `F` deriving `Ord` | array of names |
//! | `map<K, V>` | `BTreeMap<K, V>`, `HashMap<K, V>` | map |
//! | no value, `result`'s missing side | `()` | `null` |
//! | anything | [`ciborium::Value`] | the value itself, unchanged |
//!
//! # Records and variants: kebab-case names
//!
//! WIT names are kebab-case (`nick-name`, `invalid-quantity`), Rust names
//! are not: put `#[serde(rename_all = "kebab-case")]` on every struct and
//! enum that maps to a WIT record, variant, enum or flags type. Without it a
//! field `nick_name` is sent as `"nick_name"`, which the host refuses
//! (``unknown field `nick_name` ``), and an enum case `Green` as `"Green"`.
//! `rename_all` on an enum renames its cases, not the fields of its struct
//! cases: add `rename_all_fields = "kebab-case"` for those.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use ciborium::Value;
//! use wasmrpc_client::typed::{from_value, to_value};
//!
//! /// `record person { name: string, age: u8, nick-name: option<string> }`
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! struct Person {
//!     name: String,
//!     age: u8,
//!     nick_name: Option<String>,
//! }
//!
//! /// `variant payload { none, count(u32), text(string), pair(tuple<s8, u16>) }`
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! #[serde(rename_all = "kebab-case")]
//! enum Payload {
//!     None,
//!     Count(u32),
//!     Text(String),
//!     Pair(i8, u16),
//! }
//!
//! let ada = Person { name: "Ada".into(), age: 36, nick_name: None };
//! let value = to_value(&ada)?;
//! assert_eq!(
//!     value,
//!     Value::Map(vec![
//!         ("name".into(), "Ada".into()),
//!         ("age".into(), 36.into()),
//!         ("nick-name".into(), Value::Null),
//!     ])
//! );
//! assert_eq!(from_value::<Person>(value)?, ada);
//!
//! assert_eq!(to_value(&Payload::Count(7))?, Value::Map(vec![("count".into(), 7.into())]));
//! assert_eq!(to_value(&Payload::None)?, Value::Text("none".into()));
//! // The host answers a case without payload in map form; both read back.
//! let none = Value::Map(vec![("none".into(), Value::Null)]);
//! assert_eq!(from_value::<Payload>(none)?, Payload::None);
//! # Ok::<(), wasmrpc_client::typed::Error>(())
//! ```
//!
//! Every field of a record is required by the host, an `option` one too:
//! do not skip `None` fields (`skip_serializing_if`), send them as `null`.
//! Reading is as lenient as serde itself: fields the Rust struct does not
//! have are ignored unless it says `#[serde(deny_unknown_fields)]`, and a
//! missing `Option` field reads as `None`.
//!
//! # Details of the mapping
//!
//! - **Variants.** A unit case is sent as bare text (`"none"`): the host
//!   accepts that for a variant and requires it for an enum. A newtype case
//!   is `{"case": payload}`, a tuple case `{"case": [a, b]}` (a WIT case
//!   whose payload is a tuple) and a struct case `{"case": {..}}` (a
//!   record). Reading accepts `"case"` and `{"case": null}` for a unit case.
//! - **Options.** `None` is `null` and `Some(x)` is `x`, except when `x` is
//!   itself an option: then `Some` is a one-element array, at each level.
//!   `Some(None::<u32>)` is `[null]`, `Some(Some(5))` is `[5]`, and
//!   `Some(Some(None))` of an `Option<Option<Option<u32>>>` is `[[null]]`.
//! - **Results.** `Ok(v)` is `{"ok": v}` and `Err(e)` is `{"err": e}`;
//!   `Ok(())` is `{"ok": null}`, and reading also accepts a bare `"ok"` or
//!   `"err"` for a `()` side. A function's *top-level* `result` is not sent
//!   in this form: the host answers `ok`'s value itself and turns `err` into
//!   a `handler_error` whose `detail` is the error value, to be read with
//!   [`from_value`].
//! - **Byte lists.** A sequence whose elements all serialize as `u8` (what
//!   `Vec<u8>` and `&[u8]` do) becomes a CBOR byte string, as does
//!   `serialize_bytes`; an empty sequence is an empty array, which the host
//!   accepts for `list<u8>`. A byte string reads back into `Vec<u8>` (and
//!   into any sequence of integers). Fixed-size arrays (`[u8; 4]`) serialize
//!   as tuples, so they stay arrays.
//! - **Flags.** A sequence of names. `BTreeSet<F>` of a unit enum deriving
//!   `Ord`, declared in WIT order, sends the flags in the order the host
//!   answers them; `Vec<F>` works too.
//! - **Numbers.** Reading into a narrower integer type is range-checked
//!   (``300 is out of range for u8``); floats are never read as integers.
//!   `f32` and `f64` read floats and integers; an `f32` refuses finite
//!   values beyond its range.
//! - **[`ciborium::Value`]** passes through both ways unchanged, so
//!   `Vec<Value>` arguments and `Value` answers work as before.
//! - **Buffered serde features.** `#[serde(flatten)]`, untagged and
//!   internally tagged enums read through serde's own buffer of the value,
//!   which follows serde's generic rules instead of this mapping: inside
//!   them, byte strings do not read into `Vec<u8>`, `{"ok": v}` does not
//!   read into a `Result`, and nested options lose their array. Plain
//!   records, strings, numbers and lists read as above.
//! - Types with a human-readable form (`std::net::IpAddr`, most date and
//!   UUID types) use it, and map to `string`.
//!
//! Errors name where in the value they happened, as the host's do:
//! ``at [1].age: expected an integer (u8), got text "x"``.

use std::fmt;
use std::vec;

use ciborium::Value;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde::ser::{self, Serialize};
use wasmrpc_protocol::bignum;

/// A value that does not fit the mapping, and where in the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Outermost first: `.field`, `.case`, `[index]`, `<key i>`, `<value i>`.
    path: Vec<String>,
    message: String,
}

impl Error {
    fn new(message: impl Into<String>) -> Error {
        Error {
            path: Vec::new(),
            message: message.into(),
        }
    }

    fn at(mut self, segment: impl Into<String>) -> Error {
        self.path.insert(0, segment.into());
        self
    }

    /// Where the error is, as written in its message (`[1].age`); empty at
    /// the top of the value.
    pub fn path(&self) -> String {
        self.path.concat()
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "at {}: {}", self.path.concat(), self.message)
        }
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error::new(msg.to_string())
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error::new(msg.to_string())
    }
}

/// The argument list of a call: one value per parameter, in order.
///
/// `args` is a tuple (`(2, 3)`, or `("Ada",)` for one argument), a `Vec`,
/// slice or array of values, or `()` for none.
///
/// ```
/// use ciborium::Value;
/// use wasmrpc_client::typed::to_args;
///
/// assert_eq!(to_args(&(2, 3))?, vec![Value::from(2), Value::from(3)]);
/// assert_eq!(to_args(&("Ada",))?, vec![Value::from("Ada")]);
/// assert_eq!(to_args(&())?, vec![]);
/// // A byte list is one argument: wrap it in a one-tuple.
/// assert_eq!(to_args(&(vec![1u8, 2],))?, vec![Value::Bytes(vec![1, 2])]);
/// # Ok::<(), wasmrpc_client::typed::Error>(())
/// ```
///
/// # Errors
///
/// When `args` is not a sequence (a single number, a struct, ...), or one of
/// its values cannot be represented (an `i128` beyond CBOR's integers).
pub fn to_args<A: Serialize + ?Sized>(args: &A) -> Result<Vec<Value>, Error> {
    let encoded = encode(args, Mode::Args)?;
    match encoded.value {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        other => Err(Error::new(format!(
            "the arguments must be a sequence (a tuple, a Vec or `()`), got {}",
            describe(&other)
        ))),
    }
}

/// The CBOR value of `value`.
///
/// # Errors
///
/// When a value cannot be represented: an `i128` or `u128` beyond CBOR's
/// integers, a map key that fails, or a type's own `Serialize` error.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, Error> {
    Ok(encode(value, Mode::Plain)?.value)
}

/// Reads `value` (an answer, or a `handler_error`'s `detail`) into `R`.
///
/// ```
/// use ciborium::Value;
/// use wasmrpc_client::typed::from_value;
///
/// let answer = Value::Array(vec![6.into(), Value::Bytes(vec![3, 2, 1])]);
/// let (sum, reversed): (u32, Vec<u8>) = from_value(answer)?;
/// assert_eq!((sum, reversed), (6, vec![3, 2, 1]));
///
/// let error = from_value::<u8>(Value::from(300)).unwrap_err();
/// assert_eq!(error.to_string(), "300 is out of range for u8");
/// # Ok::<(), wasmrpc_client::typed::Error>(())
/// ```
///
/// # Errors
///
/// When `value` does not have the shape of `R`: the message says what was
/// expected, what was found and where (``at [1].age: ...``).
pub fn from_value<R: DeserializeOwned>(value: Value) -> Result<R, Error> {
    R::deserialize(De(value))
}

// ---------------------------------------------------------------------------
// Serializing
// ---------------------------------------------------------------------------

/// What a serializer is producing, as far as the mapping cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// An ordinary value.
    Plain,
    /// The payload of a `Some`: if it turns out to be an option itself, its
    /// `Some` and `None` are wrapped in a one-element array.
    InSome,
    /// The argument list: a sequence of u8 stays a list of integers.
    Args,
}

/// A serialized value, and whether it came from `serialize_u8` (so that a
/// sequence of them becomes a byte string).
struct Encoded {
    value: Value,
    byte: bool,
}

impl Encoded {
    fn plain(value: Value) -> Encoded {
        Encoded { value, byte: false }
    }
}

/// Whether `T` is [`ciborium::Value`]. A `Value` serializes its small
/// integers with `serialize_u8`, like a `Vec<u8>` does; it is told apart by
/// its type so that an array of integers inside a `Value` stays an array.
/// (`TypeId` would need `T: 'static`, which `Serialize` does not give.)
fn is_value<T: ?Sized>() -> bool {
    std::any::type_name::<T>() == std::any::type_name::<Value>()
}

fn encode<T: Serialize + ?Sized>(value: &T, mode: Mode) -> Result<Encoded, Error> {
    if is_value::<T>() {
        let value = Value::serialized(value).map_err(|e| Error::new(e.to_string()))?;
        return Ok(Encoded::plain(value));
    }
    value.serialize(Ser { mode })
}

/// The case name sent for a variant: serde names `Result`'s `Ok`/`Err`,
/// WIT names them `ok`/`err`.
fn case_name(name: &str, variant: &'static str) -> &'static str {
    match (name, variant) {
        ("Result", "Ok") => "ok",
        ("Result", "Err") => "err",
        _ => variant,
    }
}

fn integer<N: Into<ciborium::value::Integer>>(n: N) -> Result<Encoded, Error> {
    Ok(Encoded::plain(Value::Integer(n.into())))
}

struct Ser {
    mode: Mode,
}

impl ser::Serializer for Ser {
    type Ok = Encoded;
    type Error = Error;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = TupleVariantSer;
    type SerializeMap = MapSer;
    type SerializeStruct = StructSer;
    type SerializeStructVariant = StructSer;

    fn serialize_bool(self, v: bool) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Bool(v)))
    }

    fn serialize_i8(self, v: i8) -> Result<Encoded, Error> {
        integer(v)
    }

    fn serialize_i16(self, v: i16) -> Result<Encoded, Error> {
        integer(v)
    }

    fn serialize_i32(self, v: i32) -> Result<Encoded, Error> {
        integer(v)
    }

    fn serialize_i64(self, v: i64) -> Result<Encoded, Error> {
        integer(v)
    }

    fn serialize_i128(self, v: i128) -> Result<Encoded, Error> {
        let n = ciborium::value::Integer::try_from(v)
            .map_err(|_| Error::new(format!("{v} is out of range for a CBOR integer")))?;
        integer(n)
    }

    fn serialize_u8(self, v: u8) -> Result<Encoded, Error> {
        Ok(Encoded {
            value: Value::Integer(v.into()),
            byte: true,
        })
    }

    fn serialize_u16(self, v: u16) -> Result<Encoded, Error> {
        integer(v)
    }

    fn serialize_u32(self, v: u32) -> Result<Encoded, Error> {
        integer(v)
    }

    fn serialize_u64(self, v: u64) -> Result<Encoded, Error> {
        integer(v)
    }

    fn serialize_u128(self, v: u128) -> Result<Encoded, Error> {
        let n = ciborium::value::Integer::try_from(v)
            .map_err(|_| Error::new(format!("{v} is out of range for a CBOR integer")))?;
        integer(n)
    }

    fn serialize_f32(self, v: f32) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Float(f64::from(v))))
    }

    fn serialize_f64(self, v: f64) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Float(v)))
    }

    fn serialize_char(self, v: char) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Text(v.to_string())))
    }

    fn serialize_str(self, v: &str) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Text(v.to_owned())))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Bytes(v.to_vec())))
    }

    fn serialize_none(self) -> Result<Encoded, Error> {
        Ok(Encoded::plain(match self.mode {
            // `Some(None)`: the inner option's none, wrapped.
            Mode::InSome => Value::Array(vec![Value::Null]),
            Mode::Plain | Mode::Args => Value::Null,
        }))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Encoded, Error> {
        let inner = encode(value, Mode::InSome)?.value;
        Ok(Encoded::plain(match self.mode {
            // `Some(Some(x))`: the inner option's some, wrapped.
            Mode::InSome => Value::Array(vec![inner]),
            Mode::Plain | Mode::Args => inner,
        }))
    }

    fn serialize_unit(self) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Null))
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Null))
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Text(case_name(name, variant).into())))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Encoded, Error> {
        // Transparent: a wrapper of a `u8` is a byte, of an option an option.
        encode(value, self.mode)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Encoded, Error> {
        let case = case_name(name, variant);
        let payload = encode(value, Mode::Plain).map_err(|e| e.at(format!(".{case}")))?;
        Ok(Encoded::plain(Value::Map(vec![(
            Value::Text(case.into()),
            payload.value,
        )])))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, Error> {
        Ok(SeqSer {
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            bytes: self.mode != Mode::Args,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<SeqSer, Error> {
        Ok(SeqSer {
            items: Vec::with_capacity(len.min(4096)),
            bytes: false,
        })
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqSer, Error> {
        self.serialize_tuple(len)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<TupleVariantSer, Error> {
        // `ciborium::Value::Tag` serializes as this tuple variant.
        let case = if (name, variant) == ("@@TAG@@", "@@TAGGED@@") {
            None
        } else {
            Some(case_name(name, variant))
        };
        Ok(TupleVariantSer {
            case,
            items: Vec::with_capacity(len.min(4096)),
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<MapSer, Error> {
        Ok(MapSer {
            entries: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            key: None,
        })
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<StructSer, Error> {
        Ok(StructSer {
            case: None,
            fields: Vec::with_capacity(len.min(4096)),
        })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<StructSer, Error> {
        Ok(StructSer {
            case: Some(case_name(name, variant)),
            fields: Vec::with_capacity(len.min(4096)),
        })
    }
}

/// Sequences and tuples: an array, or a byte string for a non-empty
/// sequence of `u8`s.
struct SeqSer {
    items: Vec<Value>,
    /// Still a candidate for a byte string.
    bytes: bool,
}

impl SeqSer {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let index = self.items.len();
        let encoded = encode(value, Mode::Plain).map_err(|e| e.at(format!("[{index}]")))?;
        self.bytes &= encoded.byte;
        self.items.push(encoded.value);
        Ok(())
    }

    fn finish(self) -> Encoded {
        if self.bytes && !self.items.is_empty() {
            let bytes = self
                .items
                .iter()
                .map(|item| match item {
                    Value::Integer(n) => u8::try_from(*n).expect("serialized by serialize_u8"),
                    _ => unreachable!("serialized by serialize_u8"),
                })
                .collect();
            Encoded::plain(Value::Bytes(bytes))
        } else {
            Encoded::plain(Value::Array(self.items))
        }
    }
}

impl ser::SerializeSeq for SeqSer {
    type Ok = Encoded;
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }

    fn end(self) -> Result<Encoded, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqSer {
    type Ok = Encoded;
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }

    fn end(self) -> Result<Encoded, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqSer {
    type Ok = Encoded;
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }

    fn end(self) -> Result<Encoded, Error> {
        Ok(self.finish())
    }
}

/// A tuple case, `{"case": [..]}`; or, without a case, a CBOR tag.
struct TupleVariantSer {
    case: Option<&'static str>,
    items: Vec<Value>,
}

impl ser::SerializeTupleVariant for TupleVariantSer {
    type Ok = Encoded;
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let index = self.items.len();
        let encoded = encode(value, Mode::Plain).map_err(|e| {
            let e = e.at(format!("[{index}]"));
            match self.case {
                Some(case) => e.at(format!(".{case}")),
                None => e,
            }
        })?;
        self.items.push(encoded.value);
        Ok(())
    }

    fn end(self) -> Result<Encoded, Error> {
        match self.case {
            Some(case) => Ok(Encoded::plain(Value::Map(vec![(
                Value::Text(case.into()),
                Value::Array(self.items),
            )]))),
            None => match <[Value; 2]>::try_from(self.items) {
                Ok([Value::Integer(tag), value]) => {
                    let tag =
                        u64::try_from(tag).map_err(|_| Error::new("a CBOR tag out of range"))?;
                    Ok(Encoded::plain(Value::Tag(tag, Box::new(value))))
                }
                _ => Err(Error::new("a CBOR tag must be a number and a value")),
            },
        }
    }
}

struct MapSer {
    entries: Vec<(Value, Value)>,
    key: Option<Value>,
}

impl ser::SerializeMap for MapSer {
    type Ok = Encoded;
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let index = self.entries.len();
        let key = encode(key, Mode::Plain).map_err(|e| e.at(format!("<key {index}>")))?;
        self.key = Some(key.value);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let index = self.entries.len();
        let key = self
            .key
            .take()
            .ok_or_else(|| Error::new("a map value without a key"))?;
        let value = encode(value, Mode::Plain).map_err(|e| e.at(format!("<value {index}>")))?;
        self.entries.push((key, value.value));
        Ok(())
    }

    fn end(self) -> Result<Encoded, Error> {
        Ok(Encoded::plain(Value::Map(self.entries)))
    }
}

/// A record, `{"field": value, ..}`; with a case, a struct case
/// `{"case": {..}}`.
struct StructSer {
    case: Option<&'static str>,
    fields: Vec<(Value, Value)>,
}

impl StructSer {
    fn push<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        let encoded = encode(value, Mode::Plain).map_err(|e| {
            let e = e.at(format!(".{key}"));
            match self.case {
                Some(case) => e.at(format!(".{case}")),
                None => e,
            }
        })?;
        self.fields.push((Value::Text(key.into()), encoded.value));
        Ok(())
    }

    fn finish(self) -> Encoded {
        let record = Value::Map(self.fields);
        Encoded::plain(match self.case {
            Some(case) => Value::Map(vec![(Value::Text(case.into()), record)]),
            None => record,
        })
    }
}

impl ser::SerializeStruct for StructSer {
    type Ok = Encoded;
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.push(key, value)
    }

    fn end(self) -> Result<Encoded, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeStructVariant for StructSer {
    type Ok = Encoded;
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.push(key, value)
    }

    fn end(self) -> Result<Encoded, Error> {
        Ok(self.finish())
    }
}

// ---------------------------------------------------------------------------
// Deserializing
// ---------------------------------------------------------------------------

/// A short description of a CBOR value, worded as the host's errors.
fn describe(value: &Value) -> String {
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

fn expected(what: &str, got: &Value) -> Error {
    Error::new(format!("expected {what}, got {}", describe(got)))
}

/// The integer in `value`, range-checked for `N` (named `name`).
fn int<N: TryFrom<i128>>(value: &Value, name: &str) -> Result<N, Error> {
    let out_of_range =
        |shown: &dyn fmt::Display| Error::new(format!("{shown} is out of range for {name}"));
    let n = match bignum::integer(value) {
        Some(n) => n.map_err(|shown| out_of_range(&shown))?,
        None => return Err(expected(&format!("an integer ({name})"), value)),
    };
    N::try_from(n).map_err(|_| out_of_range(&n))
}

/// `u128` values above `i128::MAX` (bignums only).
fn int_u128(value: &Value) -> Result<u128, Error> {
    if let Value::Tag(bignum::POSITIVE, inner) = value
        && let Value::Bytes(magnitude) = &**inner
    {
        let first = magnitude
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude.len());
        let digits = &magnitude[first..];
        if digits.len() <= 16 {
            return Ok(digits.iter().fold(0u128, |n, &b| (n << 8) | u128::from(b)));
        }
    }
    int(value, "u128")
}

fn number(value: &Value, name: &str) -> Result<f64, Error> {
    match value {
        Value::Float(f) => Ok(*f),
        Value::Integer(i) => Ok(i128::from(*i) as f64),
        other => Err(expected(&format!("a number ({name})"), other)),
    }
}

/// Reads one value.
struct De(Value);

/// Reads the payload of a `Some`: when the payload is itself an option, it
/// is wrapped in a one-element array.
struct InSome(Value);

macro_rules! deserialize_int {
    ($($method:ident => $visit:ident($ty:ty, $name:literal)),+ $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                visitor.$visit(int::<$ty>(&self.0, $name)?)
            }
        )+
    };
}

impl<'de> de::Deserializer<'de> for De {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Integer(i) => {
                let n = i128::from(i);
                if let Ok(n) = u64::try_from(n) {
                    visitor.visit_u64(n)
                } else if let Ok(n) = i64::try_from(n) {
                    visitor.visit_i64(n)
                } else {
                    visitor.visit_i128(n)
                }
            }
            Value::Float(f) => visitor.visit_f64(f),
            Value::Text(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::Array(items) => visit_seq(Items::Values(items.into_iter()), visitor),
            Value::Map(entries) => visit_map(entries, Keys::Map, visitor),
            Value::Tag(tag, value) => visitor.visit_enum(TagAccess(tag, *value)),
            other => Err(expected("a supported CBOR item", &other)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(b),
            other => Err(expected("bool", &other)),
        }
    }

    deserialize_int! {
        deserialize_i8 => visit_i8(i8, "i8"),
        deserialize_i16 => visit_i16(i16, "i16"),
        deserialize_i32 => visit_i32(i32, "i32"),
        deserialize_i64 => visit_i64(i64, "i64"),
        deserialize_i128 => visit_i128(i128, "i128"),
        deserialize_u8 => visit_u8(u8, "u8"),
        deserialize_u16 => visit_u16(u16, "u16"),
        deserialize_u32 => visit_u32(u32, "u32"),
        deserialize_u64 => visit_u64(u64, "u64"),
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u128(int_u128(&self.0)?)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let f = number(&self.0, "f32")?;
        if f.is_finite() && f.abs() > f64::from(f32::MAX) {
            return Err(Error::new(format!("{f:e} is out of range for f32")));
        }
        visitor.visit_f32(f as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(number(&self.0, "f64")?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.0 {
            Value::Text(s) => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => visitor.visit_char(c),
                    _ => Err(Error::new(format!(
                        "expected a char (text of exactly one character), got text of {} characters",
                        s.chars().count()
                    ))),
                }
            }
            other => Err(expected("a char (text of one character)", other)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Text(s) => visitor.visit_string(s),
            other => Err(expected("text", &other)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::Array(items) => visit_seq(Items::Values(items.into_iter()), visitor),
            other => Err(expected("bytes or an array", &other)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            value => visitor.visit_some(InSome(value)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            other => Err(expected("null", &other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visit_seq(Items::Values(items.into_iter()), visitor),
            // `list<u8>` answers are byte strings: present them as the
            // sequence of integers a `Vec<u8>` reads.
            Value::Bytes(bytes) => visit_seq(Items::Bytes(bytes.into_iter()), visitor),
            other => Err(expected("an array", &other)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let items = match self.0 {
            Value::Array(items) if items.len() == len => Items::Values(items.into_iter()),
            Value::Bytes(bytes) if bytes.len() == len => Items::Bytes(bytes.into_iter()),
            Value::Array(items) => return Err(wrong_length(len, items.len())),
            Value::Bytes(bytes) => return Err(wrong_length(len, bytes.len())),
            other => return Err(expected("an array (tuple)", &other)),
        };
        visit_seq(items, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Map(entries) => visit_map(entries, Keys::Map, visitor),
            other => Err(expected("a map", &other)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Map(entries) => visit_map(entries, Keys::Record, visitor),
            // serde's derived structs also read a sequence of field values.
            Value::Array(items) => visit_seq(Items::Values(items.into_iter()), visitor),
            other => Err(expected("a map (record)", &other)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (case, payload) = match self.0 {
            Value::Text(case) => (case, None),
            Value::Map(entries) if entries.len() == 1 => {
                let (key, payload) = entries.into_iter().next().expect("one entry");
                match key {
                    Value::Text(case) => (case, Some(payload)),
                    other => return Err(expected("a text key", &other)),
                }
            }
            Value::Map(entries) => {
                return Err(Error::new(format!(
                    "expected a map with exactly one key (variant), got {} keys",
                    entries.len()
                )));
            }
            other => return Err(expected("a map with one key (variant)", &other)),
        };
        let rust_case = if name == "Result" && variants == ["Ok", "Err"] {
            match case.as_str() {
                "ok" => "Ok".to_owned(),
                "err" => "Err".to_owned(),
                other => {
                    return Err(Error::new(format!(
                        "expected key `ok` or `err`, got `{other}`"
                    )));
                }
            }
        } else {
            case.clone()
        };
        visitor.visit_enum(Case {
            segment: format!(".{case}"),
            case: rust_case,
            payload,
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Text(s) => visitor.visit_string(s),
            Value::Integer(i) => visitor.visit_u64(int(&Value::Integer(i), "u64")?),
            other => Err(expected("text (a name)", &other)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// Everything but options reads as in [`De`]; an option is unwrapped from
/// its one-element array first.
macro_rules! forward_to_de {
    ($($method:ident($($arg:ident: $ty:ty),*)),+ $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
                De(self.0).$method($($arg,)* visitor)
            }
        )+
    };
}

impl<'de> de::Deserializer<'de> for InSome {
    type Error = Error;

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) if items.len() == 1 => {
                let inner = items.into_iter().next().expect("one element");
                De(inner).deserialize_option(visitor)
            }
            other => Err(expected(
                "null or an array of one element (some of an option)",
                &other,
            )),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_de! {
        deserialize_any(),
        deserialize_bool(),
        deserialize_i8(),
        deserialize_i16(),
        deserialize_i32(),
        deserialize_i64(),
        deserialize_i128(),
        deserialize_u8(),
        deserialize_u16(),
        deserialize_u32(),
        deserialize_u64(),
        deserialize_u128(),
        deserialize_f32(),
        deserialize_f64(),
        deserialize_char(),
        deserialize_str(),
        deserialize_string(),
        deserialize_bytes(),
        deserialize_byte_buf(),
        deserialize_unit(),
        deserialize_unit_struct(name: &'static str),
        deserialize_seq(),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_map(),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(),
        deserialize_ignored_any(),
    }
}

fn wrong_length(expected: usize, got: usize) -> Error {
    Error::new(format!(
        "expected a tuple of {expected} elements, got {got}"
    ))
}

/// The elements of an array, or the bytes of a byte string as integers.
enum Items {
    Values(vec::IntoIter<Value>),
    Bytes(vec::IntoIter<u8>),
}

impl Items {
    fn next(&mut self) -> Option<Value> {
        match self {
            Items::Values(items) => items.next(),
            Items::Bytes(bytes) => bytes.next().map(|b| Value::Integer(b.into())),
        }
    }

    fn len(&self) -> usize {
        match self {
            Items::Values(items) => items.len(),
            Items::Bytes(bytes) => bytes.len(),
        }
    }
}

struct Seq {
    items: Items,
    index: usize,
}

/// Visits a sequence, and refuses elements the visitor left unread.
fn visit_seq<'de, V: Visitor<'de>>(items: Items, visitor: V) -> Result<V::Value, Error> {
    let total = items.len();
    let mut seq = Seq { items, index: 0 };
    let value = visitor.visit_seq(&mut seq)?;
    if seq.items.len() > 0 {
        return Err(Error::new(format!(
            "expected {} elements, got {total}",
            seq.index
        )));
    }
    Ok(value)
}

impl<'de> SeqAccess<'de> for &mut Seq {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(De(item))
            .map(Some)
            .map_err(|e| e.at(format!("[{index}]")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// How a map's entries are named in error paths.
#[derive(Clone, Copy)]
enum Keys {
    /// A record: `.field`.
    Record,
    /// A map: `<key i>`, `<value i>`.
    Map,
}

struct Map {
    entries: vec::IntoIter<(Value, Value)>,
    keys: Keys,
    index: usize,
    /// The value of the entry whose key was just read, and its path segment.
    value: Option<(Value, String)>,
}

/// Visits a map, and refuses entries the visitor left unread.
fn visit_map<'de, V: Visitor<'de>>(
    entries: Vec<(Value, Value)>,
    keys: Keys,
    visitor: V,
) -> Result<V::Value, Error> {
    let mut map = Map {
        entries: entries.into_iter(),
        keys,
        index: 0,
        value: None,
    };
    let value = visitor.visit_map(&mut map)?;
    if map.entries.len() > 0 {
        return Err(Error::new(format!(
            "{} map entries were left unread",
            map.entries.len()
        )));
    }
    Ok(value)
}

impl<'de> MapAccess<'de> for &mut Map {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        let segment = match (self.keys, &key) {
            (Keys::Record, Value::Text(name)) => format!(".{name}"),
            _ => format!("<value {index}>"),
        };
        self.value = Some((value, segment));
        let keys = self.keys;
        seed.deserialize(De(key)).map(Some).map_err(|e| match keys {
            // A record's key is the field's name: ``unknown field `x` ``.
            Keys::Record => e,
            Keys::Map => e.at(format!("<key {index}>")),
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (value, segment) = self
            .value
            .take()
            .ok_or_else(|| Error::new("a map value read before its key"))?;
        seed.deserialize(De(value)).map_err(|e| e.at(segment))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A variant's case and payload: `"case"` (no payload) or
/// `{"case": payload}`.
struct Case {
    /// The name the Rust enum knows (`Ok` for the wire's `ok`).
    case: String,
    /// `.case`, as sent.
    segment: String,
    payload: Option<Value>,
}

impl<'de> EnumAccess<'de> for Case {
    type Error = Error;
    type Variant = Payload;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Payload), Error> {
        let variant = seed.deserialize(self.case.into_deserializer())?;
        Ok((
            variant,
            Payload {
                segment: self.segment,
                value: self.payload,
            },
        ))
    }
}

struct Payload {
    segment: String,
    /// `None` for a bare text case.
    value: Option<Value>,
}

impl Payload {
    /// The payload, `null` for a bare text case: a case with a payload sent
    /// as bare text then fails on the payload's type, as on the host.
    fn de(self) -> (De, String) {
        (De(self.value.unwrap_or(Value::Null)), self.segment)
    }
}

impl<'de> VariantAccess<'de> for Payload {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            None | Some(Value::Null) => Ok(()),
            Some(other) => {
                Err(expected("null (this case has no payload)", &other).at(self.segment))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        let (de, segment) = self.de();
        seed.deserialize(de).map_err(|e| e.at(segment))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let (de, segment) = self.de();
        de::Deserializer::deserialize_tuple(de, len, visitor).map_err(|e| e.at(segment))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (de, segment) = self.de();
        de::Deserializer::deserialize_struct(de, "", fields, visitor).map_err(|e| e.at(segment))
    }
}

/// A CBOR tag, presented the way [`ciborium::Value`] reads one back.
struct TagAccess(u64, Value);

impl<'de> EnumAccess<'de> for TagAccess {
    type Error = Error;
    type Variant = TagAccess;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, TagAccess), Error> {
        let variant = seed.deserialize("@@TAGGED@@".into_deserializer())?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for TagAccess {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Err(Error::new(format!("expected a value, got tag {}", self.0)))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, Error> {
        Err(Error::new(format!("expected a value, got tag {}", self.0)))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        let items = vec![Value::Integer(self.0.into()), self.1];
        visit_seq(Items::Values(items.into_iter()), visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(Error::new(format!("expected a value, got tag {}", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::{Deserialize, Serialize};

    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn int(n: i128) -> Value {
        Value::Integer(n.try_into().unwrap())
    }

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (text(k), v.clone())).collect())
    }

    fn array(items: &[Value]) -> Value {
        Value::Array(items.to_vec())
    }

    /// The CBOR encoding of `value`, as hex pairs separated by spaces.
    fn hex(value: &Value) -> String {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap();
        out.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn args_hex<A: Serialize + ?Sized>(args: &A) -> String {
        hex(&Value::Array(to_args(args).unwrap()))
    }

    fn error<R: DeserializeOwned + fmt::Debug>(value: Value) -> String {
        from_value::<R>(value).unwrap_err().to_string()
    }

    /// `record person { name: string, age: u8, nick-name: option<string> }`
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Person {
        name: String,
        age: u8,
        nick_name: Option<String>,
    }

    fn person(name: &str, age: u8, nick: Option<&str>) -> Person {
        Person {
            name: name.into(),
            age,
            nick_name: nick.map(Into::into),
        }
    }

    fn person_value(name: &str, age: i128, nick: Value) -> Value {
        map(&[("name", text(name)), ("age", int(age)), ("nick-name", nick)])
    }

    /// `variant payload { none, count(u32), text(string), pair(tuple<s8, u16>) }`,
    /// plus a struct case (a case whose payload is a record).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case")]
    enum Payload {
        None,
        Count(u32),
        Text(String),
        Pair(i8, u16),
        Named { first_one: u8 },
    }

    /// `enum color { red, green, blue }`
    #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Color {
        Red,
        Green,
        Blue,
    }

    /// `flags perms { read, write, exec }`
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Perm {
        Read,
        Write,
        Exec,
    }

    /// Bytes through `serialize_bytes`, as `serde_bytes` does.
    struct RawBytes<'a>(&'a [u8]);

    impl Serialize for RawBytes<'_> {
        fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    /// Reads through `deserialize_byte_buf`, as `serde_bytes::ByteBuf` does.
    #[derive(Debug, PartialEq)]
    struct ByteBuf(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                    let mut out = Vec::new();
                    while let Some(b) = seq.next_element()? {
                        out.push(b);
                    }
                    Ok(ByteBuf(out))
                }
            }
            deserializer.deserialize_byte_buf(V)
        }
    }

    #[test]
    fn scalars_map_to_their_cbor_values_both_ways() {
        assert_eq!(to_value(&true).unwrap(), Value::Bool(true));
        assert_eq!(to_value(&u64::MAX).unwrap(), int(u64::MAX.into()));
        assert_eq!(to_value(&i64::MIN).unwrap(), int(i64::MIN.into()));
        assert_eq!(to_value(&-128i8).unwrap(), int(-128));
        assert_eq!(to_value(&65535u16).unwrap(), int(65535));
        assert_eq!(to_value(&1.5f32).unwrap(), Value::Float(1.5));
        assert_eq!(to_value(&-1e300f64).unwrap(), Value::Float(-1e300));
        assert_eq!(to_value(&'é').unwrap(), text("é"));
        assert_eq!(to_value("grüße").unwrap(), text("grüße"));
        assert_eq!(to_value(&()).unwrap(), Value::Null);
        let localhost = std::net::IpAddr::from([127, 0, 0, 1]);
        assert_eq!(to_value(&localhost).unwrap(), text("127.0.0.1"));
        assert_eq!(
            from_value::<std::net::IpAddr>(text("127.0.0.1")).unwrap(),
            localhost
        );

        assert!(!from_value::<bool>(Value::Bool(false)).unwrap());
        assert_eq!(from_value::<u64>(int(u64::MAX.into())).unwrap(), u64::MAX);
        assert_eq!(from_value::<i64>(int(i64::MIN.into())).unwrap(), i64::MIN);
        assert_eq!(from_value::<i8>(int(-128)).unwrap(), -128);
        assert_eq!(from_value::<u32>(int(4294967295)).unwrap(), u32::MAX);
        assert_eq!(from_value::<char>(text("🦀")).unwrap(), '🦀');
        assert_eq!(from_value::<String>(text("")).unwrap(), "");
        from_value::<()>(Value::Null).unwrap();
        // Answers are floats; integers are read as floats too.
        assert_eq!(from_value::<f64>(Value::Float(0.1)).unwrap(), 0.1);
        assert_eq!(from_value::<f64>(int(3)).unwrap(), 3.0);
        assert_eq!(from_value::<f32>(int(-2)).unwrap(), -2.0);
        // The host's rounding of 0.1 to f32, read back as f32 and as f64.
        let rounded = Value::Float(f64::from(0.1f32));
        assert_eq!(from_value::<f32>(rounded.clone()).unwrap(), 0.1f32);
        assert_eq!(from_value::<f64>(rounded).unwrap(), 0.10000000149011612);
        assert!(from_value::<f32>(Value::Float(f64::NAN)).unwrap().is_nan());
        assert_eq!(
            from_value::<f32>(Value::Float(f64::NEG_INFINITY)).unwrap(),
            f32::NEG_INFINITY
        );
    }

    #[test]
    fn narrower_integers_and_wrong_kinds_are_refused_clearly() {
        assert_eq!(error::<u8>(int(256)), "256 is out of range for u8");
        assert_eq!(error::<i8>(int(-129)), "-129 is out of range for i8");
        assert_eq!(error::<u64>(int(-1)), "-1 is out of range for u64");
        assert_eq!(
            error::<i64>(int(u64::MAX.into())),
            "18446744073709551615 is out of range for i64"
        );
        assert_eq!(
            error::<u32>(int(4294967296)),
            "4294967296 is out of range for u32"
        );
        assert_eq!(
            error::<u8>(text("x")),
            "expected an integer (u8), got text \"x\""
        );
        assert_eq!(
            error::<u16>(Value::Float(2.0)),
            "expected an integer (u16), got float 2"
        );
        assert_eq!(
            error::<f32>(Value::Float(1e39)),
            "1e39 is out of range for f32"
        );
        assert_eq!(
            error::<f64>(text("1")),
            "expected a number (f64), got text \"1\""
        );
        assert_eq!(error::<bool>(int(1)), "expected bool, got integer 1");
        assert_eq!(
            error::<char>(text("ab")),
            "expected a char (text of exactly one character), got text of 2 characters"
        );
        assert_eq!(
            error::<char>(text("")),
            "expected a char (text of exactly one character), got text of 0 characters"
        );
        // Text and bytes are not interchangeable.
        assert_eq!(
            error::<String>(Value::Bytes(vec![104, 105])),
            "expected text, got bytes (2 bytes)"
        );
        assert_eq!(error::<()>(int(0)), "expected null, got integer 0");
        // Bignums are integers, range-checked like the others.
        let big = |tag, bytes: &[u8]| Value::Tag(tag, Box::new(Value::Bytes(bytes.to_vec())));
        assert_eq!(from_value::<u8>(big(2, &[0, 0, 7])).unwrap(), 7);
        assert_eq!(from_value::<i64>(big(3, &[1])).unwrap(), -2);
        assert_eq!(
            error::<u64>(big(2, &[1, 0, 0, 0, 0, 0, 0, 0, 0])),
            "18446744073709551616 is out of range for u64"
        );
        assert_eq!(
            error::<u64>(big(2, &[1; 17])),
            "a bignum of 17 bytes is out of range for u64"
        );
        assert_eq!(from_value::<u128>(big(2, &[0xff; 16])).unwrap(), u128::MAX);
        // Serializing integers CBOR cannot hold.
        assert_eq!(
            to_value(&u128::MAX).unwrap_err().to_string(),
            "340282366920938463463374607431768211455 is out of range for a CBOR integer"
        );
        assert_eq!(
            to_value(&((1u128 << 64) - 1)).unwrap(),
            int(u64::MAX.into())
        );
    }

    #[test]
    fn byte_lists_are_byte_strings_and_read_back_into_vec_u8() {
        assert_eq!(
            to_value(&vec![1u8, 2, 255]).unwrap(),
            Value::Bytes(vec![1, 2, 255])
        );
        assert_eq!(
            to_value(&[0u8, 254][..]).unwrap(),
            Value::Bytes(vec![0, 254])
        );
        assert_eq!(
            to_value(&RawBytes(&[9, 8])).unwrap(),
            Value::Bytes(vec![9, 8])
        );
        assert_eq!(to_value(&RawBytes(&[])).unwrap(), Value::Bytes(Vec::new()));
        // An empty list is an empty array, which the host takes for list<u8>.
        assert_eq!(to_value(&Vec::<u8>::new()).unwrap(), array(&[]));
        // Only u8 elements make a byte string.
        assert_eq!(to_value(&vec![1u16, 2]).unwrap(), array(&[int(1), int(2)]));
        assert_eq!(
            to_value(&vec![Some(1u8), Some(2)]).unwrap(),
            array(&[int(1), int(2)])
        );
        // A fixed-size array serializes as a tuple: an array.
        assert_eq!(
            to_value(&[1u8, 2, 3]).unwrap(),
            array(&[int(1), int(2), int(3)])
        );
        // Nested byte lists and byte lists in options are byte strings too.
        assert_eq!(
            to_value(&(vec![vec![1u8], vec![]], Some(vec![7u8]))).unwrap(),
            array(&[
                array(&[Value::Bytes(vec![1]), array(&[])]),
                Value::Bytes(vec![7])
            ])
        );

        assert_eq!(
            from_value::<Vec<u8>>(Value::Bytes(vec![0, 1, 254, 255])).unwrap(),
            vec![0, 1, 254, 255]
        );
        assert_eq!(
            from_value::<Vec<u8>>(Value::Bytes(Vec::new())).unwrap(),
            Vec::<u8>::new()
        );
        assert_eq!(
            from_value::<Vec<u8>>(array(&[int(1), int(2)])).unwrap(),
            vec![1, 2]
        );
        assert_eq!(
            from_value::<[u8; 3]>(Value::Bytes(vec![1, 2, 3])).unwrap(),
            [1, 2, 3]
        );
        assert_eq!(
            from_value::<ByteBuf>(Value::Bytes(vec![5])).unwrap(),
            ByteBuf(vec![5])
        );
        assert_eq!(
            from_value::<ByteBuf>(array(&[int(6)])).unwrap(),
            ByteBuf(vec![6])
        );
        assert_eq!(
            error::<Vec<u8>>(array(&[int(1), int(256)])),
            "at [1]: 256 is out of range for u8"
        );
        assert_eq!(
            error::<Vec<u8>>(text("body")),
            "expected an array, got text \"body\""
        );
        assert_eq!(
            error::<Vec<String>>(Value::Bytes(vec![1])),
            "at [0]: expected text, got integer 1"
        );
    }

    #[test]
    fn lists_tuples_and_maps_are_arrays_and_maps() {
        let list = vec!["a".to_owned(), "b".into(), String::new()];
        let value = array(&[text("a"), text("b"), text("")]);
        assert_eq!(to_value(&list).unwrap(), value);
        assert_eq!(from_value::<Vec<String>>(value).unwrap(), list);

        let tuple = (7u8, "seven".to_owned(), true);
        let value = array(&[int(7), text("seven"), Value::Bool(true)]);
        assert_eq!(to_value(&tuple).unwrap(), value);
        assert_eq!(from_value::<(u8, String, bool)>(value).unwrap(), tuple);
        assert_eq!(
            error::<(u8, String, bool)>(array(&[int(1), text("x")])),
            "expected a tuple of 3 elements, got 2"
        );
        assert_eq!(
            error::<(u8, String)>(array(&[int(1), text("x"), Value::Null])),
            "expected a tuple of 2 elements, got 3"
        );
        assert_eq!(
            error::<(u8, String)>(text("x")),
            "expected an array (tuple), got text \"x\""
        );

        let mut scores = BTreeMap::new();
        scores.insert("a".to_owned(), 1u32);
        scores.insert("b".to_owned(), 2);
        let value = map(&[("a", int(1)), ("b", int(2))]);
        assert_eq!(to_value(&scores).unwrap(), value);
        assert_eq!(from_value::<BTreeMap<String, u32>>(value).unwrap(), scores);
        assert_eq!(
            error::<BTreeMap<String, u8>>(map(&[("a", int(1)), ("b", int(300))])),
            "at <value 1>: 300 is out of range for u8"
        );
        assert_eq!(
            error::<BTreeMap<String, u8>>(Value::Map(vec![(int(1), int(1))])),
            "at <key 0>: expected text, got integer 1"
        );
    }

    #[test]
    fn records_are_maps_keyed_by_kebab_case_field_names() {
        let ada = person("Ada", 36, Some("countess"));
        let value = person_value("Ada", 36, text("countess"));
        assert_eq!(to_value(&ada).unwrap(), value);
        assert_eq!(from_value::<Person>(value).unwrap(), ada);

        let nobody = person("", 0, None);
        let value = person_value("", 0, Value::Null);
        assert_eq!(to_value(&nobody).unwrap(), value);
        // Fields in any order.
        let shuffled = map(&[
            ("nick-name", Value::Null),
            ("age", int(0)),
            ("name", text("")),
        ]);
        assert_eq!(from_value::<Person>(shuffled).unwrap(), nobody);

        // The errors of a list of records name the element and the field.
        let list = array(&[
            person_value("a", 1, Value::Null),
            person_value("b", 2, Value::Null),
        ]);
        let people = vec![person("a", 1, None), person("b", 2, None)];
        assert_eq!(to_value(&people).unwrap(), list);
        assert_eq!(from_value::<Vec<Person>>(list).unwrap(), people);
        let bad = array(&[
            person_value("a", 1, Value::Null),
            person_value("b", 0, Value::Null),
        ]);
        let Value::Array(mut items) = bad else {
            unreachable!()
        };
        items[1] = map(&[
            ("name", text("b")),
            ("age", text("x")),
            ("nick-name", Value::Null),
        ]);
        assert_eq!(
            error::<Vec<Person>>(Value::Array(items)),
            "at [1].age: expected an integer (u8), got text \"x\""
        );
        let err = from_value::<Person>(map(&[
            ("name", text("a")),
            ("age", int(300)),
            ("nick-name", Value::Null),
        ]))
        .unwrap_err();
        assert_eq!(err.to_string(), "at .age: 300 is out of range for u8");
        assert_eq!(err.path(), ".age");
        assert_eq!(err.message(), "300 is out of range for u8");
        assert_eq!(
            error::<Person>(map(&[("name", text("a")), ("nick-name", Value::Null)])),
            "missing field `age`"
        );
        // serde reads a missing `Option` field as `None`.
        assert_eq!(
            from_value::<Person>(map(&[("name", text("a")), ("age", int(3))])).unwrap(),
            person("a", 3, None)
        );
        assert_eq!(
            error::<Person>(text("Ada")),
            "expected a map (record), got text \"Ada\""
        );
        // What serde accepts is accepted: unknown fields are ignored...
        let extra = map(&[
            ("name", text("a")),
            ("age", int(3)),
            ("nick-name", Value::Null),
            ("shoe", int(9)),
        ]);
        assert_eq!(
            from_value::<Person>(extra.clone()).unwrap(),
            person("a", 3, None)
        );
        // ...unless the struct denies them.
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            name: String,
            age: u8,
            nick_name: Option<String>,
        }
        assert_eq!(
            error::<Strict>(extra),
            "unknown field `shoe`, expected one of `name`, `age`, `nick-name`"
        );
        // A record nested in a record, with the path through both.
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        struct Team {
            team_lead: Person,
        }
        assert_eq!(
            error::<Team>(map(&[(
                "team-lead",
                map(&[
                    ("name", int(2)),
                    ("age", int(3)),
                    ("nick-name", Value::Null)
                ])
            )])),
            "at .team-lead.name: expected text, got integer 2"
        );
    }

    #[test]
    fn flattened_fields_join_the_record() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        struct Employee {
            #[serde(flatten)]
            person: Person,
            badge_id: u32,
        }
        let employee = Employee {
            person: person("Ada", 36, None),
            badge_id: 7,
        };
        let value = map(&[
            ("name", text("Ada")),
            ("age", int(36)),
            ("nick-name", Value::Null),
            ("badge-id", int(7)),
        ]);
        assert_eq!(to_value(&employee).unwrap(), value);
        assert_eq!(from_value::<Employee>(value).unwrap(), employee);
    }

    #[test]
    fn variants_map_cases_to_text_or_one_entry_maps() {
        let cases = [
            (Payload::None, text("none")),
            (Payload::Count(42), map(&[("count", int(42))])),
            (Payload::Text("hi".into()), map(&[("text", text("hi"))])),
            (
                Payload::Pair(-1, 65535),
                map(&[("pair", array(&[int(-1), int(65535)]))]),
            ),
            (
                Payload::Named { first_one: 1 },
                map(&[("named", map(&[("first-one", int(1))]))]),
            ),
        ];
        for (payload, value) in cases {
            assert_eq!(to_value(&payload).unwrap(), value, "{payload:?}");
            assert_eq!(from_value::<Payload>(value).unwrap(), payload);
        }
        // The host answers a case without payload in map form.
        assert_eq!(
            from_value::<Payload>(map(&[("none", Value::Null)])).unwrap(),
            Payload::None
        );
        assert_eq!(
            error::<Payload>(map(&[("none", int(5))])),
            "at .none: expected null (this case has no payload), got integer 5"
        );
        assert_eq!(
            error::<Payload>(text("count")),
            "at .count: expected an integer (u32), got null"
        );
        assert_eq!(
            error::<Payload>(map(&[("count", int(1)), ("text", text("x"))])),
            "expected a map with exactly one key (variant), got 2 keys"
        );
        assert_eq!(
            error::<Payload>(map(&[("pair", array(&[int(-1), int(70000)]))])),
            "at .pair[1]: 70000 is out of range for u16"
        );
        assert_eq!(
            error::<Payload>(map(&[("square", int(1))])),
            "unknown variant `square`, expected one of `none`, `count`, `text`, `pair`, `named`"
        );
        assert_eq!(
            error::<Payload>(int(1)),
            "expected a map with one key (variant), got integer 1"
        );
        assert_eq!(
            error::<Payload>(Value::Map(vec![(int(1), Value::Null)])),
            "expected a text key, got integer 1"
        );
    }

    #[test]
    fn enums_are_bare_text() {
        for (color, name) in [
            (Color::Red, "red"),
            (Color::Green, "green"),
            (Color::Blue, "blue"),
        ] {
            assert_eq!(to_value(&color).unwrap(), text(name));
            assert_eq!(from_value::<Color>(text(name)).unwrap(), color);
        }
        assert_eq!(
            error::<Color>(text("purple")),
            "unknown variant `purple`, expected one of `red`, `green`, `blue`"
        );
    }

    #[test]
    fn options_wrap_some_in_an_array_only_around_another_option() {
        assert_eq!(to_value(&None::<String>).unwrap(), Value::Null);
        assert_eq!(to_value(&Some("x")).unwrap(), text("x"));
        assert_eq!(from_value::<Option<String>>(Value::Null).unwrap(), None);
        assert_eq!(
            from_value::<Option<String>>(text("x")).unwrap(),
            Some("x".into())
        );

        let nested: [(Option<Option<u32>>, Value); 3] = [
            (None, Value::Null),
            (Some(None), array(&[Value::Null])),
            (Some(Some(5)), array(&[int(5)])),
        ];
        for (option, value) in nested {
            assert_eq!(to_value(&option).unwrap(), value, "{option:?}");
            assert_eq!(from_value::<Option<Option<u32>>>(value).unwrap(), option);
        }
        let triple: [(Option<Option<Option<u32>>>, Value); 4] = [
            (None, Value::Null),
            (Some(None), array(&[Value::Null])),
            (Some(Some(None)), array(&[array(&[Value::Null])])),
            (Some(Some(Some(5))), array(&[array(&[int(5)])])),
        ];
        for (option, value) in triple {
            assert_eq!(to_value(&option).unwrap(), value, "{option:?}");
            assert_eq!(
                from_value::<Option<Option<Option<u32>>>>(value).unwrap(),
                option
            );
        }
        // An option of a list is not an option of an option: no wrapping.
        assert_eq!(
            to_value(&Some(vec![Some(1u32), None])).unwrap(),
            array(&[int(1), Value::Null])
        );
        assert_eq!(
            from_value::<Option<Vec<Option<u32>>>>(array(&[int(1), Value::Null])).unwrap(),
            Some(vec![Some(1), None])
        );
        // A newtype around an option is the option.
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Maybe(Option<u32>);
        assert_eq!(to_value(&Some(Maybe(None))).unwrap(), array(&[Value::Null]));
        assert_eq!(
            from_value::<Option<Maybe>>(array(&[Value::Null])).unwrap(),
            Some(Maybe(None))
        );
        assert_eq!(
            error::<Option<Option<u32>>>(int(5)),
            "expected null or an array of one element (some of an option), got integer 5"
        );
        assert_eq!(
            error::<Option<Option<u32>>>(array(&[int(5), int(6)])),
            "expected null or an array of one element (some of an option), got an array of 2 elements"
        );
    }

    #[test]
    fn results_are_ok_or_err_maps() {
        let ok: Result<String, u32> = Ok("fine".into());
        let err: Result<String, u32> = Err(7);
        assert_eq!(to_value(&ok).unwrap(), map(&[("ok", text("fine"))]));
        assert_eq!(to_value(&err).unwrap(), map(&[("err", int(7))]));
        assert_eq!(
            from_value::<Result<String, u32>>(map(&[("ok", text("fine"))])).unwrap(),
            ok
        );
        assert_eq!(
            from_value::<Result<String, u32>>(map(&[("err", int(7))])).unwrap(),
            err
        );

        let unit_ok: Result<(), ()> = Ok(());
        assert_eq!(to_value(&unit_ok).unwrap(), map(&[("ok", Value::Null)]));
        assert_eq!(
            to_value(&Err::<(), ()>(())).unwrap(),
            map(&[("err", Value::Null)])
        );
        assert_eq!(
            from_value::<Result<(), ()>>(map(&[("ok", Value::Null)])).unwrap(),
            Ok(())
        );
        assert_eq!(from_value::<Result<(), ()>>(text("ok")).unwrap(), Ok(()));
        assert_eq!(from_value::<Result<(), ()>>(text("err")).unwrap(), Err(()));
        assert_eq!(
            error::<Result<String, u32>>(map(&[("maybe", int(1))])),
            "expected key `ok` or `err`, got `maybe`"
        );
        assert_eq!(
            error::<Result<String, u32>>(map(&[("err", text("x"))])),
            "at .err: expected an integer (u32), got text \"x\""
        );
        assert_eq!(
            error::<Result<(), ()>>(map(&[("ok", int(1))])),
            "at .ok: expected null, got integer 1"
        );
    }

    #[test]
    fn flags_are_arrays_of_names_in_declaration_order() {
        let set: BTreeSet<Perm> = [Perm::Exec, Perm::Read].into();
        let value = array(&[text("read"), text("exec")]);
        assert_eq!(to_value(&set).unwrap(), value);
        assert_eq!(from_value::<BTreeSet<Perm>>(value.clone()).unwrap(), set);
        assert_eq!(
            from_value::<Vec<Perm>>(value).unwrap(),
            vec![Perm::Read, Perm::Exec]
        );
        assert_eq!(to_value(&BTreeSet::<Perm>::new()).unwrap(), array(&[]));
        assert_eq!(
            to_value(&vec![Perm::Write]).unwrap(),
            array(&[text("write")])
        );
        assert_eq!(
            error::<BTreeSet<Perm>>(array(&[text("read"), text("fly")])),
            "at [1]: unknown variant `fly`, expected one of `read`, `write`, `exec`"
        );
    }

    #[test]
    fn cbor_values_pass_through_unchanged() {
        let tag = Value::Tag(1, Box::new(int(1_700_000_000)));
        let values = vec![
            int(1),
            array(&[int(1), int(2), int(255)]),
            Value::Bytes(vec![1, 2]),
            Value::Float(2.5),
            map(&[("a", array(&[int(0)])), ("b", Value::Null)]),
            tag.clone(),
            Value::Map(vec![(int(1), text("x"))]),
            int(-(1i128 << 64)),
        ];
        assert_eq!(to_args(&values).unwrap(), values);
        for value in &values {
            assert_eq!(to_value(value).unwrap(), *value);
            assert_eq!(to_value(&Some(value)).unwrap(), *value);
            assert_eq!(from_value::<Value>(value.clone()).unwrap(), *value);
        }
        // Inside typed values too.
        assert_eq!(
            to_value(&(5u8, array(&[int(1)]))).unwrap(),
            array(&[int(5), array(&[int(1)])])
        );
        assert_eq!(
            from_value::<(u8, Value)>(array(&[int(5), Value::Bytes(vec![1])])).unwrap(),
            (5, Value::Bytes(vec![1]))
        );
        assert_eq!(
            from_value::<Option<Value>>(array(&[Value::Null])).unwrap(),
            Some(array(&[Value::Null]))
        );
    }

    #[test]
    fn argument_lists_come_from_tuples_sequences_or_unit() {
        assert_eq!(to_args(&(2i64, 3i64)).unwrap(), vec![int(2), int(3)]);
        assert_eq!(to_args(&("Ada",)).unwrap(), vec![text("Ada")]);
        assert_eq!(to_args(&()).unwrap(), Vec::<Value>::new());
        assert_eq!(
            to_args(&[1u32, 2, 3]).unwrap(),
            vec![int(1), int(2), int(3)]
        );
        assert_eq!(to_args(&vec![text("a")]).unwrap(), vec![text("a")]);
        assert_eq!(
            to_args(&["a", "b"][..]).unwrap(),
            vec![text("a"), text("b")]
        );
        // A Vec<u8> is a list of u8 arguments; a byte list argument is
        // a one-tuple.
        assert_eq!(to_args(&vec![1u8, 2]).unwrap(), vec![int(1), int(2)]);
        assert_eq!(
            to_args(&(vec![1u8, 2],)).unwrap(),
            vec![Value::Bytes(vec![1, 2])]
        );
        assert_eq!(
            to_args(&5).unwrap_err().to_string(),
            "the arguments must be a sequence (a tuple, a Vec or `()`), got integer 5"
        );
        assert_eq!(
            to_args(&person("a", 1, None)).unwrap_err().to_string(),
            "the arguments must be a sequence (a tuple, a Vec or `()`), got a map of 3 entries"
        );
        assert_eq!(
            to_args(&(1u8, (2u8, u128::MAX))).unwrap_err().to_string(),
            "at [1][1]: 340282366920938463463374607431768211455 is out of range for a CBOR integer"
        );
    }

    /// The value examples of PROTOCOL.md §8.1, byte for byte.
    #[test]
    fn the_mapping_table_examples_encode_to_their_documented_bytes() {
        assert_eq!(hex(&to_value(&true).unwrap()), "f5");
        assert_eq!(hex(&to_value(&-300i16).unwrap()), "39 01 2b");
        assert_eq!(hex(&to_value(&2.5f64).unwrap()), "f9 41 00");
        assert_eq!(hex(&to_value(&'é').unwrap()), "62 c3 a9");
        assert_eq!(hex(&to_value("héllo").unwrap()), "66 68 c3 a9 6c 6c 6f");
        assert_eq!(hex(&to_value(&vec![1u8, 2, 255]).unwrap()), "43 01 02 ff");
        assert_eq!(hex(&to_value(&vec!["a", "b"]).unwrap()), "82 61 61 61 62");
        assert_eq!(hex(&to_value(&(1u8, "x", true)).unwrap()), "83 01 61 78 f5");
        assert_eq!(
            hex(&to_value(&person("Ada", 36, None)).unwrap()),
            "a3 64 6e 61 6d 65 63 41 64 61 63 61 67 65 18 24 69 6e 69 63 6b 2d 6e 61 6d 65 f6"
        );
        assert_eq!(
            hex(&to_value(&Payload::Count(7)).unwrap()),
            "a1 65 63 6f 75 6e 74 07"
        );
        assert_eq!(hex(&to_value(&Color::Green).unwrap()), "65 67 72 65 65 6e");
        assert_eq!(hex(&to_value(&None::<String>).unwrap()), "f6");
        assert_eq!(hex(&to_value(&Some("x")).unwrap()), "61 78");
        assert_eq!(hex(&to_value(&Some(None::<u32>)).unwrap()), "81 f6");
        assert_eq!(hex(&to_value(&Some(Some(5u32))).unwrap()), "81 05");
        assert_eq!(
            hex(&to_value(&Ok::<_, u32>("yes")).unwrap()),
            "a1 62 6f 6b 63 79 65 73"
        );
        assert_eq!(
            hex(&to_value(&BTreeSet::from([Perm::Exec, Perm::Read])).unwrap()),
            "82 64 72 65 61 64 64 65 78 65 63"
        );
        assert_eq!(
            hex(&to_value(&BTreeMap::from([("a", 1u32)])).unwrap()),
            "a1 61 61 01"
        );
    }

    /// A language to greet in (`greeter.greet`).
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Language {
        English,
        French,
        Spanish,
    }

    /// Text styles (`greeter.decorate`).
    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Style {
        Bold,
        Italic,
        Shout,
    }

    /// A plane shape (`greeter.area`).
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Shape {
        Circle(f64),
        Rectangle(f64, f64),
        Point,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Reservation {
        sku: String,
        quantity: u32,
        warehouse: String,
        reservation_id: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum ReserveError {
        UnknownSku(String),
        Insufficient(u32),
        InvalidQuantity,
    }

    /// The calls of PROTOCOL.md §8.4: arguments byte for byte, answers read
    /// from their documented CBOR.
    #[test]
    fn the_call_examples_encode_and_decode_as_documented() {
        // math.add
        assert_eq!(args_hex(&(2i64, 3i64)), "82 02 03");
        assert_eq!(from_value::<i64>(int(5)).unwrap(), 5);

        // math.stats: floats go as floats (the host also takes integers).
        assert_eq!(
            args_hex(&(vec![1.0f64, 2.5, 4.0],)),
            "81 83 f9 3c 00 f9 41 00 f9 44 00"
        );
        #[derive(Debug, PartialEq, Deserialize)]
        struct Stats {
            count: u32,
            mean: f64,
            min: f64,
            max: f64,
        }
        let answer = map(&[
            ("count", int(3)),
            ("mean", Value::Float(2.5)),
            ("min", Value::Float(1.0)),
            ("max", Value::Float(4.0)),
        ]);
        assert_eq!(
            from_value::<Stats>(answer).unwrap(),
            Stats {
                count: 3,
                mean: 2.5,
                min: 1.0,
                max: 4.0
            }
        );

        // greeter.greet: ["Ada", null, "french"]
        assert_eq!(
            args_hex(&("Ada", None::<String>, Language::French)),
            "83 63 41 64 61 f6 66 66 72 65 6e 63 68"
        );
        let _ = (Language::English, Language::Spanish);

        // greeter.decorate: ["hi", ["bold", "italic", "shout"]]
        let all = BTreeSet::from([Style::Shout, Style::Bold, Style::Italic]);
        assert_eq!(
            to_args(&("hi", &all)).unwrap(),
            vec![
                text("hi"),
                array(&[text("bold"), text("italic"), text("shout")])
            ]
        );

        // greeter.area: [{"rectangle": [2, 3]}] (here as floats) or ["point"]
        assert_eq!(
            to_args(&(Shape::Rectangle(2.0, 3.0),)).unwrap(),
            vec![map(&[(
                "rectangle",
                array(&[Value::Float(2.0), Value::Float(3.0)])
            )])]
        );
        assert_eq!(args_hex(&(Shape::Point,)), "81 65 70 6f 69 6e 74");
        assert_eq!(
            to_args(&(Shape::Circle(1.0),)).unwrap(),
            vec![map(&[("circle", Value::Float(1.0))])]
        );
        assert_eq!(from_value::<f64>(Value::Float(6.0)).unwrap(), 6.0);

        // greeter.initial: [""] → null
        assert_eq!(args_hex(&("",)), "81 60");
        assert_eq!(from_value::<Option<char>>(Value::Null).unwrap(), None);

        // greeter.checksum: [h'010203'] → [6, h'030201']
        assert_eq!(args_hex(&(vec![1u8, 2, 3],)), "81 43 01 02 03");
        assert_eq!(
            from_value::<(u32, Vec<u8>)>(array(&[int(6), Value::Bytes(vec![3, 2, 1])])).unwrap(),
            (6, vec![3, 2, 1])
        );

        // greeter.echo.echo-nested-option: [[null]] → [null]
        assert_eq!(args_hex(&(Some(None::<u32>),)), "81 81 f6");
        assert_eq!(
            from_value::<Option<Option<u32>>>(array(&[Value::Null])).unwrap(),
            Some(None)
        );

        // inventory.stock.reserve: a record answer, a variant detail.
        assert_eq!(args_hex(&("sku-1", 2u32)), "82 65 73 6b 75 2d 31 02");
        let answer = map(&[
            ("sku", text("sku-1")),
            ("quantity", int(2)),
            ("warehouse", text("lisbon")),
            ("reservation-id", text("R-sku-1-2")),
        ]);
        assert_eq!(
            from_value::<Reservation>(answer).unwrap(),
            Reservation {
                sku: "sku-1".into(),
                quantity: 2,
                warehouse: "lisbon".into(),
                reservation_id: "R-sku-1-2".into(),
            }
        );
        assert_eq!(
            from_value::<ReserveError>(map(&[("insufficient", int(3))])).unwrap(),
            ReserveError::Insufficient(3)
        );
        assert_eq!(
            from_value::<ReserveError>(map(&[("invalid-quantity", Value::Null)])).unwrap(),
            ReserveError::InvalidQuantity
        );
        assert_eq!(
            from_value::<ReserveError>(map(&[("unknown-sku", text("x"))])).unwrap(),
            ReserveError::UnknownSku("x".into())
        );

        // math.divide's detail, and misbehave.chatter's answer.
        assert_eq!(
            from_value::<String>(text("division by zero")).unwrap(),
            "division by zero"
        );
        assert_eq!(args_hex(&("hi",)), "81 62 68 69");
        from_value::<()>(Value::Null).unwrap();
    }
}
