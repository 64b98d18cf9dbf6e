//! The README's start command brings up every region of the sample
//! `regions.toml` on its own ports, with TLS and tokens; the tour, run with
//! the README's `export` lines, prints what the README says against it; and
//! Ctrl-C stops it all.
//!
//! This is the path a user takes: the command comes from the README's quick
//! start, runs in the repository root, and is stopped the way a terminal
//! stops it (SIGINT to its process group). So a README whose first command
//! does not start what the tour needs fails here. One thing differs: the
//! command gets `--out DIR`, so that the plugins, certificates, access file
//! and token it makes go to a temporary folder, never into the repository;
//! the tour runs in that folder as a user's shell runs in the repository
//! root.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use wasmrpc::config::Topology;
use wasmrpc_tests::{compile_cache_dir, eventually, wasmrpc_bin, workspace_root};

/// The variables through which `wasmrpc` finds a host, its CA, a token and
/// an access file: the start command and the tour see only those the README
/// sets.
const WASMRPC_VARIABLES: [&str; 4] = [
    "WASMRPC_HOST",
    "WASMRPC_CA",
    "WASMRPC_TOKEN",
    "WASMRPC_ACCESS",
];

/// How long the start command may take to build what it needs and start its
/// first host (a cold build of the host and the plugins).
const FIRST_HOST_TIMEOUT: Duration = Duration::from_secs(900);

/// How long the other hosts may take to follow the first one.
const OTHER_HOSTS_TIMEOUT: Duration = Duration::from_secs(30);

/// How long Ctrl-C may take to stop everything (the hosts drain for at most
/// 5 s, and nothing is in flight).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// One `$ wasmrpc ...` line of the README and the output printed under it.
struct Step {
    command: String,
    expected: String,
}

fn tour_steps(readme: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for block in readme.split("<!-- tour:start -->").skip(1) {
        let block = block
            .split("<!-- tour:end -->")
            .next()
            .expect("tour block ends");
        for line in block.lines() {
            if let Some(command) = line.strip_prefix("$ ") {
                steps.push(Step {
                    command: command.to_owned(),
                    expected: String::new(),
                });
            } else if !line.starts_with("```") && !line.is_empty() {
                let step = steps.last_mut().expect("output follows a command");
                step.expected.push_str(line);
                step.expected.push('\n');
            }
        }
    }
    steps
}

/// The start command: the first command of the first code block of the
/// README's "Quick start" section, split into words.
fn start_command(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## Quick start\n")
        .nth(1)
        .expect("the README has a `## Quick start` section");
    let section = section.split("\n## ").next().expect("split yields a part");
    let block = section
        .split("```")
        .nth(1)
        .expect("the quick start has a code block");
    block
        .lines()
        .skip(1) // the fence's info string, e.g. `sh`
        .map(shell_words)
        .find(|words| !words.is_empty())
        .expect("the quick start's code block has a command")
}

/// Splits a command line the way a POSIX shell does for what the README
/// uses: words separated by spaces, single and double quotes taken
/// literally (the README puts no variable in double quotes but what
/// [`substitute_cat`] replaces first), and a `#` starting a word begins a
/// comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    word.push(q);
                }
            }
            ' ' if in_word => {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            ' ' => {}
            '#' if !in_word => break,
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// `line` with each `$(cat FILE)`, in double quotes or not, replaced by what
/// a shell puts there: the content of FILE (relative to `dir`) without its
/// trailing newlines, here single-quoted so that it stays one word.
fn substitute_cat(line: &str, dir: &Path) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("$(cat ") {
        let (before, command) = rest.split_at(start);
        let end = command.find(')').expect("`$(cat FILE)` is closed");
        let file = dir.join(command["$(cat ".len()..end].trim());
        let content = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("`{line}` reads `{}`: {e}", file.display()));
        let content = content.trim_end_matches('\n');
        assert!(!content.contains('\''), "{} holds a quote", file.display());
        let quoted = before.ends_with('"') && command[end + 1..].starts_with('"');
        let before = if quoted {
            &before[..before.len() - 1]
        } else {
            before
        };
        out.push_str(before);
        out.push_str(&format!("'{content}'"));
        rest = &command[end + 1 + usize::from(quoted)..];
    }
    out.push_str(rest);
    out
}

