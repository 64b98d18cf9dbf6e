//! A program that only calls wasmrpc must not compile a WebAssembly engine:
//! nothing this crate depends on (at run time) is wasmtime, Cranelift or the
//! host's file watcher.

use std::process::Command;

#[test]
fn the_client_depends_on_no_wasm_engine_and_no_file_watcher() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--package",
            "wasmrpc-client",
            "--edges",
            "normal,build",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(crates.contains(&"wasmrpc-protocol"), "{tree}");
    let banned: Vec<&str> = crates
        .iter()
        .copied()
        .filter(|name| {
            name.starts_with("wasmtime") || name.starts_with("cranelift") || *name == "notify"
        })
        .collect();
    assert_eq!(banned, Vec::<&str>::new(), "the client depends on them");
}
