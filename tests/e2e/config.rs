//! Invalid `regions.toml` files and flags are refused with a message naming
//! the problem and a non-zero exit.

use wasmrpc_tests::cli;

/// Writes `toml` to a fresh folder (which also holds `plugins/a`) and runs
/// `wasmrpc host --region <region> --config <file>`.
fn host_with(toml: &str, region: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins/a")).unwrap();
    let path = dir.path().join("regions.toml");
    std::fs::write(&path, toml).unwrap();
    let out = cli(&[
        "host",
        "--region",
        region,
        "--config",
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.code().unwrap_or(-1),
        stderr,
        path.display().to_string(),
    )
}

const GOOD: &str = "[[region]]\nname = \"a\"\nhosts = [\"127.0.0.1:1\"]\nplugins = \"plugins/a\"\n";

#[test]
fn unknown_key_is_named() {
    let (code, stderr, _) = host_with(&format!("{GOOD}colour = \"red\"\n"), "a");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("unknown field `colour`, expected one of `name`, `hosts`, `plugins`"),
        "{stderr}"
    );
    assert!(stderr.contains("line 5"), "{stderr}");
}

#[test]
fn unknown_region_lists_the_known_ones() {
    let (code, stderr, path) = host_with(GOOD, "mars");
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!("error: unknown region `mars`; `{path}` defines `a`\n")
    );
}

#[test]
fn duplicate_host_address_is_refused() {
    let toml = format!(
        "{GOOD}\n[[region]]\nname = \"b\"\nhosts = [\"127.0.0.1:1\"]\nplugins = \"plugins/a\"\n"
    );
    let (code, stderr, _) = host_with(&toml, "a");
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "error: host `127.0.0.1:1` is listed twice (regions `a` and `b`)\n"
    );
}

#[test]
fn missing_plugin_folder_is_refused() {
    let toml = GOOD.replace("plugins/a", "plugins/missing");
    let (code, stderr, path) = host_with(&toml, "a");
    assert_eq!(code, 1);
    let folder = std::path::Path::new(&path)
        .parent()
        .unwrap()
        .join("plugins/missing");
    assert_eq!(
        stderr,
        format!(
            "error: region `a`: plugin folder `{}` does not exist\n",
            folder.display()
        )
    );
}

#[test]
fn route_to_an_unknown_region_is_refused() {
    let toml = format!("{GOOD}\n[routes]\n\"billing.*\" = [\"a\", \"nowhere\"]\n");
    let (code, stderr, _) = host_with(&toml, "a");
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "error: routes.\"billing.*\": unknown region `nowhere`\n"
    );
}

#[test]
fn missing_config_without_listen_and_plugins_is_refused() {
    let out = cli(&[
        "host",
        "--region",
        "a",
        "--config",
        "/nonexistent/regions.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: cannot read `/nonexistent/regions.toml`: No such file or directory (os error 2)\n"
    );
}