/// The code blocks of the README's "A tour" section before its first
/// `tour:start` marker: how to set up the shell the tour runs in.
fn tour_setup(readme: &str) -> Vec<&str> {
    let section = readme
        .split("\n## A tour\n")
        .nth(1)
        .expect("the README has a `## A tour` section");
    let before = section
        .split("<!-- tour:start -->")
        .next()
        .expect("split yields a part");
    before.split("```").skip(1).step_by(2).collect()
}

/// The `export WASMRPC_...=VALUE` lines of the tour's setup, as written.
fn export_lines(readme: &str) -> Vec<&str> {
    tour_setup(readme)
        .into_iter()
        .flat_map(str::lines)
        .filter(|line| line.starts_with("export WASMRPC_"))
        .collect()
}

/// What the `export` lines set, as a shell in `dir` sets it.
fn exported(lines: &[&str], dir: &Path) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|line| {
            let (name, value) = line["export ".len()..]
                .split_once('=')
                .expect("`export NAME=VALUE`");
            let words = shell_words(&substitute_cat(value, dir));
            let [value] = <[String; 1]>::try_from(words)
                .unwrap_or_else(|words| panic!("`{line}` sets {words:?}, not one word"));
            (name.to_owned(), value)
        })
        .collect()
}

/// The `wasmrpc` lines of the tour's setup blocks (the flag form).
fn setup_commands(readme: &str) -> Vec<&str> {
    tour_setup(readme)
        .into_iter()
        .flat_map(str::lines)
        .filter(|line| line.starts_with("wasmrpc "))
        .collect()
}

/// The files of the repository that `wasmrpc up` makes, with their
/// modification times: a test that leaves them as they were wrote none.
fn generated_in(root: &Path) -> Vec<(PathBuf, Option<SystemTime>)> {
    let mut files = vec![root.join("access.toml")];
    if let Ok(entries) = std::fs::read_dir(root.join("certs")) {
        files.extend(entries.map(|entry| entry.expect("read certs/").path()));
    }
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
            (file, modified)
        })
        .collect()
}

/// Variables `cargo test` sets for a test process that describe this test
/// crate, not the user's shell; the start command runs without them.
///
/// None of them changes a fingerprint of the nested builds (measured: with
/// the whole environment of `cargo test`, the nested `cargo build` of the
/// host and the plugins found everything fresh), but the command should see
/// what a user's shell has. `CARGO_HOME`, `CARGO_TARGET_DIR`, `RUSTUP_*` and
/// the like stay: they are the user's, and the outer build used them too.
fn is_test_only_variable(name: &str) -> bool {
    name == "CARGO" || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_")
}

/// The start command running in its own process group, with its output
/// collected; the whole group and every host are killed when dropped, so a
/// failing test leaves nothing running.
struct Demo {
    child: Child,
    /// Every line printed so far, stdout and stderr interleaved.
    transcript: Arc<Mutex<Vec<String>>>,
    lines: Receiver<String>,
    exit: Option<ExitStatus>,
}

