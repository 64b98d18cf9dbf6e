//! The JavaScript guest: `jsgreeter`, the `polyglot` world written as an ES
//! module and made into a component by componentize-js, an npm package
//! pinned by the guest's `package-lock.json`.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};

/// The guest's name: its folder, its component (`jsgreeter.wasm`), its
/// plugin name.
const NAME: &str = "jsgreeter";

/// What to say when Node.js is missing.
const NO_NODE: &str = "Node.js (`node` and `npm`) is needed to build the JavaScript \
                       example `jsgreeter`: is it installed and on PATH?";

/// The guest's folder: `greeter.js`, `package.json`, `package-lock.json` and,
/// once installed, `node_modules/`.
fn example_dir() -> PathBuf {
    super::source_dir().join(NAME)
}

/// Installs componentize-js into the guest's `node_modules` when missing or
/// older than `package-lock.json`, then builds `jsgreeter.wasm` into
/// [`super::out_dir`] unless it is newer than all of its inputs: the module,
/// the staged WIT and the lock file.
///
/// Several processes may build at once (the end-to-end tests do): each holds
/// an exclusive lock on `guest-examples/target/jsgreeter.lock` for the whole
/// build, so one `npm ci` never deletes a `node_modules` another is using,
/// and the ones that waited find the component fresh. The component is
/// written beside its final name and renamed into place, so a host loading
/// it never reads half of one.
pub(super) fn build() -> anyhow::Result<()> {
    let dir = example_dir();
    let lock_path = super::source_dir()
        .join("target")
        .join(format!("{NAME}.lock"));
    std::fs::create_dir_all(lock_path.parent().expect("a lock file has a folder"))?;
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create `{}`", lock_path.display()))?;
    // Released when `lock` is dropped, or when this process dies.
    lock.lock()
        .with_context(|| format!("cannot lock `{}`", lock_path.display()))?;

    let lockfile = dir.join("package-lock.json");
    // npm writes this copy of the lock file last, once an install succeeded.
    let installed = dir.join("node_modules").join(".package-lock.json");
    if !is_newer(&installed, [&lockfile])? {
        eprintln!("installing componentize-js for `{NAME}` (npm ci)");
        node(
            Command::new("npm")
                .current_dir(&dir)
                .args(["ci", "--no-audit", "--no-fund"]),
        )?;
    }

    let wit = super::staged_wit()?;
    let out = super::out_dir();
    let component = out.join(format!("{NAME}.wasm"));
    let mut inputs = vec![dir.join("greeter.js"), lockfile];
    inputs.extend(files_under(&wit)?);
    if is_newer(&component, &inputs)? {
        return Ok(());
    }
    eprintln!("building `{NAME}` with componentize-js");
    std::fs::create_dir_all(&out)?;
    let partial = out.join(format!("{NAME}.wasm.partial"));
    node(
        Command::new(dir.join("node_modules/.bin/componentize-js"))
            .current_dir(&dir)
            .arg("--wit")
            .arg(&wit)
            .args(["--world-name", "polyglot"])
            // Without these, the component imports `wasi:http` for `fetch`,
            // which the host does not provide.
            .args(["--disable", "http", "fetch-event"])
            .arg("--out")
            .arg(&partial)
            .arg("greeter.js"),
    )?;
    std::fs::rename(&partial, &component)
        .with_context(|| format!("cannot move the component to `{}`", component.display()))
}

/// Runs a Node.js command (npm, or a script of `node_modules/.bin`) to its
/// end, saying that Node.js is needed when it cannot start.
fn node(command: &mut Command) -> anyhow::Result<()> {
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("{command:?} failed with {status}"),
        Err(error) if error.kind() == ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot run {command:?}: {NO_NODE}"))
        }
        Err(error) => Err(error).with_context(|| format!("cannot run {command:?}")),
    }
}

/// Whether `path` exists and was modified after every one of `inputs`.
fn is_newer<P: AsRef<Path>>(
    path: &Path,
    inputs: impl IntoIterator<Item = P>,
) -> anyhow::Result<bool> {
    let Some(built) = modified(path)? else {
        return Ok(false);
    };
    for input in inputs {
        let input = input.as_ref();
        let changed =
            modified(input)?.with_context(|| format!("`{}` is missing", input.display()))?;
        if changed >= built {
            return Ok(false);
        }
    }
    Ok(true)
}

/// When `path` was last modified, or `None` when it does not exist.
fn modified(path: &Path) -> anyhow::Result<Option<SystemTime>> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata.modified()?)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))?
    {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(files_under(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    use super::is_newer;

    /// A fresh, empty folder of this test process.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-js-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Creates `path`, last modified `seconds` after the epoch.
    fn touch(path: &Path, seconds: u64) {
        let file = File::create(path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
            .unwrap();
    }

    #[test]
    fn a_build_is_fresh_only_when_newer_than_every_input() {
        let dir = scratch("fresh");
        let (out, a, b) = (dir.join("out.wasm"), dir.join("a.js"), dir.join("b.wit"));
        touch(&a, 100);
        touch(&b, 200);
        assert!(!is_newer(&out, [&a, &b]).unwrap(), "no output yet");
        touch(&out, 150);
        assert!(!is_newer(&out, [&a, &b]).unwrap(), "older than b");
        touch(&out, 200);
        assert!(!is_newer(&out, [&a, &b]).unwrap(), "as old as b");
        touch(&out, 201);
        assert!(is_newer(&out, [&a, &b]).unwrap());
        touch(&a, 300);
        assert!(!is_newer(&out, [&a, &b]).unwrap(), "a was edited");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_input_is_an_error_naming_it() {
        let dir = scratch("missing");
        let out = dir.join("out.wasm");
        touch(&out, 100);
        let error = is_newer(&out, [dir.join("greeter.js")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("`{}` is missing", dir.join("greeter.js").display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
