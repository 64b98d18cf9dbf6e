//! The Python client (`clients/python`): its pytest suite, run against real
//! hosts from a virtual environment under the target directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use wasmrpc_tests::{guests_dir, wasmrpc_bin, workspace_root};

/// The pytest release the suite is run with.
const PYTEST: &str = "pytest==8.4.2";

/// `<target>/python-client-venv`: this test binary lives in
/// `<target>/<profile>/deps/`.
fn venv_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary is in <target>/<profile>/deps");
    target.join("python-client-venv")
}

fn output(mut command: Command, what: &str) -> Output {
    // Children (pytest, and the hosts it starts) die with this test.
    // SAFETY: the closure runs in the forked child before exec and makes one
    // async-signal-safe call, prctl(2), with integer arguments only.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

fn assert_ran(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The venv's Python with `clients/python` (as it is now) and pytest installed.
fn python_with_the_client() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        let mut create = Command::new("python3");
        create.args(["-m", "venv"]).arg(&venv);
        assert_ran(&output(create, "python3 -m venv"), "python3 -m venv");
    }
    let mut install = Command::new(&python);
    install
        .current_dir(workspace_root())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "./clients/python",
            PYTEST,
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    assert_ran(&output(install, "pip install"), "pip install");
    python
}

fn pytest(python: &Path, args: &[&str]) -> Output {
    let mut run = Command::new(python);
    run.current_dir(workspace_root().join("clients/python"))
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"])
        .args(args)
        .env("WASMRPC_BIN", wasmrpc_bin())
        .env("WASMRPC_GUESTS", guests_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("WASMRPC_HOST")
        .env_remove("WASMRPC_TOKEN");
    output(run, "pytest")
}

#[test]
fn the_python_client_passes_its_pytest_suite_against_real_hosts() {
    // Built before the clock starts, as every other test does.
    wasmrpc_bin();
    guests_dir();
    let python = python_with_the_client();
    let start = Instant::now();
    let run = pytest(&python, &[]);
    assert_ran(&run, "the Python client's pytest suite");
    println!(
        "{}pytest took {:?}",
        String::from_utf8_lossy(&run.stdout),
        start.elapsed()
    );
}
