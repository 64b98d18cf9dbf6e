//! The macro's input: `{ path: ..., world: ..., plugin: ... }`.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::{LitStr, Token, braced, bracketed};

/// What `bindgen!` was asked for.
pub struct Input {
    /// WIT folders or files, relative to the invoking crate's manifest
    /// folder. The last one holds the world; the others are its dependencies.
    pub paths: Vec<LitStr>,
    /// The world to generate stubs for; `None` when the package has one.
    pub world: Option<LitStr>,
    /// The plugin name callers address (the `.wasm` file stem); defaults to
    /// the world's name.
    pub plugin: Option<LitStr>,
    /// Where the input starts, for errors about the input as a whole.
    pub span: Span,
}

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Input> {
        let span = input.span();
        // Both `bindgen!({ path: ... })` and `bindgen!(path: ...)`.
        let content;
        let fields = if input.peek(syn::token::Brace) {
            braced!(content in input);
            &content
        } else {
            input
        };
        let mut paths = None;
        let mut world = None;
        let mut plugin = None;
        while !fields.is_empty() {
            let key: syn::Ident = fields.parse()?;
            fields.parse::<Token![:]>()?;
            match key.to_string().as_str() {
                "path" => {
                    let value = if fields.peek(syn::token::Bracket) {
                        let list;
                        bracketed!(list in fields);
                        let items =
                            list.parse_terminated(|item| item.parse::<LitStr>(), Token![,])?;
                        if items.is_empty() {
                            return Err(syn::Error::new(key.span(), "`path` lists no WIT folder"));
                        }
                        items.into_iter().collect()
                    } else {
                        vec![fields.parse::<LitStr>()?]
                    };
                    set(&mut paths, value, &key)?;
                }
                "world" => set(&mut world, fields.parse::<LitStr>()?, &key)?,
                "plugin" => {
                    let name = fields.parse::<LitStr>()?;
                    let valid = !name.value().is_empty()
                        && name.value().bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                        });
                    if !valid {
                        return Err(syn::Error::new(
                            name.span(),
                            format!(
                                "`{}` is not a plugin name: use lowercase letters, digits, `_` and `-` (the `.wasm` file's stem)",
                                name.value()
                            ),
                        ));
                    }
                    set(&mut plugin, name, &key)?;
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown key `{other}`: expected `path`, `world` or `plugin`"),
                    ));
                }
            }
            if fields.is_empty() {
                break;
            }
            fields.parse::<Token![,]>()?;
        }
        let Some(paths) = paths else {
            return Err(syn::Error::new(
                span,
                "missing `path`: the plugin's WIT folder, e.g. `path: \"wit\"`",
            ));
        };
        Ok(Input {
            paths,
            world,
            plugin,
            span,
        })
    }
}

fn set<T>(slot: &mut Option<T>, value: T, key: &syn::Ident) -> syn::Result<()> {
    if slot.replace(value).is_some() {
        return Err(syn::Error::new(key.span(), format!("`{key}` given twice")));
    }
    Ok(())
}
