//! The typed path for functions that pass byte strings.
//!
//! wasmtime's dynamic API (`Val`) lifts and lowers a `list<u8>` one element
//! at a time, tens of nanoseconds per byte each way
//! (bytecodealliance/wasmtime#13788); its typed API copies the bytes in one
//! go. A function whose signature has a `list<u8>` at the top level and
//! otherwise fits the shapes below is called through the typed API instead:
//!
//! - at most two parameters, each `list<u8>`, `string`, `u32` or `u64`;
//! - no result, or one of `list<u8>`, `string`, `u32`, `u64` or
//!   `result<list<u8>, string>`.
//!
//! Arguments are checked as on the dynamic path (with the same messages), and
//! results and errors map to the same replies; only the copying differs. A
//! result's byte or text string counts against `max_guest_output` byte for
//! byte.

use ciborium::Value;
use wasmtime::Store;
use wasmtime::component::{ComponentNamedList, Func, Lower, Type, Val};

use super::state::PluginState;
use super::value::{self, ValueError};

/// A parameter the typed path passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bytes,
    Text,
    U32,
    U64,
}

impl Kind {
    fn of(ty: &Type) -> Option<Kind> {
        match ty {
            Type::List(list) if matches!(list.ty(), Type::U8) => Some(Kind::Bytes),
            Type::String => Some(Kind::Text),
            Type::U32 => Some(Kind::U32),
            Type::U64 => Some(Kind::U64),
            _ => None,
        }
    }
}

/// A result the typed path lifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returns {
    Nothing,
    Bytes,
    Text,
    U32,
    U64,
    /// `result<list<u8>, string>`.
    BytesOrError,
}

/// A signature the typed path serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shape {
    params: Vec<Kind>,
    returns: Returns,
}

impl Shape {
    /// The shape of a function with these parameters and result, when the
    /// typed path serves it: the shapes of the module docs, with a
    /// `list<u8>` among the parameters or as (part of) the result.
    pub fn of(params: &[(String, Type)], result: Option<&Type>) -> Option<Shape> {
        if params.len() > 2 {
            return None;
        }
        let params = params
            .iter()
            .map(|(_, ty)| Kind::of(ty))
            .collect::<Option<Vec<Kind>>>()?;
        let returns = match result.map(|ty| (Kind::of(ty), ty)) {
            None => Returns::Nothing,
            Some((Some(Kind::Bytes), _)) => Returns::Bytes,
            Some((Some(Kind::Text), _)) => Returns::Text,
            Some((Some(Kind::U32), _)) => Returns::U32,
            Some((Some(Kind::U64), _)) => Returns::U64,
            Some((None, Type::Result(result)))
                if result.ok().as_ref().and_then(Kind::of) == Some(Kind::Bytes)
                    && matches!(result.err(), Some(Type::String)) =>
            {
                Returns::BytesOrError
            }
            Some((None, _)) => return None,
        };
        let carries_bytes = params.contains(&Kind::Bytes)
            || matches!(returns, Returns::Bytes | Returns::BytesOrError);
        carries_bytes.then_some(Shape { params, returns })
    }
}

/// An argument converted for the typed path.
pub(super) enum Arg {
    Bytes(Vec<u8>),
    Text(String),
    U32(u32),
    U64(u64),
}

/// Converts one argument of a function served by the typed path. Byte and
/// text strings move as they are; anything else goes through
/// [`value::to_val`], which accepts the same values and gives the same
/// errors as the dynamic path (an array of small integers for `list<u8>`,
/// say).
///
/// # Errors
///
/// As [`value::to_val`].
pub(super) fn arg(value: Value, ty: &Type) -> Result<Arg, ValueError> {
    let kind = Kind::of(ty);
    match (kind, value) {
        (Some(Kind::Bytes), Value::Bytes(bytes)) => Ok(Arg::Bytes(bytes)),
        (Some(Kind::Text), Value::Text(text)) => Ok(Arg::Text(text)),
        (kind, value) => match (kind, value::to_val(&value, ty)?) {
            (Some(Kind::Bytes), Val::List(items)) => Ok(Arg::Bytes(
                items
                    .into_iter()
                    .map(|item| match item {
                        Val::U8(byte) => Ok(byte),
                        _ => Err(ValueError::new("expected bytes")),
                    })
                    .collect::<Result<_, _>>()?,
            )),
            (Some(Kind::Text), Val::String(text)) => Ok(Arg::Text(text)),
            (Some(Kind::U32), Val::U32(n)) => Ok(Arg::U32(n)),
            (Some(Kind::U64), Val::U64(n)) => Ok(Arg::U64(n)),
            _ => Err(ValueError::new("the typed path cannot pass this value")),
        },
    }
}