impl Demo {
    /// Runs `words` with `--out out` in `root`.
    fn start(words: &[String], root: &Path, out: &Path) -> Demo {
        let mut command = Command::new(&words[0]);
        command
            .args(&words[1..])
            .arg("--out")
            .arg(out)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_test_only_variable) {
                command.env_remove(name);
            }
        }
        for name in WASMRPC_VARIABLES {
            command.env_remove(name);
        }
        // The hosts share the tests' compile cache rather than the user's.
        command.env("WASMRPC_COMPILE_CACHE", compile_cache_dir());
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
            // The command dies with the test thread, even if the test is
            // killed; its hosts die with it (`wasmrpc up` sets the same).
            // SAFETY: the closure runs in the forked child before exec,
            // where only async-signal-safe calls are allowed; prctl(2) is
            // one, takes integer arguments and touches no memory of ours.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", words.join(" ")));
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        collect(child.stdout.take().expect("piped"), &transcript, tx.clone());
        collect(child.stderr.take().expect("piped"), &transcript, tx);
        Demo {
            child,
            transcript,
            lines,
            exit: None,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether a line printed so far is `line`.
    fn printed(&self, line: &str) -> bool {
        self.transcript.lock().unwrap().iter().any(|l| l == line)
    }

    /// The last lines printed, for failure messages.
    fn tail(&self) -> String {
        let transcript = self.transcript.lock().unwrap();
        let start = transcript.len().saturating_sub(60);
        transcript[start..].join("\n")
    }

    /// Waits until a host listens on every one of `addresses` (from the
    /// hosts' `... listening on ADDR` lines).
    fn wait_until_listening(&mut self, command: &str, addresses: &[String]) {
        let started = Instant::now();
        let mut first: Option<Instant> = None;
        let mut listening = Vec::new();
        while !addresses.iter().all(|a| listening.contains(a)) {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let address = line
                    .split_once(" listening on ")
                    .and_then(|(_, rest)| rest.split_whitespace().next());
                if let Some(address) = address {
                    listening.push(address.to_owned());
                    first.get_or_insert_with(Instant::now);
                }
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(status);
                panic!(
                    "the README's start command `{command}` exited ({status}) before hosts \
                     listened on all of {addresses:?} (listening: {listening:?}); its output \
                     ends with:\n{}",
                    self.tail()
                );
            }
            let late = match first {
                None => started.elapsed() > FIRST_HOST_TIMEOUT,
                Some(first) => first.elapsed() > OTHER_HOSTS_TIMEOUT,
            };
            assert!(
                !late,
                "the README's start command `{command}` must start every host of the sample \
                 regions.toml, {addresses:?}, but after {:.1?} hosts listen only on \
                 {listening:?}; its output ends with:\n{}",
                started.elapsed(),
                self.tail()
            );
        }
    }

    /// Ctrl-C as a terminal sends it: SIGINT to the whole process group.
    /// Returns the command's exit status.
    fn interrupt(&mut self) -> ExitStatus {
        // SAFETY: kill(2) takes plain integers and touches no memory, so
        // the call is sound for any id. This group is the one our unreaped
        // child leads (started with `process_group(0)`), so it names no
        // one else's processes.
        let rc = unsafe { libc::kill(-self.pid(), libc::SIGINT) };
        assert_eq!(rc, 0, "cannot signal the process group");
        let child = &mut self.child;
        let mut exit = None;
        eventually(STOP_TIMEOUT, || {
            exit = child.try_wait().expect("try_wait");
            exit.is_some()
        });
        if let Some(status) = exit {
            self.exit = Some(status);
            return status;
        }
        panic!(
            "the start command did not stop within {STOP_TIMEOUT:?} of Ctrl-C; its output ends \
             with:\n{}",
            self.tail()
        );
    }

    /// Whether any process is left in the command's process group.
    fn group_alive(&self) -> bool {
        // SAFETY: kill(2) takes plain integers and touches no memory, and
        // signal 0 delivers nothing: it only asks whether the group exists.
        unsafe { libc::kill(-self.pid(), 0) == 0 }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.exit.is_some() && !self.group_alive() {
            return;
        }
        let hosts = descendants(self.pid());
        // SAFETY: kill(2) takes plain integers and touches no memory, so
        // the calls are sound for any id. The group id cannot be reused
        // while the group has a member (our child, not reaped until the
        // wait below); the descendants were read from /proc just now, as
        // children of live processes of ours.
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
            for pid in hosts {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

/// Reads `output` line by line into `transcript` and `lines`.
fn collect(
    output: impl Read + Send + 'static,
    transcript: &Arc<Mutex<Vec<String>>>,
    lines: Sender<String>,
) {
    let transcript = Arc::clone(transcript);
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            transcript.lock().unwrap().push(line.clone());
            let _ = lines.send(line);
        }
    });
}

/// Every process descended from `root` (not `root` itself), from `/proc`.
fn descendants(root: i32) -> Vec<i32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: kill(2) takes plain integers and touches no memory, and
    // signal 0 delivers nothing: it only asks whether the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn port_free(address: &str) -> bool {
    TcpListener::bind(address).is_ok()
}

/// `wasmrpc ARGS`, run in `dir` with the tour's variables `env` and no
/// other `WASMRPC_` variable.
fn wasmrpc(args: &[String], dir: &Path, env: &[(String, String)]) -> std::process::Output {
    let mut command = Command::new(wasmrpc_bin());
    command.args(args).current_dir(dir);
    for name in WASMRPC_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(name, value)| (name, value)));
    command.output().unwrap()
}

/// What `out` printed, stdout then stderr.
fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until the host at `addr` lists `function` served by `regions` to
/// `wasmrpc list`, run as the tour runs it.
fn wait_for_catalog(
    addr: &str,
    function: &str,
    regions: &[&str],
    dir: &Path,
    env: &[(String, String)],
) {
    let args = ["list", "--json", "--host", addr].map(String::from);
    let mut last = String::new();
    let listed = eventually(Duration::from_secs(10), || {
        let out = wasmrpc(&args, dir, env);
        last = printed(&out);
        let catalog: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_default();
        catalog
            .iter()
            .any(|f| f["name"] == function && f["regions"] == serde_json::json!(regions))
    });
    assert!(
        listed,
        "{addr} never listed {function} in {regions:?}; `wasmrpc list` last printed:\n{last}"
    );
}

