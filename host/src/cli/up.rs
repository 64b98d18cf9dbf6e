//! `wasmrpc up`: every host of `regions.toml` as a child process, with
//! prefixed output, stopped together.
//!
//! Each host runs in a process group of its own, so that a terminal's Ctrl-C
//! (SIGINT to the whole foreground process group) reaches `up` alone, which
//! passes one SIGTERM to each host. Were the hosts in `up`'s group, each
//! would get the terminal's SIGINT and then `up`'s SIGTERM, and take that
//! second signal as "exit now, without draining". A second Ctrl-C is passed
//! on the same way, and then means just that.
//!
//! Before starting them, `up` makes what a first run lacks, so that the quick
//! start serves with TLS and tokens from a fresh clone: the development
//! certificates of the file's `[tls]` table (as `wasmrpc certs` does), and an
//! access file holding one token, `tour`, for every function, whose token it
//! keeps beside the certificates. Only with `[tls]`: a host that checks
//! tokens accepts its peers over mutual TLS only, so without it the hosts of
//! a topology could not link.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{certs, token};
use crate::auth::access::{self, Access};
use crate::config::Topology;
use crate::pattern::Pattern;

/// What a host prints on stdout once it serves, before its address.
const LISTENING: &str = " listening on ";

/// The access file `up` uses when given none, beside the config file.
const DEFAULT_ACCESS: &str = "access.toml";

/// The name of the token `up` makes with the default access file.
const TOUR: &str = "tour";

/// The file `up` keeps that token in, beside the certificates.
const TOUR_FILE: &str = "tour.token";

/// The flags of `up`.
#[derive(Debug, clap::Args)]
pub(super) struct UpArgs {
    /// The topology file. When it has a `[tls]` table, a CA certificate or
    /// a region's certificate that is missing is made first, as `wasmrpc
    /// certs` makes it.
    #[arg(long, default_value = "regions.toml")]
    config: PathBuf,
    /// The access file every host checks callers' tokens against. Default,
    /// when the config file has a `[tls]` table: `access.toml` beside it,
    /// made when missing with one token, `tour`, for every function, kept in
    /// `tour.token` beside the certificates. Without `[tls]` and this flag,
    /// hosts check no token.
    #[arg(long, env = "WASMRPC_ACCESS")]
    access: Option<PathBuf>,
}

