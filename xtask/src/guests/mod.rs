//! Building the example guests of `guest-examples/` into WebAssembly
//! components, one toolchain after another, into one folder of `<name>.wasm`
//! files.
//!
//! `cargo xtask plugins` installs from that folder and the end-to-end tests
//! load from it, so both get the same build. Each toolchain is a module whose
//! `build` adds what the toolchain lacks (a rustup target, say), builds its
//! guests and leaves their components in [`out_dir`]. Cargo chooses that
//! folder for the Rust guests; other toolchains write theirs next to them.

mod rust;

use std::path::PathBuf;

/// The sources of the example guests, one folder per guest
/// (`guest-examples/<name>/`, with its optional `<name>.toml` sidecar).
pub fn source_dir() -> PathBuf {
    crate::root().join("guest-examples")
}

/// The folder [`build`] leaves every guest's `<name>.wasm` in.
pub fn out_dir() -> PathBuf {
    rust::out_dir()
}

/// Builds every example guest; returns [`out_dir`].
///
/// # Errors
///
/// When a toolchain is missing and cannot be added, or a build fails.
pub fn build() -> anyhow::Result<PathBuf> {
    let out = out_dir();
    rust::build()?;
    Ok(out)
}
