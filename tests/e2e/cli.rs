//! `wasmrpc call` and `wasmrpc list` against a running host, and `wasmrpc
//! up` starting the hosts of a topology with what they need to serve TLS
//! and tokens.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmrpc::auth::access::Access;
use wasmrpc_tests::{HostProcess, cli, eventually, free_addr, install_guest};

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
        ("call", &["--host", "--ca", "--token", "--timeout"][..]),
        ("list", &["--host", "--ca", "--token", "--json"][..]),
        ("up", &["--config", "--access"][..]),
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

/// `wasmrpc up` running in a folder, its stdout and stderr read line by
/// line; killed when dropped (its hosts follow it: `up` asks the kernel to
/// stop them when it dies).
struct Up {
    child: Child,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Up {
    /// `wasmrpc up ARGS` in `dir`, with no `WASMRPC_` variable.
    fn start(dir: &Path, args: &[&str]) -> Up {
        let mut command = Command::new(wasmrpc_tests::wasmrpc_bin());
        command
            .arg("up")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in WASMRPC_VARIABLES {
            command.env_remove(name);
        }
        // SAFETY: the closure runs in the forked child before exec, where
        // only async-signal-safe calls are allowed; prctl(2) is one, takes
        // integer arguments and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("run wasmrpc up");
        let (tx, stdout) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("piped");
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        Up {
            child,
            stdout,
            stderr,
        }
    }

    /// `up`'s own stdout lines (not its hosts', which start with `[`) up to
    /// and including `last`, with dates shown as `DATE`.
    fn own_lines_until(&mut self, last: &str) -> Vec<String> {
        let deadline = Instant::now() + UP_TIMEOUT;
        let mut lines = Vec::new();
        while lines.last().map(String::as_str) != Some(last) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "`wasmrpc up` did not print `{last}` within {UP_TIMEOUT:?}; it printed \
                     {lines:#?}\nand on stderr:\n{}",
                    self.stderr.lock().unwrap().join("\n")
                )
            });
            if line.starts_with('[') {
                continue;
            }
            lines.push(match line.rsplit_once(" until ") {
                Some((head, _)) => format!("{head} until DATE"),
                None => line,
            });
        }
        lines
    }

    /// SIGTERM, as a service manager stops it; returns its exit code.
    fn stop(&mut self) -> Option<i32> {
        // SAFETY: kill(2) takes plain integers and touches no memory; the
        // pid is our unreaped child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut code = None;
        let stopped = eventually(Duration::from_secs(15), || {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => {
                    code = status.code();
                    true
                }
                None => false,
            }
        });
        assert!(stopped, "`wasmrpc up` did not stop within 15 s of SIGTERM");
        code
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long `up` may take to make its files and start its hosts.
const UP_TIMEOUT: Duration = Duration::from_secs(120);

/// The variables through which the CLI finds a host, its CA, a token and an
/// access file.
const WASMRPC_VARIABLES: [&str; 4] = [
    "WASMRPC_HOST",
    "WASMRPC_CA",
    "WASMRPC_TOKEN",
    "WASMRPC_ACCESS",
];

/// A folder holding `regions.toml` with region `a` (serving `math`) and
/// region `b` (serving `inventory`), one host each on a free port, and
/// `tls` appended to the file; returns it with the two addresses.
fn two_regions(tls: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_addr().to_string(), free_addr().to_string());
    for (region, guest) in [("a", "math"), ("b", "inventory")] {
        let folder = dir.path().join("plugins").join(region);
        std::fs::create_dir_all(&folder).unwrap();
        install_guest(guest, &folder);
    }
    let topology = format!(
        "[[region]]\nname = \"a\"\nhosts = [\"{a}\"]\nplugins = \"plugins/a\"\n\n\
         [[region]]\nname = \"b\"\nhosts = [\"{b}\"]\nplugins = \"plugins/b\"\n\n{tls}"
    );
    std::fs::write(dir.path().join("regions.toml"), topology).unwrap();
    (dir, a, b)
}

const TLS: &str =
    "[tls]\nca = \"certs/ca.crt\"\ntrust_domain = \"wasmrpc.local\"\ncerts = \"certs\"\n";

/// `wasmrpc ARGS` in `dir` with exactly the variables `env`.
fn wasmrpc_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(wasmrpc_tests::wasmrpc_bin());
    command.args(args).current_dir(dir);
    for name in WASMRPC_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().expect("run wasmrpc")
}

/// Waits until the host at `host` lists the functions of `plugin` as served
/// by `region` alone: its link to `region` is up.
fn wait_for_link(dir: &Path, env: &[(&str, &str)], host: &str, plugin: &str, region: &str) {
    let mut last = String::new();
    let linked = eventually(Duration::from_secs(10), || {
        let out = wasmrpc_in(dir, env, &["list", "--host", host, plugin]);
        last = format!("{}{}", stdout(&out), stderr(&out));
        !stdout(&out).is_empty()
            && stdout(&out)
                .lines()
                .all(|line| line.ends_with(&format!("  [{region}]")))
    });
    assert!(
        linked,
        "{host} never listed `{plugin}` in [{region}]; `wasmrpc list` last printed:\n{last}"
    );
}