#[test]
fn the_readme_start_command_brings_up_every_region_the_tour_works_and_ctrl_c_stops_it() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let words = start_command(&readme);
    let command = words.join(" ");
    let topology = Topology::from_file(&root.join("regions.toml")).unwrap();
    let addresses: Vec<String> = topology
        .regions
        .iter()
        .flat_map(|region| region.hosts.iter().cloned())
        .collect();
    for address in &addresses {
        assert!(
            port_free(address),
            "`{address}` is in use, but the README test runs `{command}` on the ports of the \
             sample regions.toml, {addresses:?}: stop whatever holds it (a demo still \
             running?) and run the test again"
        );
    }

    let repository_files = generated_in(root);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path();
    let started = Instant::now();
    let mut demo = Demo::start(&words, root, dir);
    demo.wait_until_listening(&command, &addresses);
    let listening = started.elapsed();

    // The README's exports are the ones `wasmrpc up` printed, and a shell
    // that runs them calls with the CA and the token `up` made.
    let exports = export_lines(&readme);
    for line in &exports {
        assert!(
            eventually(Duration::from_secs(5), || demo
                .printed(&format!("  {line}"))),
            "the README's `{line}` is not what `{command}` printed; its output ends \
             with:\n{}",
            demo.tail()
        );
    }
    let env = exported(&exports, dir);
    let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["WASMRPC_CA", "WASMRPC_TOKEN"]);
    assert_eq!(env[0].1, "certs/ca.crt");
    assert!(env[1].1.starts_with("wrpc_"), "{:?}", env[1]);

    // The tour's host (README: "Every command below talks to the `eu-west`
    // host at `127.0.0.1:7101`") and the hosts its calls go through.
    let eu = "127.0.0.1:7101";
    wait_for_catalog(eu, "inventory.stock.reserve", &["ap-south"], dir, &env);
    wait_for_catalog(eu, "orders.place", &["us-east"], dir, &env);
    wait_for_catalog(eu, "math.add", &["eu-west", "us-east"], dir, &env);
    wait_for_catalog(eu, "pygreeter.visit", &["us-east"], dir, &env);
    wait_for_catalog(eu, "jsgreeter.visit", &["ap-south"], dir, &env);
    for us in ["127.0.0.1:7201", "127.0.0.1:7202"] {
        wait_for_catalog(us, "inventory.stock.reserve", &["ap-south"], dir, &env);
        wait_for_catalog(us, "greeter.greet", &["eu-west"], dir, &env);
    }
    wait_for_catalog("127.0.0.1:7301", "greeter.greet", &["eu-west"], dir, &env);
    let linked = started.elapsed();

    let steps = tour_steps(&readme);
    assert_eq!(steps.len(), 25, "the README tour has 25 commands");
    for step in &steps {
        let words = shell_words(&step.command);
        assert_eq!(
            words[0], "wasmrpc",
            "tour commands run wasmrpc: {}",
            step.command
        );
        let out = wasmrpc(&words[1..], dir, &env);
        assert_eq!(
            printed(&out),
            step.expected,
            "`{}` printed something else",
            step.command
        );
        let expected_code = if step.expected.starts_with("error[") {
            1
        } else {
            0
        };
        assert_eq!(out.status.code(), Some(expected_code), "`{}`", step.command);
    }

    // The flag form, without the variables, prints what the tour says the
    // same call prints; without them or the flags, the host refuses.
    let flagged = setup_commands(&readme);
    assert_eq!(flagged.len(), 1, "one flag form: {flagged:?}");
    let words = shell_words(&substitute_cat(flagged[0], dir));
    let mut call = Vec::new();
    let mut rest = words[1..].iter();
    while let Some(word) = rest.next() {
        match word.as_str() {
            "--ca" | "--token" => assert!(rest.next().is_some(), "{word} has a value"),
            _ => call.push(word.clone()),
        }
    }
    let same = steps
        .iter()
        .find(|step| shell_words(&step.command)[1..] == call[..])
        .unwrap_or_else(|| panic!("the tour has no `wasmrpc {}`", call.join(" ")));
    let out = wasmrpc(&words[1..], dir, &[]);
    assert_eq!(printed(&out), same.expected, "`{}`", flagged[0]);
    assert_eq!(out.status.code(), Some(0), "`{}`", flagged[0]);
    let out = wasmrpc(&call, dir, &env[..1]);
    assert_eq!(
        printed(&out),
        "error[unauthenticated]: `127.0.0.1:7101` refused the connection: this host requires \
         a token in `hello` (the CLI's --token, or WASMRPC_TOKEN)\n  processed: no\n"
    );
    let toured = started.elapsed();

    let processes = descendants(demo.pid());
    assert!(
        processes.len() >= addresses.len(),
        "`{command}` should run a process per host; found {processes:?}"
    );
    let status = demo.interrupt();
    assert_eq!(
        status.code(),
        Some(0),
        "`{command}` stops every host gracefully on Ctrl-C; its output ends with:\n{}",
        demo.tail()
    );
    assert!(!demo.group_alive(), "processes of `{command}` outlived it");
    assert!(
        eventually(Duration::from_secs(5), || !processes
            .iter()
            .any(|&pid| process_exists(pid))),
        "hosts started by `{command}` outlived it: {:?}",
        processes
            .iter()
            .filter(|&&pid| process_exists(pid))
            .collect::<Vec<_>>()
    );
    for address in &addresses {
        assert!(
            eventually(Duration::from_secs(5), || port_free(address)),
            "`{address}` is still in use after `{command}` stopped"
        );
    }
    for made in ["certs/ca.crt", "certs/eu-west.key", "access.toml"] {
        assert!(dir.join(made).is_file(), "`{command}` did not make {made}");
    }
    assert_eq!(
        generated_in(root),
        repository_files,
        "`{command}` wrote certificates or tokens into the repository"
    );
    eprintln!(
        "`{command}`: all hosts listening after {listening:.1?}, catalogs linked after \
         {linked:.1?}, tour done after {toured:.1?}, stopped after {:.1?}",
        started.elapsed()
    );
}

