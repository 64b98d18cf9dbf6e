//! Project chores, run as `cargo xtask <command>`:
//!
//! - `plugins [--out DIR]`: build the example plugins for `wasm32-wasip2`
//!   (adding the target when missing) and install them into each region's
//!   plugin folder under DIR (default: the repository root), next to a copy
//!   of `regions.toml` when DIR is elsewhere.
//! - `demo`: `plugins`, build the host, and start every host of the sample
//!   `regions.toml` with `wasmrpc up`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// Which example plugins each sample region serves.
const PLACEMENT: &[(&str, &[&str])] = &[
    ("eu-west", &["math", "greeter", "misbehave"]),
    ("us-east", &["orders", "math", "ledger"]),
    ("ap-south", &["inventory"]),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("plugins") => {
            let out = match args.get(1).map(String::as_str) {
                Some("--out") => args.get(2).map(PathBuf::from),
                _ => None,
            };
            plugins(out.as_deref()).map(|_| ())
        }
        Some("demo") => demo(),
        _ => {
            eprintln!("usage: cargo xtask plugins [--out DIR] | cargo xtask demo");
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

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_owned()
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup")?;
    if !String::from_utf8_lossy(&installed.stdout).contains("wasm32-wasip2") {
        eprintln!("adding the wasm32-wasip2 target");
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    Ok(())
}

/// Builds the guests and installs them per [`PLACEMENT`]; returns the folder
/// holding `regions.toml` and the plugin folders.
fn plugins(out: Option<&Path>) -> anyhow::Result<PathBuf> {
    ensure_wasm_target()?;
    let root = root();
    let guests = root.join("guest-examples");
    run(cargo()
        .current_dir(&guests)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(guests.join("target"))
        .env_remove("CARGO_TARGET_DIR"))?;
    let built = guests.join("target/wasm32-wasip2/release");
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
            let sidecar = guests.join(name).join(format!("{name}.toml"));
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

fn demo() -> anyhow::Result<()> {
    let dir = plugins(None)?;
    eprintln!("starting region eu-west; stop with Ctrl-C");
    run(cargo().current_dir(&dir).args([
        "run",
        "--quiet",
        "--package",
        "wasmrpc",
        "--",
        "host",
        "--region",
        "eu-west",
    ]))
}