const RESERVED: &str = "{\"sku\":\"sku-1\",\"quantity\":2,\"warehouse\":\"lisbon\",\"reservation-id\":\"R-sku-1-2\"}\n";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn up_makes_certificates_and_a_token_and_its_hosts_serve_callers_that_export_them() {
    let (dir, a, b) = two_regions(TLS);
    let dir = dir.path();
    let mut up = Up::start(dir, &[]);
    let exports = "  export WASMRPC_TOKEN=$(cat certs/tour.token)";
    assert_eq!(
        up.own_lines_until(exports),
        [
            "wasmrpc up: made development certificates as `wasmrpc certs` does:",
            "  wrote certs/ca.key",
            "  wrote certs/ca.crt: the CA, valid until DATE",
            "  wrote certs/a.key",
            "  wrote certs/a.crt: spiffe://wasmrpc.local/wasmrpc/region/a, valid until DATE",
            "  wrote certs/b.key",
            "  wrote certs/b.crt: spiffe://wasmrpc.local/wasmrpc/region/b, valid until DATE",
            "wasmrpc up: made token `tour` for every function: its digest in `access.toml`, the token in `certs/tour.token`",
            "wasmrpc up: all 2 hosts listening (Ctrl-C stops them):",
            &format!("  a  {a} (3 functions from 1 plugins)"),
            &format!("  b  {b} (1 functions from 1 plugins)"),
            "wasmrpc up: to call them from another shell:",
            "  export WASMRPC_CA=certs/ca.crt",
            exports,
        ]
    );

    // The token: in a file only its owner reads, and in the access file as
    // its digest, allowed every function.
    let token_file = dir.join("certs/tour.token");
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(&dir.join("certs/ca.key")), 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.strip_suffix('\n').unwrap();
    assert_eq!(token.len(), "wrpc_".len() + 64, "{token}");
    let access = std::fs::read_to_string(dir.join("access.toml")).unwrap();
    assert!(!access.contains(token));
    let grant = Access::from_str(&access)
        .unwrap()
        .authenticate(token)
        .unwrap();
    assert_eq!(grant.name(), "tour");
    let patterns: Vec<&str> = grant.patterns().iter().map(|p| p.as_str()).collect();
    assert_eq!(patterns, ["*"]);

    // What the summary exports is what a caller needs, across regions too:
    // `b` answers `a` over mutual TLS with the certificates `up` made.
    let env = [("WASMRPC_CA", "certs/ca.crt"), ("WASMRPC_TOKEN", token)];
    wait_for_link(dir, &env, &a, "inventory", "b");
    let out = wasmrpc_in(
        dir,
        &env,
        &[
            "call",
            "--host",
            &a,
            "inventory.stock.reserve",
            "\"sku-1\"",
            "2",
        ],
    );
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        (RESERVED, Some(0))
    );
    let out = wasmrpc_in(
        dir,
        &[],
        &[
            "call",
            "--host",
            &a,
            "--ca",
            "certs/ca.crt",
            "--token",
            token,
            "math.add",
            "2",
            "3",
        ],
    );
    assert_eq!((stdout(&out).as_str(), out.status.code()), ("5\n", Some(0)));

    // Without the token, or without the CA, the host refuses.
    let out = wasmrpc_in(
        dir,
        &env[..1],
        &["call", "--host", &a, "math.add", "2", "3"],
    );
    assert_eq!(
        stderr(&out),
        format!(
            "error[unauthenticated]: `{a}` refused the connection: this host requires a token \
             in `hello` (the CLI's --token, or WASMRPC_TOKEN)\n  processed: no\n"
        )
    );
    let out = wasmrpc_in(
        dir,
        &env[1..],
        &["call", "--host", &a, "math.add", "2", "3"],
    );
    assert_eq!(
        stderr(&out),
        format!(
            "error[unauthenticated]: `{a}` refused the connection: this host accepts TLS \
             connections only: connect with TLS, trusting the cluster CA\n  processed: no\n"
        )
    );
    assert_eq!(up.stop(), Some(0));
    assert!(up.stderr.lock().unwrap().contains(
        &"wasmrpc up: started 2 hosts from `regions.toml`; Ctrl-C stops them".to_owned()
    ));
}

