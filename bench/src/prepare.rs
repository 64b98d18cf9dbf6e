//! Building what the benchmarks run: the release `wasmrpc` binary and the
//! example plugins.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Where the things under test live.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The wasmrpc repository (the parent of `bench/`).
    pub root: PathBuf,
    /// The release `wasmrpc` binary.
    pub wasmrpc: PathBuf,
    /// The directory of the built example plugins, `<plugin>.wasm`.
    pub guests: PathBuf,
}

impl Paths {
    /// The paths of the repository this crate was built in.
    pub fn of_repository() -> Paths {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("bench/ has a parent")
            .to_owned();
        Paths {
            wasmrpc: root.join("target/release/wasmrpc"),
            guests: root.join("guest-examples/target/wasm32-wasip2/release"),
            root,
        }
    }

    /// The bytes of example plugin `name`.
    pub fn guest(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.guests.join(format!("{name}.wasm"));
        std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {} (build the plugins: `cargo run --release --manifest-path bench/Cargo.toml -- build`)",
                path.display()
            )
        })
    }
}

/// Builds the release host binary and the example plugins (in Rust,
/// Python and JavaScript, as `cargo xtask plugins` does).
pub fn build(paths: &Paths) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(&cargo)
        .args(["build", "--release", "-p", "wasmrpc", "--manifest-path"])
        .arg(paths.root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(paths.root.join("target")))?;

    // The example plugins, built as `cargo xtask plugins` and the tests
    // build them: the Rust ones, and the Python and JavaScript ones with
    // their pinned toolchains.
    xtask::guests::build()?;
    Ok(())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
