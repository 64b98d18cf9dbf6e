//! `wasmrpc call` and `wasmrpc list` against a running host.

use wasmrpc_tests::{HostProcess, cli};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn call_prints_the_result_as_json() {
    let host = HostProcess::start(&["math"]);
    let out = cli(&["call", "--host", &host.host_arg(), "math.add", "2", "3"]);
    assert_eq!(stdout(&out), "5\n");
    assert_eq!(out.status.code(), Some(0));

    let out = cli(&["call", "--host", &host.host_arg(), "math.stats", "[1,2,3]"]);
    assert_eq!(
        stdout(&out),
        "{\"count\":3,\"mean\":2.0,\"min\":1.0,\"max\":3.0}\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn call_error_goes_to_stderr_with_its_code_and_a_nonzero_exit() {
    let host = HostProcess::start(&["math"]);
    let out = cli(&["call", "--host", &host.host_arg(), "math.divide", "1", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "error[handler_error]: division by zero\n  region: test, processed: yes\n  detail: \"division by zero\"\n"
    );
}

#[test]
fn unknown_function_is_not_found_naming_it() {
    let host = HostProcess::start(&["math"]);
    let out = cli(&[
        "call",
        "--host",
        &host.host_arg(),
        "math.multiply",
        "2",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error[not_found]: no host serves function `math.multiply`\n  region: test, processed: no\n"
    );
}

#[test]
fn list_prints_every_function_with_its_signature() {
    let host = HostProcess::start(&["math", "inventory"]);
    let out = cli(&["list", "--host", &host.host_arg()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "inventory.stock.reserve: func(sku: string, qty: u32) -> result<record { sku: string, quantity: u32, \
         warehouse: string, reservation-id: string }, variant { unknown-sku(string), insufficient(u32), \
         invalid-quantity }>  [test]\n\
         math.add: func(a: s64, b: s64) -> s64  [test]\n\
         math.divide: func(a: s64, b: s64) -> result<s64, string>  [test]\n\
         math.stats: func(values: list<f64>) -> record { count: u32, mean: f64, min: f64, max: f64 }  [test]\n"
    );
}

#[test]
fn list_json_has_name_signature_and_regions() {
    let host = HostProcess::start(&["math"]);
    let out = cli(&["list", "--json", "--host", &host.host_arg()]);
    let catalog: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON catalog");
    assert_eq!(
        catalog[0],
        serde_json::json!({"name": "math.add", "signature": "func(a: s64, b: s64) -> s64", "regions": ["test"]})
    );
    assert_eq!(catalog.as_array().map(Vec::len), Some(3));
}

#[test]
fn arguments_that_are_not_json_are_refused_before_connecting() {
    let out = cli(&[
        "call",
        "--host",
        "127.0.0.1:1",
        "inventory.stock.reserve",
        "sku-1",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: argument 1 `sku-1` is not JSON (expected value at line 1 column 1); strings need quotes, e.g. '\"sku-1\"'\n"
    );
}

#[test]
fn unreachable_host_is_unavailable_and_not_processed() {
    // Port 1 on loopback has no listener.
    let out = cli(&["call", "--host", "127.0.0.1:1", "math.add", "1", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error[unavailable]: cannot connect to `127.0.0.1:1`: Connection refused"),
        "{err}"
    );
    assert!(err.ends_with("  processed: no\n"), "{err}");
}

#[test]
fn every_command_explains_its_flags() {
    for (command, flags) in [
        (
            "host",
            &[
                "--region",
                "--config",
                "--listen",
                "--plugins",
                "--drain-timeout",
                "--hello-timeout",
                "--frame-timeout",
                "--idle-timeout",
            ][..],
        ),
        ("call", &["--host", "--timeout"][..]),
        ("list", &["--host", "--json"][..]),
    ] {
        let out = cli(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let help = stdout(&out);
        for flag in flags {
            assert!(
                help.contains(flag),
                "`wasmrpc {command} --help` does not mention {flag}:\n{help}"
            );
        }
    }
}

/// The `` `--flag` `` names in `text`.
fn flags_named(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| {
            quoted.starts_with("--")
                && quoted[2..]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .collect()
}

/// The text of the section of `doc` under `heading`, up to the next heading
/// of the same level or above.
fn section(doc: &str, heading: &str) -> String {
    let level = heading.split(' ').next().unwrap().len();
    let mut lines = doc.lines().skip_while(|line| *line != heading);
    assert!(lines.next().is_some(), "no section `{heading}`");
    lines
        .take_while(|line| {
            let hashes = line.len() - line.trim_start_matches('#').len();
            !(1..=level).contains(&hashes) || !line[hashes..].starts_with(' ')
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_connection_limit_the_docs_name_is_a_host_flag_with_a_limits_row() {
    let root = wasmrpc_tests::workspace_root();
    let protocol = std::fs::read_to_string(root.join("PROTOCOL.md")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let closing = section(&protocol, "### 4.3 Connection-level errors and closing");
    let limits = section(&readme, "## Limits");
    let help = stdout(&cli(&["host", "--help"]));
    let named = flags_named(&closing);
    for flag in ["--hello-timeout", "--frame-timeout", "--idle-timeout"] {
        assert!(
            named.contains(&flag),
            "PROTOCOL.md §4.3 does not name {flag}"
        );
    }
    for flag in named {
        assert!(
            help.contains(&format!("{flag} <")),
            "PROTOCOL.md §4.3 names {flag}, which `wasmrpc host --help` does not have:\n{help}"
        );
        assert!(
            flags_named(&limits).contains(&flag),
            "PROTOCOL.md §4.3 names {flag}, which README's Limits table does not"
        );
    }
}