#[test]
fn up_keeps_the_ca_and_the_token_and_issues_only_a_missing_certificate() {
    let (dir, a, b) = two_regions(TLS);
    let dir = dir.path();
    assert_eq!(
        wasmrpc_in(dir, &[], &["certs", "--config", "regions.toml"])
            .status
            .code(),
        Some(0)
    );
    let token = wasmrpc_in(
        dir,
        &[],
        &[
            "token",
            "new",
            "--name",
            "tour",
            "--functions",
            "*",
            "--access",
            "access.toml",
        ],
    );
    let token = stdout(&token);
    std::fs::write(dir.join("certs/tour.token"), &token).unwrap();
    std::fs::remove_file(dir.join("certs/b.crt")).unwrap();
    let kept = [
        "certs/ca.crt",
        "certs/ca.key",
        "certs/a.crt",
        "certs/a.key",
        "access.toml",
    ]
    .map(|file| (file, std::fs::read(dir.join(file)).unwrap()));

    let mut up = Up::start(dir, &["--config", "regions.toml"]);
    let exports = "  export WASMRPC_TOKEN=$(cat certs/tour.token)";
    assert_eq!(
        up.own_lines_until(exports),
        [
            "wasmrpc up: made development certificates as `wasmrpc certs` does:",
            "  wrote certs/b.key",
            "  wrote certs/b.crt: spiffe://wasmrpc.local/wasmrpc/region/b, valid until DATE",
            "wasmrpc up: all 2 hosts listening (Ctrl-C stops them):",
            &format!("  a  {a} (3 functions from 1 plugins)"),
            &format!("  b  {b} (1 functions from 1 plugins)"),
            "wasmrpc up: to call them from another shell:",
            "  export WASMRPC_CA=certs/ca.crt",
            exports,
        ]
    );
    for (file, content) in kept {
        assert_eq!(std::fs::read(dir.join(file)).unwrap(), content, "{file}");
    }
    // `b`'s new certificate chains to the kept CA: `a` links to it.
    let env = [
        ("WASMRPC_CA", "certs/ca.crt"),
        ("WASMRPC_TOKEN", token.trim_end()),
    ];
    wait_for_link(dir, &env, &a, "inventory", "b");
    let out = wasmrpc_in(
        dir,
        &env,
        &[
            "call",
            "--host",
            &a,
            "inventory.stock.reserve",
            "\"sku-1\"",
            "2",
        ],
    );
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        (RESERVED, Some(0))
    );
    assert_eq!(up.stop(), Some(0));
}

#[test]
fn up_gives_every_host_the_access_file_it_is_given_and_makes_no_token() {
    let (dir, a, b) = two_regions(TLS);
    let dir = dir.path();
    assert_eq!(
        wasmrpc_in(dir, &[], &["certs", "--config", "regions.toml"])
            .status
            .code(),
        Some(0)
    );
    let token = wasmrpc_in(
        dir,
        &[],
        &[
            "token",
            "new",
            "--name",
            "ci",
            "--functions",
            "math.*",
            "--access",
            "ci.toml",
        ],
    );
    let token = stdout(&token);
    let token = token.trim_end();

    let mut up = Up::start(dir, &["--access", "ci.toml"]);
    let exports =
        "  export WASMRPC_TOKEN=$(wasmrpc token new --name NAME --functions '*' --access ci.toml)";
    assert_eq!(
        up.own_lines_until(exports),
        [
            "wasmrpc up: all 2 hosts listening (Ctrl-C stops them):",
            &format!("  a  {a} (3 functions from 1 plugins)"),
            &format!("  b  {b} (1 functions from 1 plugins)"),
            "wasmrpc up: to call them from another shell:",
            "  export WASMRPC_CA=certs/ca.crt",
            exports,
        ]
    );
    assert!(!dir.join("access.toml").exists());
    assert!(!dir.join("certs/tour.token").exists());

    // `b` checks the token against the file and forwards what it allows.
    let env = [("WASMRPC_CA", "certs/ca.crt"), ("WASMRPC_TOKEN", token)];
    wait_for_link(dir, &env, &b, "math", "a");
    let out = wasmrpc_in(dir, &env, &["call", "--host", &b, "math.add", "2", "3"]);
    assert_eq!(
        (
            stdout(&out).as_str(),
            stderr(&out).as_str(),
            out.status.code()
        ),
        ("5\n", "", Some(0))
    );
    // Each host refuses what `ci` may not call, `b` even though it serves it.
    for (host, region) in [(&a, "a"), (&b, "b")] {
        let out = wasmrpc_in(
            dir,
            &env,
            &[
                "call",
                "--host",
                host,
                "inventory.stock.reserve",
                "\"sku-1\"",
                "2",
            ],
        );
        assert_eq!(
            stderr(&out),
            format!(
                "error[permission_denied]: token `ci` may not call `inventory.stock.reserve`\n  \
                 region: {region}, processed: no\n"
            )
        );
    }
    assert_eq!(up.stop(), Some(0));
}

#[test]
fn up_without_tls_makes_no_file_and_its_hosts_serve_plaintext_on_loopback() {
    let (dir, a, b) = two_regions("");
    let dir = dir.path();
    let mut up = Up::start(dir, &[]);
    let last = format!("  b  {b} (1 functions from 1 plugins)");
    assert_eq!(
        up.own_lines_until(&last),
        [
            "wasmrpc up: all 2 hosts listening (Ctrl-C stops them):".to_owned(),
            format!("  a  {a} (3 functions from 1 plugins)"),
            last.clone(),
        ]
    );
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["plugins", "regions.toml"]);
    wait_for_link(dir, &[], &a, "inventory", "b");
    let out = wasmrpc_in(
        dir,
        &[],
        &[
            "call",
            "--host",
            &a,
            "inventory.stock.reserve",
            "\"sku-1\"",
            "2",
        ],
    );
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        (RESERVED, Some(0))
    );
    assert_eq!(up.stop(), Some(0));
}
