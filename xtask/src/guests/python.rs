//! The Python guest, `pygreeter`: built by componentize-py, which runs from a
//! virtual environment of its own at the version `requirements.txt` pins.
//!
//! The component weighs some 18 MB and takes seconds to build, so it is built
//! only when an input is newer than it: a `.py` file, the staged WIT or
//! `requirements.txt`. When it is fresh, no Python process starts at all.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};

use crate::run;

/// The guest's name: its folder in `guest-examples/` and its `<name>.wasm`.
const GUEST: &str = "pygreeter";

/// The Python module componentize-py wraps, in the guest's folder.
const APP: &str = "app";

/// The world the guest implements, in the staged WIT.
const WORLD: &str = "polyglot";

/// The toolchain, as `requirements.txt` and its `--version` name it.
const TOOLCHAIN: &str = "componentize-py";

/// The guest's sources.
fn source_dir() -> PathBuf {
    super::source_dir().join(GUEST)
}

/// The virtual environment holding the toolchain, next to the Rust guests'
/// cargo target folder.
fn venv_dir() -> PathBuf {
    super::source_dir().join("target").join("python-venv")
}

/// The program `name` (`python`, `componentize-py`) of the virtual environment.
fn venv_program(name: &str) -> PathBuf {
    let bin = if cfg!(windows) { "Scripts" } else { "bin" };
    venv_dir()
        .join(bin)
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The version of componentize-py that `requirements.txt` pins.
///
/// # Errors
///
/// When the file cannot be read or pins no version with `==`.
fn pinned_version(requirements: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(requirements)
        .with_context(|| format!("cannot read `{}`", requirements.display()))?;
    text.lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix(TOOLCHAIN)?
                .trim()
                .strip_prefix("==")
        })
        .map(|version| version.trim().to_owned())
        .with_context(|| {
            format!(
                "`{}` pins no version of {TOOLCHAIN} (`{TOOLCHAIN}==X.Y.Z`)",
                requirements.display()
            )
        })
}

/// Creates the virtual environment with `python3 -m venv` when missing.
///
/// # Errors
///
/// When python3 is not installed, or cannot create the environment.
fn ensure_venv() -> anyhow::Result<()> {
    if venv_program("python").is_file() {
        return Ok(());
    }
    eprintln!(
        "creating a Python virtual environment in {}",
        venv_dir().display()
    );
    let mut venv = Command::new("python3");
    venv.args(["-m", "venv"]).arg(venv_dir());
    match venv.status() {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "python3 is not installed: the Python example plugin `{GUEST}` needs it \
             (with its `venv` module) to install {TOOLCHAIN}"
        ),
        Err(error) => Err(error).with_context(|| format!("cannot run {venv:?}")),
        Ok(status) if !status.success() => bail!(
            "{venv:?} failed with {status} (on Debian and Ubuntu, the `venv` module \
             is the package python3-venv)"
        ),
        Ok(_) => Ok(()),
    }
}

/// Installs `requirements.txt` into the virtual environment with pip, unless
/// the pinned componentize-py is already there (so that a build with the
/// toolchain in place needs no network).
///
/// # Errors
///
/// When the requirements cannot be read or pip fails.
fn ensure_toolchain(requirements: &Path) -> anyhow::Result<()> {
    let pinned = pinned_version(requirements)?;
    let installed = Command::new(venv_program(TOOLCHAIN))
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    // `componentize-py --version` prints `componentize-py 0.25.1`.
    if installed.as_deref() == Some(format!("{TOOLCHAIN} {pinned}").as_str()) {
        return Ok(());
    }
    eprintln!(
        "installing {TOOLCHAIN} {pinned} into {}",
        venv_dir().display()
    );
    run(Command::new(venv_program("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(requirements))
    .with_context(|| {
        format!(
            "cannot install {TOOLCHAIN} (delete `{}` to start afresh)",
            venv_dir().display()
        )
    })
}

/// The newest modification time among `paths` and, for folders, the files
/// they hold.
fn newest(paths: &[PathBuf]) -> anyhow::Result<SystemTime> {
    let mut latest = SystemTime::UNIX_EPOCH;
    for path in paths {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        if metadata.is_dir() {
            let entries: Vec<PathBuf> = std::fs::read_dir(path)?
                .map(|entry| entry.map(|entry| entry.path()))
                .collect::<Result<_, _>>()?;
            latest = latest.max(newest(&entries)?);
        } else {
            latest = latest.max(metadata.modified()?);
        }
    }
    Ok(latest)
}

/// The inputs of the build: the guest's `.py` files, its
/// `requirements.txt`, and the staged WIT folder `wit`.
fn inputs(wit: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut inputs = vec![wit.to_owned(), source_dir().join("requirements.txt")];
    for entry in std::fs::read_dir(source_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "py") {
            inputs.push(path);
        }
    }
    Ok(inputs)
}

/// Builds `pygreeter.wasm` into [`super::out_dir`] when it is missing or
/// older than one of its inputs, first creating the virtual environment and
/// installing componentize-py when needed.
///
/// Several processes may build at once (the end-to-end tests do): a lock file
/// makes them take turns, so the later ones find the component fresh, and
/// the component is written under a temporary name then renamed into place,
/// so that no host ever loads half of one.
pub(super) fn build() -> anyhow::Result<()> {
    let out = super::out_dir();
    std::fs::create_dir_all(&out)?;
    let lock_path = super::source_dir().join("target").join("python.lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create `{}`", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock `{}`", lock_path.display()))?;

    let wit = super::staged_wit()?;
    let component = out.join(format!("{GUEST}.wasm"));
    let newest_input = newest(&inputs(&wit)?)?;
    let built = std::fs::metadata(&component).and_then(|metadata| metadata.modified());
    if built.is_ok_and(|built| built > newest_input) {
        return Ok(());
    }

    let requirements = source_dir().join("requirements.txt");
    ensure_venv()?;
    ensure_toolchain(&requirements)?;
    eprintln!("building {GUEST}.wasm with {TOOLCHAIN}");
    let partial = out.join(format!("{GUEST}.wasm.{}.partial", std::process::id()));
    let result = run(Command::new(venv_program(TOOLCHAIN))
        .arg("-d")
        .arg(&wit)
        .args(["-w", WORLD, "componentize", APP, "-p"])
        .arg(source_dir())
        .arg("-o")
        .arg(&partial)
        // componentize-py also searches the active virtual environment's
        // packages: make that ours, whichever the caller's shell activated.
        .env("VIRTUAL_ENV", venv_dir()))
    .and_then(|()| {
        std::fs::rename(&partial, &component)
            .with_context(|| format!("cannot write `{}`", component.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}
