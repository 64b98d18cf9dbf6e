//! Rust identifiers for WIT names, and the serde renames that keep the wire
//! names exact.
//!
//! WIT names are kebab-case words, each all lowercase or all uppercase
//! (`nick-name`, `HTTP-status`). Fields, functions and parameters become
//! snake_case, types and cases UpperCamelCase. The generated types carry
//! `#[serde(rename_all = "kebab-case")]`; where serde's own conversion of the
//! Rust name would not give back the WIT name, an explicit
//! `#[serde(rename = "...")]` is added.

use proc_macro2::{Ident, Span};

/// `nick-name` → `nick_name`.
pub fn snake(name: &str) -> String {
    name.split('-')
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("_")
}

/// `unknown-sku` → `UnknownSku`.
pub fn camel(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect()
}

/// An identifier for `name` (already snake_case or UpperCamelCase): a raw
/// identifier for keywords, and a trailing `_` for the few that cannot be
/// raw (`self`, `Self`, `super`, `crate`).
pub fn ident(name: &str) -> Ident {
    match name {
        "self" | "Self" | "super" | "crate" => Ident::new(&format!("{name}_"), Span::call_site()),
        _ if KEYWORDS.contains(&name) => Ident::new_raw(name, Span::call_site()),
        _ => Ident::new(name, Span::call_site()),
    }
}

const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
    "static", "struct", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

/// The name serde's `rename_all = "kebab-case"` gives a field named `ident`.
pub fn serde_field_name(ident: &Ident) -> String {
    unraw(ident).replace('_', "-")
}

/// The name serde's `rename_all = "kebab-case"` gives a variant named `ident`.
pub fn serde_variant_name(ident: &Ident) -> String {
    let mut kebab = String::new();
    for (i, ch) in unraw(ident).char_indices() {
        if i > 0 && ch.is_uppercase() {
            kebab.push('-');
        }
        kebab.push(ch.to_ascii_lowercase());
    }
    kebab
}

fn unraw(ident: &Ident) -> String {
    let text = ident.to_string();
    text.strip_prefix("r#").map(str::to_owned).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_names_map_to_rust_case_and_back() {
        assert_eq!(snake("nick-name"), "nick_name");
        assert_eq!(camel("unknown-sku"), "UnknownSku");
        assert_eq!(camel("HTTP-status"), "HttpStatus");
        assert_eq!(serde_field_name(&ident(&snake("nick-name"))), "nick-name");
        assert_eq!(
            serde_variant_name(&ident(&camel("unknown-sku"))),
            "unknown-sku"
        );
        // Where serde's conversion would not give the WIT name back, the
        // generator adds an explicit rename.
        assert_ne!(
            serde_variant_name(&ident(&camel("HTTP-status"))),
            "HTTP-status"
        );
        assert_eq!(serde_field_name(&ident("type")), "type");
        assert_eq!(ident("type").to_string(), "r#type");
        assert_eq!(ident("self").to_string(), "self_");
        assert_eq!(serde_field_name(&ident("self")), "self-");
    }
}
