//! Building the example guests of `guest-examples/` into WebAssembly
//! components, one toolchain after another, into one folder of `<name>.wasm`
//! files.
//!
//! `cargo xtask plugins` installs from that folder and the end-to-end tests
//! load from it, so both get the same build. Each toolchain is a module whose
//! `build` adds what the toolchain lacks (a rustup target, say), builds its
//! guests and leaves their components in [`out_dir`]. Cargo chooses that
//! folder for the Rust guests; other toolchains write theirs next to them.
//! After the Rust guests come the Python one, `pygreeter`, built by
//! componentize-py from a virtual environment in `guest-examples/target/`,
//! and the JavaScript one, `jsgreeter`, built by componentize-js from the
//! `node_modules` its lock file pins.

mod js;
mod python;
mod rust;

use std::path::PathBuf;

use anyhow::Context;

/// The sources of the example guests, one folder per guest
/// (`guest-examples/<name>/`, with its optional `<name>.toml` sidecar).
pub fn source_dir() -> PathBuf {
    crate::root().join("guest-examples")
}

/// The folder [`build`] leaves every guest's `<name>.wasm` in.
pub fn out_dir() -> PathBuf {
    rust::out_dir()
}

/// The WIT of the example guests written in other languages: the world
/// `example:polyglot/polyglot` (`guest-examples/polyglot/world.wit`) staged
/// with the packages it uses in `deps/` (the host interface, `wit/host.wit`,
/// and the Rust greeter's `example:greeter`), the layout componentize-py and
/// componentize-js read. Returns the staged folder.
///
/// # Errors
///
/// When a file cannot be copied.
pub fn staged_wit() -> anyhow::Result<PathBuf> {
    let staged = source_dir().join("target").join("polyglot-wit");
    let files = [
        (source_dir().join("polyglot/world.wit"), "world.wit"),
        (crate::root().join("wit/host.wit"), "deps/host/host.wit"),
        (
            source_dir().join("greeter/wit/world.wit"),
            "deps/greeter/world.wit",
        ),
    ];
    for (from, to) in files {
        let to = staged.join(to);
        std::fs::create_dir_all(to.parent().expect("a staged file has a folder"))?;
        let text =
            std::fs::read(&from).with_context(|| format!("cannot read `{}`", from.display()))?;
        // Rewritten only when changed, so that builds keyed on it stay fresh.
        if std::fs::read(&to).ok().as_deref() != Some(text.as_slice()) {
            std::fs::write(&to, text)
                .with_context(|| format!("cannot write `{}`", to.display()))?;
        }
    }
    Ok(staged)
}

/// Builds every example guest; returns [`out_dir`].
///
/// # Errors
///
/// When a toolchain is missing and cannot be added, or a build fails.
pub fn build() -> anyhow::Result<PathBuf> {
    let out = out_dir();
    rust::build()?;
    python::build()?;
    js::build()?;
    Ok(out)
}
