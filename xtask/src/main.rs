//! Project chores, run as `cargo xtask <command>`:
//!
//! - `plugins [--out DIR]`: build the example plugins for `wasm32-wasip2`
//!   (adding the target when missing) and install them into each region's
//!   plugin folder under DIR (default: the repository root), next to a copy
//!   of `regions.toml` when DIR is elsewhere.
//! - `demo [--out DIR]`: `plugins [--out DIR]`, build the host, and become
//!   `wasmrpc up` on the `regions.toml` in DIR: it makes the development
//!   certificates and the tour's token there when missing (`certs/`,
//!   `access.toml`), every host of every region starts, each prints where
//!   it listens, and Ctrl-C stops them all.
//! - `corpus [--out DIR] [--seed-fuzz]`: regenerate the malformed-frame corpus
//!   in DIR (default `tests/corpus/`; see its README.md). With `--seed-fuzz`,
//!   also write seeds for the fuzz targets into `fuzz/corpus/<target>/`.
//! - `screenshot [--out FILE]`: regenerate `docs/dashboard.png` (or FILE),
//!   the dashboard of the sample regions with calls flowing and one host
//!   down, taken by headless Chromium (see `screenshot.rs`).

mod corpus;
mod screenshot;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use xtask::{cargo, guests, root, run};

/// Which example plugins each sample region serves.
const PLACEMENT: &[(&str, &[&str])] = &[
    ("eu-west", &["math", "greeter", "misbehave"]),
    ("us-east", &["orders", "math", "ledger", "pygreeter"]),
    ("ap-south", &["inventory", "jsgreeter"]),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.get(1).map(String::as_str) {
        Some("--out") => args.get(2).map(PathBuf::from),
        _ => None,
    };
    let result = match args.first().map(String::as_str) {
        Some("plugins") => plugins(out.as_deref()).map(|_| ()),
        Some("demo") => demo(out.as_deref()),
        Some("corpus") => corpus::command(&args[1..]),
        Some("screenshot") => screenshot::command(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask plugins [--out DIR] | cargo xtask demo [--out DIR] | \
                 cargo xtask corpus [--out DIR] [--seed-fuzz] | cargo xtask screenshot [--out FILE]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the guests and installs them per [`PLACEMENT`]; returns the folder
/// holding `regions.toml` and the plugin folders.
fn plugins(out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let root = root();
    let built = guests::build()?;
    let out = out.map_or_else(|| root.clone(), Path::to_path_buf);
    if out != root {
        std::fs::create_dir_all(&out)?;
        std::fs::copy(root.join("regions.toml"), out.join("regions.toml"))?;
    }
    for (region, names) in PLACEMENT {
        let folder = out.join("plugins").join(region);
        std::fs::create_dir_all(&folder)?;
        for name in *names {
            let file = format!("{name}.wasm");
            std::fs::copy(built.join(&file), folder.join(&file))
                .with_context(|| format!("cannot install `{file}` into `{}`", folder.display()))?;
            let sidecar = guests::source_dir().join(name).join(format!("{name}.toml"));
            if sidecar.is_file() {
                std::fs::copy(&sidecar, folder.join(format!("{name}.toml")))?;
            }
        }
        eprintln!(
            "installed {} plugins into {}",
            names.len(),
            folder.display()
        );
    }
    Ok(out)
}

/// `cargo xtask demo`: installs the example plugins, builds the host, then
/// becomes `wasmrpc up` on the sample `regions.toml`, in the repository root
/// or in `out` (where the end-to-end test runs it, so that no certificate
/// or token of a test lands in the repository).
///
/// On Unix this process is replaced by `wasmrpc up` (as `cargo run` is
/// replaced by this one), so the process the user started is the one that
/// serves: Ctrl-C reaches it directly and stops every host, and nothing is
/// left behind to orphan them.
fn demo(out: Option<&Path>) -> anyhow::Result<()> {
    let dir = plugins(out)?;
    run(cargo()
        .current_dir(root())
        .args(["build", "--package", "wasmrpc", "--bin", "wasmrpc"]))?;
    // Cargo builds `wasmrpc` next to this binary: same workspace, same profile.
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    let wasmrpc = exe.with_file_name(format!("wasmrpc{}", std::env::consts::EXE_SUFFIX));
    let mut up = Command::new(&wasmrpc);
    // Relative paths, so that what `up` prints (`export
    // WASMRPC_CA=certs/ca.crt`) works as written in a shell in `dir`.
    up.current_dir(&dir)
        .args(["up", "--config", "regions.toml"]);
    eprintln!(
        "starting every host of `regions.toml` with `{} up`",
        wasmrpc.display()
    );
    exec(&mut up)
}

/// Replaces this process with `command`, which inherits its pid, process
/// group and terminal.
#[cfg(unix)]
fn exec(command: &mut Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let error = command.exec();
    Err(error).with_context(|| format!("cannot run {command:?}"))
}

/// Runs `command` to its end (no `exec` here).
#[cfg(not(unix))]
fn exec(command: &mut Command) -> anyhow::Result<()> {
    run(command)
}
