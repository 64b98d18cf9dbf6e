//! `wasmrpc up`: every host of `regions.toml` as a child process, with
//! prefixed output, stopped together.
//!
//! Each host runs in a process group of its own, so that a terminal's Ctrl-C
//! (SIGINT to the whole foreground process group) reaches `up` alone, which
//! passes one SIGTERM to each host. Were the hosts in `up`'s group, each
//! would get the terminal's SIGINT and then `up`'s SIGTERM, and take that
//! second signal as "exit now, without draining". A second Ctrl-C is passed
//! on the same way, and then means just that.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::Topology;

/// What a host prints on stdout once it serves, before its address.
const LISTENING: &str = " listening on ";

pub async fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    let topology = Topology::from_file(&config)?;
    topology.validate()?;
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
                .arg(&config)
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