/// What a function served by the typed path returned.
pub(super) enum Out {
    Nothing,
    Bytes(Vec<u8>),
    Text(String),
    U32(u32),
    U64(u64),
    BytesOrError(Result<Vec<u8>, String>),
}

impl Out {
    /// Bytes the guest handed over: the measure of `max_guest_output`.
    pub fn len(&self) -> usize {
        match self {
            Out::Bytes(bytes) | Out::BytesOrError(Ok(bytes)) => bytes.len(),
            Out::Text(text) | Out::BytesOrError(Err(text)) => text.len(),
            Out::Nothing | Out::U32(_) | Out::U64(_) => 0,
        }
    }

    /// The result as the dynamic path would have lifted it, except for byte
    /// strings, which become CBOR byte strings directly.
    pub fn into_reply(self) -> Result<Value, Val> {
        match self {
            Out::Nothing => Ok(Value::Null),
            Out::Bytes(bytes) | Out::BytesOrError(Ok(bytes)) => Ok(Value::Bytes(bytes)),
            Out::Text(text) => Ok(Value::Text(text)),
            Out::U32(n) => Ok(Value::from(n)),
            Out::U64(n) => Ok(Value::from(n)),
            // The handler's error: mapped like every other result's.
            Out::BytesOrError(Err(text)) => {
                Err(Val::Result(Err(Some(Box::new(Val::String(text))))))
            }
        }
    }
}

/// A parameter's Rust type on the typed path.
trait Param: Sized {
    fn take(arg: Option<Arg>) -> wasmtime::Result<Self>;
}

macro_rules! params {
    ($($variant:ident => $ty:ty),* $(,)?) => {$(
        impl Param for $ty {
            fn take(arg: Option<Arg>) -> wasmtime::Result<Self> {
                match arg {
                    Some(Arg::$variant(value)) => Ok(value),
                    _ => Err(wasmtime::format_err!("argument does not match its parameter")),
                }
            }
        }
    )*};
}

params! { Bytes => Vec<u8>, Text => String, U32 => u32, U64 => u64 }

/// Calls `func` through the typed API with `args`, which [`arg`] converted
/// for `shape`'s parameters.
///
/// # Errors
///
/// What the call itself returns: traps, interrupts, hostcall fuel.
pub(super) async fn call(
    func: Func,
    store: &mut Store<PluginState>,
    shape: &Shape,
    args: Vec<Arg>,
) -> wasmtime::Result<Out> {
    let mut args = args.into_iter();
    macro_rules! shapes {
        ($([$($kind:ident: $ty:ty),*]),* $(,)?) => {
            match shape.params.as_slice() {
                $([$(Kind::$kind),*] => {
                    let params = ($(<$ty as Param>::take(args.next())?,)*);
                    returning(func, store, params, shape.returns).await
                })*
                _ => Err(wasmtime::format_err!("no typed call for {shape:?}")),
            }
        };
    }
    shapes! {
        [],
        [Bytes: Vec<u8>],
        [Text: String],
        [U32: u32],
        [U64: u64],
        [Bytes: Vec<u8>, Bytes: Vec<u8>],
        [Bytes: Vec<u8>, Text: String],
        [Bytes: Vec<u8>, U32: u32],
        [Bytes: Vec<u8>, U64: u64],
        [Text: String, Bytes: Vec<u8>],
        [Text: String, Text: String],
        [Text: String, U32: u32],
        [Text: String, U64: u64],
        [U32: u32, Bytes: Vec<u8>],
        [U32: u32, Text: String],
        [U32: u32, U32: u32],
        [U32: u32, U64: u64],
        [U64: u64, Bytes: Vec<u8>],
        [U64: u64, Text: String],
        [U64: u64, U32: u32],
        [U64: u64, U64: u64],
    }
}

