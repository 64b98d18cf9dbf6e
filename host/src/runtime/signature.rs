//! WIT text for reflected types, and which types can cross the wire.

use std::fmt::Write;

use wasmtime::component::Type;

/// Renders `ty` as WIT, with records, variants, enums and flags written out
/// structurally (component types carry no type names): `record { a: u8 }`.
pub fn type_to_wit(ty: &Type) -> String {
    let mut out = String::new();
    write_type(&mut out, ty);
    out
}

/// Renders a function type: `func(a: s64, b: s64) -> s64`.
pub fn func_to_wit<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a Type)>,
    result: Option<&Type>,
) -> String {
    let mut out = String::from("func(");
    for (i, (name, ty)) in params.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str(": ");
        write_type(&mut out, ty);
    }
    out.push(')');
    if let Some(ty) = result {
        out.push_str(" -> ");
        write_type(&mut out, ty);
    }
    out
}

/// The first part of `ty` that cannot be passed over RPC, if any:
/// resources, futures, streams and error contexts.
pub fn unsupported(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Own(_) | Type::Borrow(_) => Some("resource"),
        Type::Future(_) => Some("future"),
        Type::Stream(_) => Some("stream"),
        Type::ErrorContext => Some("error-context"),
        Type::List(l) => unsupported(&l.ty()),
        Type::FixedLengthList(l) => unsupported(&l.ty()),
        Type::Map(m) => unsupported(&m.key()).or_else(|| unsupported(&m.value())),
        Type::Record(r) => r.fields().find_map(|f| unsupported(&f.ty)),
        Type::Tuple(t) => t.types().find_map(|t| unsupported(&t)),
        Type::Variant(v) => v.cases().find_map(|c| c.ty.as_ref().and_then(unsupported)),
        Type::Option(o) => unsupported(&o.ty()),
        Type::Result(r) => r
            .ok()
            .as_ref()
            .and_then(unsupported)
            .or_else(|| r.err().as_ref().and_then(unsupported)),
        _ => None,
    }
}

fn write_type(out: &mut String, ty: &Type) {
    match ty {
        Type::Bool => out.push_str("bool"),
        Type::S8 => out.push_str("s8"),
        Type::U8 => out.push_str("u8"),
        Type::S16 => out.push_str("s16"),
        Type::U16 => out.push_str("u16"),
        Type::S32 => out.push_str("s32"),
        Type::U32 => out.push_str("u32"),
        Type::S64 => out.push_str("s64"),
        Type::U64 => out.push_str("u64"),
        Type::Float32 => out.push_str("f32"),
        Type::Float64 => out.push_str("f64"),
        Type::Char => out.push_str("char"),
        Type::String => out.push_str("string"),
        Type::List(l) => {
            out.push_str("list<");
            write_type(out, &l.ty());
            out.push('>');
        }
        Type::FixedLengthList(l) => {
            out.push_str("list<");
            write_type(out, &l.ty());
            let _ = write!(out, ", {}>", l.len());
        }
        Type::Map(m) => {
            out.push_str("map<");
            write_type(out, &m.key());
            out.push_str(", ");
            write_type(out, &m.value());
            out.push('>');
        }
        Type::Record(r) => {
            out.push_str("record { ");
            for (i, field) in r.fields().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(field.name);
                out.push_str(": ");
                write_type(out, &field.ty);
            }
            out.push_str(" }");
        }
        Type::Tuple(t) => {
            out.push_str("tuple<");
            for (i, ty) in t.types().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_type(out, &ty);
            }
            out.push('>');
        }
        Type::Variant(v) => {
            out.push_str("variant { ");
            for (i, case) in v.cases().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(case.name);
                if let Some(ty) = &case.ty {
                    out.push('(');
                    write_type(out, ty);
                    out.push(')');
                }
            }
            out.push_str(" }");
        }
        Type::Enum(e) => {
            out.push_str("enum { ");
            out.push_str(&e.names().collect::<Vec<_>>().join(", "));
            out.push_str(" }");
        }
        Type::Option(o) => {
            out.push_str("option<");
            write_type(out, &o.ty());
            out.push('>');
        }
        Type::Result(r) => match (r.ok(), r.err()) {
            (None, None) => out.push_str("result"),
            (Some(ok), None) => {
                out.push_str("result<");
                write_type(out, &ok);
                out.push('>');
            }
            (None, Some(err)) => {
                out.push_str("result<_, ");
                write_type(out, &err);
                out.push('>');
            }
            (Some(ok), Some(err)) => {
                out.push_str("result<");
                write_type(out, &ok);
                out.push_str(", ");
                write_type(out, &err);
                out.push('>');
            }
        },
        Type::Flags(f) => {
            out.push_str("flags { ");
            out.push_str(&f.names().collect::<Vec<_>>().join(", "));
            out.push_str(" }");
        }
        Type::Own(_) => out.push_str("own<resource>"),
        Type::Borrow(_) => out.push_str("borrow<resource>"),
        Type::Future(_) => out.push_str("future"),
        Type::Stream(_) => out.push_str("stream"),
        Type::ErrorContext => out.push_str("error-context"),
    }
}
