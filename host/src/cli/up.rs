//! `wasmrpc up`: every host of `regions.toml` as a child process, with
//! prefixed output, stopped together.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::task::JoinSet;

use crate::config::Topology;

pub async fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    let topology = Topology::from_file(&config)?;
    topology.validate()?;
    let exe = std::env::current_exe().context("cannot find the wasmrpc executable")?;

    let mut pids = Vec::new();
    let mut exits = JoinSet::new();
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
            tokio::spawn(relay(stdout, prefix.clone(), false));
            tokio::spawn(relay(stderr, prefix.clone(), true));
            exits.spawn(async move { (prefix, child.wait().await) });
        }
    }
    eprintln!(
        "wasmrpc up: started {} hosts from `{}`; Ctrl-C stops them",
        pids.len(),
        config.display()
    );

    let mut failed = false;
    tokio::select! {
        result = super::wait_for_signal() => result?,
        Some(exit) = exits.join_next() => {
            let (prefix, status) = exit.context("host watcher failed")?;
            eprintln!("{prefix} exited unexpectedly ({}); stopping the others", describe(&status));
            failed = true;
        }
    }
    for pid in &pids {
        // SAFETY: kill(2) has no memory-safety preconditions; a stale pid of
        // an exited child is harmless.
        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
    }
    while let Some(exit) = exits.join_next().await {
        let (prefix, status) = exit.context("host watcher failed")?;
        let ok = matches!(&status, Ok(s) if s.success());
        failed |= !ok;
        eprintln!("{prefix} stopped ({})", describe(&status));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn describe(status: &std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => error.to_string(),
    }
}

/// Copies lines from a child's output to ours, prefixed.
async fn relay(output: impl AsyncRead + Unpin, prefix: String, to_stderr: bool) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if to_stderr {
            eprintln!("{prefix} {line}");
        } else {
            println!("{prefix} {line}");
        }
    }
}