pub(super) async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let UpArgs { config, access } = args;
    let topology = Topology::from_file(&config)?;
    topology.validate()?;
    let mut made = Vec::new();
    certs::issue_missing(&topology, &mut made)?;
    if !made.is_empty() {
        println!("wasmrpc up: made development certificates as `wasmrpc certs` does:");
        for line in String::from_utf8_lossy(&made).lines() {
            println!("  {line}");
        }
    }
    let callers = Callers::prepare(&topology, access, &mut std::io::stdout().lock())?;
    let exe = std::env::current_exe().context("cannot find the wasmrpc executable")?;

    let mut hosts = Vec::new();
    let mut pids = Vec::new();
    let mut exits = JoinSet::new();
    let (listening_tx, mut listening_rx) = mpsc::unbounded_channel();
    for region in &topology.regions {
        for host in &region.hosts {
            let prefix = format!("[{} {host}]", region.name);
            let mut command = Command::new(&exe);
            command
                .args([
                    "host",
                    "--region",
                    &region.name,
                    "--listen",
                    host,
                    "--config",
                ])
                .arg(&config);
            if let Some(access) = &callers.access {
                command.arg("--access").arg(access);
            }
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true);
            // The hosts die with `up`, even if it is killed.
            // SAFETY: prctl is async-signal-safe and touches no memory.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let mut child = command
                .spawn()
                .with_context(|| format!("cannot start the host {prefix}"))?;
            if let Some(pid) = child.id() {
                pids.push(pid);
            }
            let stdout = child.stdout.take().expect("piped stdout");
            let stderr = child.stderr.take().expect("piped stderr");
            let listening = (hosts.len(), listening_tx.clone());
            tokio::spawn(relay(stdout, prefix.clone(), Some(listening)));
            tokio::spawn(relay(stderr, prefix.clone(), None));
            exits.spawn(async move { (prefix, child.wait().await) });
            hosts.push((region.name.as_str(), None));
        }
    }
    drop(listening_tx);
    eprintln!(
        "wasmrpc up: started {} hosts from `{}`; Ctrl-C stops them",
        pids.len(),
        config.display()
    );

    let mut failed = false;
    let signal = super::wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            result = &mut signal => {
                result?;
                break;
            }
            Some(exit) = exits.join_next() => {
                let (prefix, status) = exit.context("host watcher failed")?;
                eprintln!("{prefix} exited unexpectedly ({}); stopping the others", describe(&status));
                failed = true;
                break;
            }
            Some((index, address)) = listening_rx.recv() => {
                hosts[index].1 = Some(address);
                if hosts.iter().all(|(_, address)| address.is_some()) {
                    print_listening(&hosts);
                    if !callers.exports.is_empty() {
                        println!("wasmrpc up: to call them from another shell:");
                        for line in &callers.exports {
                            println!("  {line}");
                        }
                    }
                }
            }
        }
    }
    terminate(&pids);
    let second = super::wait_for_signal();
    tokio::pin!(second);
    let mut forced = false;
    loop {
        tokio::select! {
            exit = exits.join_next() => {
                let Some(exit) = exit else { break };
                let (prefix, status) = exit.context("host watcher failed")?;
                let ok = matches!(&status, Ok(s) if s.success());
                failed |= !ok;
                eprintln!("{prefix} stopped ({})", describe(&status));
            }
            result = &mut second, if !forced => {
                result?;
                eprintln!("wasmrpc up: second signal: stopping the hosts without draining");
                terminate(&pids);
                forced = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The access file the hosts check tokens against, and what a caller's
/// shell needs to call them.
#[derive(Debug)]
struct Callers {
    access: Option<PathBuf>,
    /// `export WASMRPC_CA=...` with `[tls]`, and with an access file
    /// `export WASMRPC_TOKEN=...`: reading the `tour` token's file when the
    /// access file accepts that token, else making a token with `wasmrpc
    /// token new`.
    exports: Vec<String>,
}

impl Callers {
    /// Picks the access file: `access`, or with `[tls]` the default one,
    /// made when missing with the `tour` token (saying so on `out`). Checks
    /// that it is a valid access file, so that a bad one stops `up` before
    /// any host.
    ///
    /// # Errors
    ///
    /// When a file cannot be read or written, or the access file is invalid.
    fn prepare(
        topology: &Topology,
        access: Option<PathBuf>,
        out: &mut dyn Write,
    ) -> anyhow::Result<Callers> {
        let default = topology.base_dir.join(DEFAULT_ACCESS);
        let token_file = topology
            .certs_dir()
            .unwrap_or_else(|| topology.base_dir.clone())
            .join(TOUR_FILE);
        let access = match access {
            Some(access) => access,
            None if topology.tls.is_none() => {
                return Ok(Callers {
                    access: None,
                    exports: Vec::new(),
                });
            }
            None if default.exists() => default,
            None => {
                make_tour_token(&default, &token_file)?;
                writeln!(
                    out,
                    "wasmrpc up: made token `{TOUR}` for every function: its digest in `{}`, the token in `{}`",
                    default.display(),
                    token_file.display()
                )?;
                default
            }
        };
        let accepted = Access::from_file(&access)?;
        let mut exports = Vec::new();
        if let Some(tls) = &topology.tls {
            let ca = topology.base_dir.join(&tls.ca);
            exports.push(format!("export WASMRPC_CA={}", shell_word(&ca)));
        }
        let tour = std::fs::read_to_string(&token_file).ok();
        exports.push(
            match tour.filter(|token| accepted.authenticate(token.trim_end()).is_some()) {
                Some(_) => format!(
                    "export WASMRPC_TOKEN=$(cat {})",
                    shell_word(&token_file)
                ),
                None => format!(
                    "export WASMRPC_TOKEN=$(wasmrpc token new --name NAME --functions '*' --access {})",
                    shell_word(&access)
                ),
            },
        );
        Ok(Callers {
            access: Some(access),
            exports,
        })
    }
}

/// Makes the `tour` token, allowed every function: writes it to
/// `token_file` (readable by its owner only), then its digest to a new
/// access file at `access`. In that order, so that an access file `up`
/// made always has its token on disk.
fn make_tour_token(access: &Path, token_file: &Path) -> anyhow::Result<()> {
    let token = access::new_token();
    if let Some(folder) = token_file.parent().filter(|f| !f.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the folder `{}`", folder.display()))?;
    }
    certs::write_file(token_file, format!("{token}\n").as_bytes(), 0o600)?;
    let every = Pattern::parse("*").expect("`*` is a pattern");
    token::append(access, &access::entry(TOUR, &token, &[every]))
        .with_context(|| format!("cannot make the access file `{}`", access.display()))
}

/// `path` as one word of a POSIX shell: as it is when it holds nothing the
/// shell would read otherwise, else in single quotes.
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%".contains(&b));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Sends SIGTERM to every host.
fn terminate(pids: &[u32]) {
    for pid in pids {
        // SAFETY: kill(2) has no memory-safety preconditions; a stale pid of
        // an exited child is harmless.
        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
    }
}

/// Prints where every host listens, one line each in the file's order:
/// `  eu-west   127.0.0.1:7101 (45 functions from 3 plugins)`.
fn print_listening(hosts: &[(&str, Option<String>)]) {
    let width = hosts
        .iter()
        .map(|(region, _)| region.len())
        .max()
        .unwrap_or(0);
    println!(
        "wasmrpc up: all {} hosts listening (Ctrl-C stops them):",
        hosts.len()
    );
    for (region, address) in hosts {
        let address = address.as_deref().unwrap_or("?");
        println!("  {region:width$}  {address}");
    }
}

fn describe(status: &std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => error.to_string(),
    }
}

/// Copies lines from a child's output to ours, prefixed. With `listening`,
/// also reports what follows the host's "listening on" (its address and
/// what it serves), tagged with the host's index.
async fn relay(
    output: impl AsyncRead + Unpin,
    prefix: String,
    listening: Option<(usize, mpsc::UnboundedSender<(usize, String)>)>,
) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match &listening {
            Some((index, report)) => {
                println!("{prefix} {line}");
                if let Some((_, address)) = line.split_once(LISTENING) {
                    let _ = report.send((*index, address.to_owned()));
                }
            }
            None => eprintln!("{prefix} {line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const TLS: &str =
        "[tls]\nca = \"certs/ca.crt\"\ntrust_domain = \"wasmrpc.local\"\ncerts = \"certs\"\n";

    /// A topology of one region in `dir`, with `tls` appended.
    fn topology(dir: &Path, tls: &str) -> Topology {
        let text = format!(
            "[[region]]\nname = \"a\"\nhosts = [\"127.0.0.1:7101\"]\nplugins = \".\"\n{tls}"
        );
        std::fs::write(dir.join("regions.toml"), text).unwrap();
        Topology::from_file(&dir.join("regions.toml")).unwrap()
    }

    /// [`Callers::prepare`] and what it printed, with `dir` shown as `DIR`.
    fn prepare(topology: &Topology, access: Option<PathBuf>) -> (Callers, String) {
        let mut out = Vec::new();
        let callers = Callers::prepare(topology, access, &mut out).unwrap();
        let dir = topology.base_dir.to_str().unwrap();
        let out = String::from_utf8(out).unwrap().replace(dir, "DIR");
        let exports = callers.exports.iter().map(|e| e.replace(dir, "DIR"));
        let callers = Callers {
            access: callers.access,
            exports: exports.collect(),
        };
        (callers, out)
    }

    #[test]
    fn with_tls_the_default_access_file_is_made_once_with_a_token_for_everything() {
        let dir = tempfile::tempdir().unwrap();
        let topology = topology(dir.path(), TLS);
        let (callers, out) = prepare(&topology, None);
        assert_eq!(
            out,
            "wasmrpc up: made token `tour` for every function: its digest in `DIR/access.toml`, the token in `DIR/certs/tour.token`\n"
        );
        assert_eq!(callers.access, Some(dir.path().join("access.toml")));
        assert_eq!(
            callers.exports,
            [
                "export WASMRPC_CA=DIR/certs/ca.crt",
                "export WASMRPC_TOKEN=$(cat DIR/certs/tour.token)"
            ]
        );
        let token_file = dir.path().join("certs/tour.token");
        let token = std::fs::read_to_string(&token_file).unwrap();
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let grant = Access::from_file(&dir.path().join("access.toml"))
            .unwrap()
            .authenticate(token.strip_suffix('\n').unwrap())
            .unwrap();
        assert_eq!(grant.name(), "tour");
        assert!(grant.allows("any.function"));

        // The next run keeps both, and says nothing of them.
        let access = std::fs::read(dir.path().join("access.toml")).unwrap();
        let (again, out) = prepare(&topology, None);
        assert_eq!(out, "");
        assert_eq!(again.exports, callers.exports);
        assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
        assert_eq!(
            std::fs::read(dir.path().join("access.toml")).unwrap(),
            access
        );
    }

    #[test]
    fn a_token_file_the_access_file_does_not_accept_is_not_exported() {
        let dir = tempfile::tempdir().unwrap();
        let topology = topology(dir.path(), TLS);
        prepare(&topology, None);
        std::fs::write(dir.path().join("access.toml"), "").unwrap();
        let (callers, out) = prepare(&topology, None);
        assert_eq!(out, "");
        assert_eq!(
            callers.exports,
            [
                "export WASMRPC_CA=DIR/certs/ca.crt",
                "export WASMRPC_TOKEN=$(wasmrpc token new --name NAME --functions '*' --access DIR/access.toml)"
            ]
        );
    }

    #[test]
    fn without_tls_no_access_file_is_made_or_given() {
        let dir = tempfile::tempdir().unwrap();
        let topology = topology(dir.path(), "");
        let (callers, out) = prepare(&topology, None);
        assert_eq!(
            (callers.access, callers.exports.len(), out.as_str()),
            (None, 0, "")
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_invalid_access_file_stops_up_before_its_hosts_start() {
        let dir = tempfile::tempdir().unwrap();
        let topology = topology(dir.path(), TLS);
        let file = dir.path().join("ci.toml");
        std::fs::write(&file, "[[token]]\nname = \"ci\"\n").unwrap();
        let error = Callers::prepare(&topology, Some(file.clone()), &mut Vec::new()).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            format!(
                "invalid `{}` at line 1 ([[token]] 1): missing field `sha256`",
                file.display()
            )
        );
        assert!(!dir.path().join("access.toml").exists());
    }

    #[test]
    fn shell_words_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        for (path, word) in [
            ("certs/ca.crt", "certs/ca.crt"),
            ("/srv/wasm rpc/ca.crt", "'/srv/wasm rpc/ca.crt'"),
            ("it's/$HOME", r"'it'\''s/$HOME'"),
        ] {
            assert_eq!(shell_word(Path::new(path)), word);
        }
    }
}
