//! `bindgen!`: typed client stubs generated from a plugin's WIT world.
//!
//! Use it through `wasmrpc_client::bindgen!`, whose documentation describes
//! the input and what gets generated; the generated code refers to
//! `wasmrpc_client` alone.

mod generate;
mod input;
mod names;

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::quote;
use wit_parser::{PackageId, Resolve};

use crate::input::Input;

// Documented where callers find it: the re-export `wasmrpc_client::bindgen!`.
#[proc_macro]
pub fn bindgen(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = syn::parse_macro_input!(input as Input);
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default();
    expand(&input, &manifest_dir)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The stubs `input` asks for, with paths relative to `manifest_dir`.
fn expand(input: &Input, manifest_dir: &Path) -> syn::Result<TokenStream> {
    let mut resolve = Resolve::new();
    let mut main: Option<PackageId> = None;
    let mut sources = Vec::new();
    for path in &input.paths {
        let full = manifest_dir.join(path.value());
        if !full.exists() {
            return Err(syn::Error::new(
                path.span(),
                format!(
                    "no WIT folder or file at `{}` (paths are relative to the crate's folder, `{}`)",
                    path.value(),
                    manifest_dir.display()
                ),
            ));
        }
        let (package, source_map) = resolve.push_path(&full).map_err(|err| {
            syn::Error::new(
                path.span(),
                format!(
                    "cannot read the WIT at `{}`: {}",
                    path.value(),
                    resolve.render_error(&err)
                ),
            )
        })?;
        sources.extend(source_map.paths().map(Path::to_path_buf));
        main = Some(package);
    }
    let main = main.expect("`path` lists at least one folder");

    let package = &resolve.packages[main];
    let worlds: Vec<&str> = package.worlds.keys().map(String::as_str).collect();
    let worlds = if worlds.is_empty() {
        "none".to_owned()
    } else {
        worlds.join(", ")
    };
    let world = match &input.world {
        Some(world) => package.worlds.get(&world.value()).copied().ok_or_else(|| {
            syn::Error::new(
                world.span(),
                format!(
                    "no world `{}` in package `{}` (its worlds: {worlds})",
                    world.value(),
                    package.name
                ),
            )
        })?,
        None => match package.worlds.values().collect::<Vec<_>>()[..] {
            [world] => *world,
            _ => {
                return Err(syn::Error::new(
                    input.span,
                    format!(
                        "package `{}` has {} worlds: name one with `world: \"...\"` (its worlds: {worlds})",
                        package.name,
                        package.worlds.len()
                    ),
                ));
            }
        },
    };
    let plugin = input.plugin.as_ref().map_or_else(
        || resolve.worlds[world].name.clone(),
        |plugin| plugin.value(),
    );
    let code = generate::world(&resolve, world, &plugin);

    // Cargo rebuilds the caller when a WIT file it was generated from changes.
    let sources = sources
        .iter()
        .filter_map(|source| source.canonicalize().ok())
        .map(|source| source.display().to_string());
    Ok(quote! {
        #(const _: &str = ::std::include_str!(#sources);)*
        #code
    })
}

#[cfg(test)]
mod tests;
