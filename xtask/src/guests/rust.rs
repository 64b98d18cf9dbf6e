//! The Rust guests: a cargo workspace built for `wasm32-wasip2`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use crate::{cargo, run};

/// The target the Rust guests are built for.
const TARGET: &str = "wasm32-wasip2";

/// Adds the `wasm32-wasip2` target with rustup when it is not installed.
///
/// # Errors
///
/// When rustup cannot run or cannot add the target.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup")?;
    if !String::from_utf8_lossy(&installed.stdout).contains(TARGET) {
        eprintln!("adding the {TARGET} target");
        run(Command::new("rustup").args(["target", "add", TARGET]))?;
    }
    Ok(())
}

/// Cargo's target folder for the guests, inside their own workspace.
fn target_dir() -> PathBuf {
    super::source_dir().join("target")
}

/// Where cargo puts the built components.
pub(super) fn out_dir() -> PathBuf {
    target_dir().join(TARGET).join("release")
}

/// Builds the guest workspace in release mode, adding the target first when
/// missing; the components land in [`out_dir`].
pub(super) fn build() -> anyhow::Result<()> {
    ensure_wasm_target()?;
    run(cargo()
        .current_dir(super::source_dir())
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir())
        // The host's flags are not the guests' (`-C target-cpu=native` means
        // nothing to wasm32), and a target folder set for the host is not
        // the guests' either. Without them, every caller (`cargo xtask`, the
        // tests) asks cargo for the same build, and finds it fresh.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS"))
}
