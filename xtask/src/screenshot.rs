//! `cargo xtask screenshot [--out FILE]`: regenerates `docs/dashboard.png`,
//! the README's picture of the dashboard. It starts every host of the sample
//! `regions.toml` (without its `[tls]` table, which the picture does not
//! need) as its own process, calls functions through the first host for a
//! few seconds, kills the second host of `us-east` with SIGKILL so that the
//! picture shows a host down, and has headless Chromium
//! (`$WASMRPC_CHROMIUM`, else `/usr/bin/chromium`) take the first host's
//! dashboard at 1280×800. Every process it starts stops before it returns.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use xtask::{cargo, root, run};

/// Calls the traffic makes, each as `wasmrpc call` arguments.
const CALLS: &[&[&str]] = &[
    &["math.add", "1", "2"],
    &["greeter.greet", "\"ada\"", "null", "\"french\""],
    &["orders.place", "\"ada\"", "\"sku-1\"", "2"],
    &["inventory.stock.reserve", "\"sku-1\"", "1"],
    // More than the warehouse holds: a handler error.
    &["inventory.stock.reserve", "\"sku-2\"", "9"],
    &["ledger.locate", "\"e-1\"", "3"],
    &["math.divide", "1", "0"],
];

/// Host processes, killed when dropped.
struct Hosts(Vec<Child>);

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `(region, host address, admin address)` of each host in `regions.toml`
/// text: the `name`, `hosts` and `admin` lines of each `[[region]]`, as the
/// sample writes them.
fn hosts_of(toml: &str) -> Vec<(String, String, String)> {
    let quoted = |line: &str| -> Vec<String> {
        line.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut hosts = Vec::new();
    let (mut region, mut addrs) = (String::new(), Vec::new());
    for line in toml
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
    {
        if let Some(rest) = line.strip_prefix("name =") {
            region = quoted(rest).concat();
        } else if let Some(rest) = line.strip_prefix("hosts =") {
            addrs = quoted(rest);
        } else if let Some(rest) = line.strip_prefix("admin =") {
            for (host, admin) in addrs.iter().zip(quoted(rest)) {
                hosts.push((region.clone(), host.clone(), admin));
            }
        }
    }
    hosts
}

pub fn command(args: &[String]) -> anyhow::Result<()> {
    let root = root();
    let out = match args.get(1).map(String::as_str) {
        Some("--out") => args
            .get(2)
            .map(PathBuf::from)
            .context("--out needs a file")?,
        _ => root.join("docs/dashboard.png"),
    };
    let chromium = std::env::var_os("WASMRPC_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.is_file() {
        bail!(
            "no Chromium at `{}`: install it (`apt-get install chromium`) or set WASMRPC_CHROMIUM",
            chromium.display()
        );
    }
    let dir = root.join("target/dashboard-screenshot");
    let _ = std::fs::remove_dir_all(&dir);
    crate::plugins(Some(&dir))?;
    let sample = std::fs::read_to_string(dir.join("regions.toml"))?;
    let plain = sample.split("\n[tls]").next().unwrap_or(&sample);
    std::fs::write(dir.join("regions.toml"), plain)?;
    run(cargo()
        .current_dir(&root)
        .args(["build", "--package", "wasmrpc", "--bin", "wasmrpc"]))?;
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    let wasmrpc = exe.with_file_name(format!("wasmrpc{}", std::env::consts::EXE_SUFFIX));

    let topology = hosts_of(plain);
    let mut hosts = Hosts(Vec::new());
    for (region, addr, _) in &topology {
        let mut child = Command::new(&wasmrpc)
            .current_dir(&dir)
            .args(["host", "--region", region, "--listen", addr])
            .args(["--config", "regions.toml", "--ping-interval", "200ms"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", wasmrpc.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        hosts.0.push(child);
        // The second line says the admin listener serves.
        let mut lines = BufReader::new(stdout).lines();
        for _ in 0..2 {
            lines.next().context("a host exited before it listened")??;
        }
        std::thread::spawn(move || for _ in lines {});
    }
    let (_, entry, admin) = topology.first().context("no hosts in regions.toml")?;
    std::thread::sleep(Duration::from_secs(2));

    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = CALLS
        .iter()
        .map(|call| {
            let (wasmrpc, entry, stop) = (wasmrpc.clone(), entry.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = Command::new(&wasmrpc)
                        .args(["call", "--host", &entry])
                        .args(*call)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(6));
    // The second host of the region with two: down in the picture.
    if let Some(index) = topology
        .iter()
        .enumerate()
        .filter(|(_, (region, _, _))| topology.iter().filter(|h| &h.0 == region).count() > 1)
        .map(|(index, _)| index)
        .nth(1)
    {
        hosts.0[index].kill()?;
    }
    std::thread::sleep(Duration::from_secs(3));
    let shot = take(&chromium, &format!("http://{admin}/"), &out);
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let _ = caller.join();
    }
    drop(hosts);
    shot?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Has headless Chromium load `url`, let its polls run for 6 s of virtual
/// time, and write a 1280×800 PNG to `out`.
fn take(chromium: &Path, url: &str, out: &Path) -> anyhow::Result<()> {
    let profile = root().join("target/dashboard-screenshot/chromium");
    run(Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(["--window-size=1280,800", "--virtual-time-budget=6000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", out.display()))
        .arg(url)
        .stderr(Stdio::null()))
}