#[test]
fn the_start_command_is_the_first_command_of_the_quick_start() {
    let readme = "# x\n\n## Quick start\n\nText.\n\n```sh\n\ncargo xtask demo   # start it\n\
                  cargo test --workspace\n```\n\n## A tour\n\n```sh\nwasmrpc list\n```\n";
    assert_eq!(start_command(readme), vec!["cargo", "xtask", "demo"]);
}

#[test]
fn shell_words_keep_quoted_json_whole() {
    assert_eq!(
        shell_words(r#"wasmrpc call greeter.area '{"rectangle": [2, 3.5]}' 2"#),
        vec![
            "wasmrpc",
            "call",
            "greeter.area",
            r#"{"rectangle": [2, 3.5]}"#,
            "2"
        ]
    );
    assert_eq!(
        shell_words("cargo xtask demo   # build and start"),
        vec!["cargo", "xtask", "demo"]
    );
    assert_eq!(shell_words("echo '#1' a#b"), vec!["echo", "#1", "a#b"]);
}

#[test]
fn the_tour_setup_evaluates_as_a_shell_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/tour.token"), "wrpc_abc\n\n").unwrap();
    let readme = "# x\n\n## A tour\n\n```sh\nexport PATH=\"$PWD/target/debug:$PATH\"\n\
                  export WASMRPC_CA=certs/ca.crt\nexport WASMRPC_TOKEN=$(cat certs/tour.token)\n\
                  ```\n\n```sh\nwasmrpc call --token \"$(cat certs/tour.token)\" math.add 2 3\n```\n\n\
                  <!-- tour:start -->\n```console\n$ wasmrpc call math.add 2 3\n5\n```\n";
    let lines = export_lines(readme);
    assert_eq!(
        lines,
        [
            "export WASMRPC_CA=certs/ca.crt",
            "export WASMRPC_TOKEN=$(cat certs/tour.token)"
        ]
    );
    assert_eq!(
        exported(&lines, dir.path()),
        [
            ("WASMRPC_CA".to_owned(), "certs/ca.crt".to_owned()),
            ("WASMRPC_TOKEN".to_owned(), "wrpc_abc".to_owned())
        ]
    );
    let flagged = setup_commands(readme);
    assert_eq!(
        shell_words(&substitute_cat(flagged[0], dir.path())),
        [
            "wasmrpc", "call", "--token", "wrpc_abc", "math.add", "2", "3"
        ]
    );
}