async fn returning<P>(
    func: Func,
    store: &mut Store<PluginState>,
    params: P,
    returns: Returns,
) -> wasmtime::Result<Out>
where
    P: ComponentNamedList + Lower + Send + Sync + 'static,
{
    Ok(match returns {
        Returns::Nothing => {
            let () = func
                .typed::<P, ()>(&*store)?
                .call_async(store, params)
                .await?;
            Out::Nothing
        }
        Returns::Bytes => {
            let typed = func.typed::<P, (Vec<u8>,)>(&*store)?;
            Out::Bytes(typed.call_async(store, params).await?.0)
        }
        Returns::Text => {
            let typed = func.typed::<P, (String,)>(&*store)?;
            Out::Text(typed.call_async(store, params).await?.0)
        }
        Returns::U32 => {
            let typed = func.typed::<P, (u32,)>(&*store)?;
            Out::U32(typed.call_async(store, params).await?.0)
        }
        Returns::U64 => {
            let typed = func.typed::<P, (u64,)>(&*store)?;
            Out::U64(typed.call_async(store, params).await?.0)
        }
        Returns::BytesOrError => {
            let typed = func.typed::<P, (Result<Vec<u8>, String>,)>(&*store)?;
            Out::BytesOrError(typed.call_async(store, params).await?.0)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::Component;
    use wasmtime::component::types::ComponentItem;
    use wasmtime::{Config, Engine};

    /// The shape of export `f` of a component that lifts a core function of
    /// signature `core` with the component function type `ty`.
    fn shape(ty: &str, core: &str) -> Option<Shape> {
        let text = format!(
            r#"(component
                (core module $m
                    (memory (export "memory") 1)
                    (func (export "realloc") (param i32 i32 i32 i32) (result i32) unreachable)
                    (func (export "f") {core} unreachable))
                (core instance $i (instantiate $m))
                (func (export "f") {ty}
                    (canon lift (core func $i "f") (memory (core memory $i "memory"))
                        (realloc (core func $i "realloc")))))"#
        );
        let bytes = wat::parse_str(text).expect("valid component text");
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        let ty = component.component_type();
        let (_, export) = ty.exports(&engine).next().unwrap();
        let ComponentItem::ComponentFunc(func) = export.ty else {
            panic!("`f` is not a function");
        };
        let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_owned(), t)).collect();
        Shape::of(&params, func.results().next().as_ref())
    }

    fn served(params: &[Kind], returns: Returns) -> Option<Shape> {
        Some(Shape {
            params: params.to_vec(),
            returns,
        })
    }

    #[test]
    fn signatures_with_a_top_level_byte_string_are_served() {
        assert_eq!(
            shape(
                r#"(param "v" (list u8)) (result (list u8))"#,
                "(param i32 i32) (result i32)"
            ),
            served(&[Kind::Bytes], Returns::Bytes)
        );
        assert_eq!(
            shape(r#"(param "v" (list u8))"#, "(param i32 i32)"),
            served(&[Kind::Bytes], Returns::Nothing)
        );
        assert_eq!(
            shape(r#"(result (list u8))"#, "(result i32)"),
            served(&[], Returns::Bytes)
        );
        assert_eq!(
            shape(
                r#"(param "n" u32) (result (list u8))"#,
                "(param i32) (result i32)"
            ),
            served(&[Kind::U32], Returns::Bytes)
        );
        assert_eq!(
            shape(
                r#"(param "label" string) (param "body" (list u8)) (result (result (list u8) (error string)))"#,
                "(param i32 i32 i32 i32) (result i32)"
            ),
            served(&[Kind::Text, Kind::Bytes], Returns::BytesOrError)
        );
        assert_eq!(
            shape(
                r#"(param "data" (list u8)) (param "at" u64) (result u64)"#,
                "(param i32 i32 i64) (result i64)"
            ),
            served(&[Kind::Bytes, Kind::U64], Returns::U64)
        );
    }

    #[test]
    fn other_signatures_stay_on_the_dynamic_path() {
        // No byte string at all.
        assert_eq!(
            shape(
                r#"(param "s" string) (result string)"#,
                "(param i32 i32) (result i32)"
            ),
            None
        );
        // Three parameters.
        assert_eq!(
            shape(
                r#"(param "a" (list u8)) (param "b" (list u8)) (param "c" (list u8)) (result (list u8))"#,
                "(param i32 i32 i32 i32 i32 i32) (result i32)"
            ),
            None
        );
        // A byte string inside another type.
        assert_eq!(
            shape(
                r#"(param "v" (tuple (list u8))) (result u32)"#,
                "(param i32 i32) (result i32)"
            ),
            None
        );
        assert_eq!(
            shape(
                r#"(param "v" (list u8)) (result (option (list u8)))"#,
                "(param i32 i32) (result i32)"
            ),
            None
        );
        // A list of wider integers, and a parameter kind the path lacks.
        assert_eq!(
            shape(
                r#"(param "v" (list u16)) (result u64)"#,
                "(param i32 i32) (result i64)"
            ),
            None
        );
        assert_eq!(
            shape(
                r#"(param "v" (list u8)) (param "x" s32) (result (list u8))"#,
                "(param i32 i32 i32) (result i32)"
            ),
            None
        );
    }
}
