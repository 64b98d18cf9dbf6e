//! Arbitrary CBOR through the value mapping (`to_val` / `from_val`), against
//! parameter types covering every WIT type family.
//!
//! Once, a component is compiled from WAT text; it exports `all-types`, whose
//! parameters are the types below, and their reflected `Type`s are kept.
//! Then each input is decoded as one `ciborium::Value` (nesting limited to 64,
//! as the host limits call arguments) and converted to every parameter type.
//! Checks, besides "never panics":
//!
//! - when `to_val` accepts a value, `from_val` converts the result back, and
//!   `to_val` of that gives the same `Val` (wasmtime's `Val` equality treats
//!   NaN as equal to NaN);
//! - the same holds after the CBOR of `from_val` has gone through bytes, as it
//!   does on the wire.

#![no_main]

use std::sync::OnceLock;

use ciborium::Value;
use libfuzzer_sys::fuzz_target;
use wasmrpc::runtime::value::{from_val, to_val};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Type};
use wasmtime::{Config, Engine};

/// Every WIT type family as a parameter of one exported function. Records,
/// variants, enums and flags must be exported types to appear in an export.
const WAT: &str = r#"
(component
  (type $en' (enum "red" "green" "blue"))
  (export $en "color" (type $en'))
  (type $fl' (flags "read" "write" "exec"))
  (export $fl "perms" (type $fl'))
  (type $rec' (record
    (field "a" u32)
    (field "b" string)
    (field "c" (list u8))
    (field "d" (option $en))))
  (export $rec "point" (type $rec'))
  (type $var' (variant
    (case "none")
    (case "num" u32)
    (case "text" string)
    (case "inner" $rec)
    (case "maybe" (option u8))))
  (export $var "shape" (type $var'))
  (core module $m
    (memory (export "memory") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) unreachable)
    (func (export "all-types") (param i32) unreachable))
  (core instance $i (instantiate $m))
  (type $ft (func
    (param "p-bool" bool)
    (param "p-s8" s8)
    (param "p-u8" u8)
    (param "p-s16" s16)
    (param "p-u16" u16)
    (param "p-s32" s32)
    (param "p-u32" u32)
    (param "p-s64" s64)
    (param "p-u64" u64)
    (param "p-f32" f32)
    (param "p-f64" f64)
    (param "p-char" char)
    (param "p-string" string)
    (param "p-bytes" (list u8))
    (param "p-strings" (list string))
    (param "p-tuple" (tuple u8 string f64))
    (param "p-record" $rec)
    (param "p-variant" $var)
    (param "p-enum" $en)
    (param "p-option-option" (option (option u32)))
    (param "p-option" (option string))
    (param "p-result" (result string (error u32)))
    (param "p-result-err-only" (result (error string)))
    (param "p-result-empty" (result))
    (param "p-flags" $fl)
    (param "p-list-records" (list $rec))
    (param "p-list-options" (list (option (option u8))))
    (param "p-nested" (list (tuple $var (list (result u8 (error $en))))))))
  (func $f (type $ft)
    (canon lift (core func $i "all-types")
      (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (export "all-types" (func $f)))
"#;

/// The compiled component and its parameter types, built once. The engine
/// and component are kept (not leaked) so that LeakSanitizer stays quiet.
struct Reflected {
    _engine: Engine,
    _component: Component,
    types: Vec<(String, Type)>,
}

fn param_types() -> &'static [(String, Type)] {
    static REFLECTED: OnceLock<Reflected> = OnceLock::new();
    &REFLECTED
        .get_or_init(|| {
            let mut config = Config::new();
            config.wasm_component_model(true);
            let engine = Engine::new(&config).expect("engine");
            let component = Component::new(&engine, WAT).expect("the WAT component compiles");
            let mut types = Vec::new();
            for (name, item) in component.component_type().exports(&engine) {
                if let ComponentItem::ComponentFunc(func) = item.ty {
                    assert_eq!(name, "all-types");
                    types.extend(func.params().map(|(p, t)| (p.to_owned(), t)));
                }
            }
            assert_eq!(types.len(), 28, "every parameter type was reflected");
            Reflected {
                _engine: engine,
                _component: component,
                types,
            }
        })
        .types
}

fuzz_target!(|data: &[u8]| {
    let types = param_types();
    let Ok(value) = ciborium::de::from_reader_with_recursion_limit::<Value, _>(data, 64) else {
        return;
    };
    for (name, ty) in types {
        let Ok(val) = to_val(&value, ty) else {
            continue;
        };
        let back = match from_val(val.clone(), ty) {
            Ok(back) => back,
            Err(error) => panic!("{name}: from_val refused what to_val made: {error}\n{val:?}"),
        };
        match to_val(&back, ty) {
            Ok(again) => assert_eq!(
                val, again,
                "{name}: to_val(from_val(v)) != v\ninput: {value:?}\nback: {back:?}"
            ),
            Err(error) => panic!("{name}: to_val refused what from_val made: {error}\n{back:?}"),
        }
        // Through bytes, as on the wire.
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&back, &mut bytes).expect("encode");
        let wire: Value = ciborium::de::from_reader(&bytes[..]).expect("decode what we encoded");
        match to_val(&wire, ty) {
            Ok(again) => assert_eq!(
                val, again,
                "{name}: value changed on the wire\ninput: {value:?}\nwire: {wire:?}"
            ),
            Err(error) => panic!("{name}: to_val refused the wire form: {error}\n{wire:?}"),
        }
    }
});
