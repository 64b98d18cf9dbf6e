//! Expansion of the example plugins' worlds, and the errors for bad input.
//! (The generated code itself is compiled and called against real hosts by
//! the end-to-end tests in `tests/e2e/stubs.rs`.)

use std::path::Path;

use super::*;

/// The expansion of `input`, as text, with paths relative to this crate.
fn expand_str(input: &str) -> syn::Result<String> {
    expand_in(input, Path::new(env!("CARGO_MANIFEST_DIR")))
}

fn expand_in(input: &str, dir: &Path) -> syn::Result<String> {
    let input: Input = syn::parse_str(input)?;
    expand(&input, dir).map(|code| code.to_string())
}

fn error(input: &str, dir: &Path) -> String {
    match expand_in(input, dir) {
        Ok(code) => panic!("expanded: {code}"),
        Err(err) => err.to_string(),
    }
}

/// The callable names the expansion calls, in order.
fn callables(code: &str) -> Vec<String> {
    code.split("call_with :: < _ , ")
        .skip(1)
        .map(|call| {
            let name = call.split('"').nth(1).expect("a callable name");
            name.to_owned()
        })
        .collect()
}

/// A folder holding `wit/world.wit` with `text`.
fn wit_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("wit")).unwrap();
    std::fs::write(dir.path().join("wit/world.wit"), text).unwrap();
    dir
}

#[test]
fn world_functions_are_called_as_plugin_dot_function() {
    let code = expand_str(r#"{ path: "../../guest-examples/math/wit", world: "math" }"#).unwrap();
    assert_eq!(callables(&code), ["math.add", "math.divide", "math.stats"]);
    assert!(code.contains("pub struct Math "), "{code}");
    assert!(code.contains("pub struct Stats "), "{code}");
}

#[test]
fn interface_functions_are_called_as_plugin_dot_interface_dot_function() {
    let code = expand_str(r#"{ path: "../../guest-examples/greeter/wit" }"#).unwrap();
    let names = callables(&code);
    assert_eq!(
        names[..6],
        [
            "greeter.greet",
            "greeter.decorate",
            "greeter.area",
            "greeter.initial",
            "greeter.checksum",
            "greeter.frame"
        ]
    );
    assert_eq!(names[6], "greeter.echo.echo-bool");
    assert_eq!(names.last().unwrap(), "greeter.echo.echo-list-of-records");
    assert_eq!(names.len(), 6 + 25);
    assert!(code.contains("pub mod echo "), "{code}");
}

#[test]
fn the_plugin_name_defaults_to_the_world_and_can_be_given() {
    let code = expand_str(r#"{ path: "../../guest-examples/inventory/wit" }"#).unwrap();
    assert_eq!(callables(&code), ["inventory.stock.reserve"]);
    let code = expand_str(r#"{ path: "../../guest-examples/inventory/wit", plugin: "stock-v2" }"#)
        .unwrap();
    assert_eq!(callables(&code), ["stock-v2.stock.reserve"]);
    assert!(code.contains("pub struct StockV2 "), "{code}");
}

#[test]
fn functions_the_catalog_leaves_out_get_no_method() {
    let dir = wit_dir(
        "package test:skip;
         interface files {
             resource file { size: func() -> u64; }
             open: func(path: string) -> file;
             read: func(path: string) -> list<u8>;
         }
         world skip {
             resource counter;
             export make: func() -> counter;
             export later: async func();
             export chunks: func() -> stream<u8>;
             export failing: func() -> result<_, error-context>;
             export plain: func(n: u32);
             export files;
         }",
    );
    let code = expand_in(r#"{ path: "wit" }"#, dir.path()).unwrap();
    assert_eq!(callables(&code), ["skip.plain", "skip.files.read"]);
    assert!(
        !code.contains("Counter") && !code.contains("File "),
        "{code}"
    );
}

#[test]
fn a_missing_path_is_a_compile_error() {
    let dir = wit_dir("package test:missing; world w {}");
    assert_eq!(
        error(r#"{ path: "nowhere" }"#, dir.path()),
        format!(
            "no WIT folder or file at `nowhere` (paths are relative to the crate's folder, `{}`)",
            dir.path().display()
        )
    );
    assert_eq!(
        error(r#"{ world: "w" }"#, dir.path()),
        "missing `path`: the plugin's WIT folder, e.g. `path: \"wit\"`"
    );
}

#[test]
fn an_unknown_world_is_a_compile_error_naming_the_worlds() {
    let dir = wit_dir("package test:worlds; world one {} world two {}");
    let message = error(r#"{ path: "wit", world: "three" }"#, dir.path());
    assert_eq!(
        message,
        "no world `three` in package `test:worlds` (its worlds: one, two)"
    );
    let message = error(r#"{ path: "wit" }"#, dir.path());
    assert_eq!(
        message,
        "package `test:worlds` has 2 worlds: name one with `world: \"...\"` (its worlds: one, two)"
    );
}

#[test]
fn unparsable_wit_is_a_compile_error_with_its_location() {
    let dir = wit_dir("package test:broken;\nworld w {\n    export f: func(a: u33);\n}\n");
    let message = error(r#"{ path: "wit" }"#, dir.path());
    assert!(
        message.starts_with("cannot read the WIT at `wit`: "),
        "{message}"
    );
    assert!(message.contains("name `u33` does not exist"), "{message}");
    assert!(message.contains("/wit/world.wit:3:23"), "{message}");
}

#[test]
fn bad_keys_and_plugin_names_are_compile_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        error(r#"{ path: "wit", colour: "red" }"#, dir),
        "unknown key `colour`: expected `path`, `world` or `plugin`"
    );
    assert_eq!(
        error(r#"{ path: "wit", plugin: "Math.v2" }"#, dir),
        "`Math.v2` is not a plugin name: use lowercase letters, digits, `_` and `-` (the `.wasm` file's stem)"
    );
    assert_eq!(
        error(r#"{ path: "a", path: "b" }"#, dir),
        "`path` given twice"
    );
}

#[test]
fn of_two_interfaces_exported_under_one_name_the_first_is_called() {
    let dir = wit_dir(
        "package test:twice;
         interface stock { count: func() -> u32; }
         world twice {
             export stock;
             export test:other/stock;
         }",
    );
    std::fs::create_dir_all(dir.path().join("wit/deps/other")).unwrap();
    std::fs::write(
        dir.path().join("wit/deps/other/stock.wit"),
        "package test:other; interface stock { reserve: func(sku: string) -> u32; }",
    )
    .unwrap();
    let code = expand_in(r#"{ path: "wit" }"#, dir.path()).unwrap();
    assert_eq!(callables(&code), ["twice.stock.count"]);
}
