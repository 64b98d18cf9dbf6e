//! `wasmrpc status`: every host's `/status`, read from its admin listener
//! at once, printed as a person reads a topology: regions, their hosts, what
//! each serves, and how each sees its peers.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::{ConfigError, Topology};
use crate::observe::Status;
use crate::observe::status::{PeerStatus, PluginStatus, ReportedLoad};

/// The exit code when a host did not answer (the others are still shown).
const SOME_UNREACHABLE: u8 = 1;
/// The exit code when there is no host to ask: a config file that cannot
/// be read or names no admin listener.
const NOTHING_TO_ASK: u8 = 2;

#[derive(Debug, clap::Args)]
pub(super) struct StatusArgs {
    /// The topology file: each region's `admin` list names its hosts'
    /// admin listeners, in the order of `hosts`.
    #[arg(long, default_value = "regions.toml")]
    config: PathBuf,
    /// Ask only the host whose admin listener is at this address
    /// (`127.0.0.1:9101`) instead of those of the config file; repeat for
    /// more hosts.
    #[arg(long = "host", value_name = "ADMIN_ADDR")]
    hosts: Vec<String>,
    /// How long to wait for each host's answer; hosts are asked at once.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    timeout: Duration,
    /// Print a JSON array instead, one object per host: `admin`, `region`
    /// and `host` (when known), and `status` (the host's `/status`) or
    /// `error` (why it did not answer).
    #[arg(long)]
    json: bool,
}

/// A host to ask: its admin listener, and where the config file puts it.
#[derive(Debug, Clone)]
struct Target {
    admin: String,
    region: Option<String>,
    host: Option<String>,
}

/// What one host answered, or why it did not.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    /// The admin listener asked.
    admin: String,
    /// The host's region: as it says, or as the config file says.
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    /// The host's listen address: as it says, or as the config file says.
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Report {
    fn new(target: Target, outcome: anyhow::Result<Status>) -> Report {
        match outcome {
            Ok(status) => Report {
                admin: target.admin,
                region: Some(status.region.clone()),
                host: Some(status.host.clone()),
                status: Some(status),
                error: None,
            },
            Err(error) => Report {
                admin: target.admin,
                region: target.region,
                host: target.host,
                status: None,
                error: Some(format!("{error:#}")),
            },
        }
    }
}

pub(super) async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let targets = if args.hosts.is_empty() {
        match targets_of(&args.config) {
            Ok(targets) => targets,
            Err(error) => {
                eprintln!("error: {error:#}");
                return Ok(ExitCode::from(NOTHING_TO_ASK));
            }
        }
    } else {
        args.hosts
            .iter()
            .map(|admin| Target {
                admin: admin.clone(),
                region: None,
                host: None,
            })
            .collect()
    };
    let asks = targets.into_iter().map(|target| async move {
        let outcome = fetch(&target.admin, args.timeout).await;
        Report::new(target, outcome)
    });
    let reports = futures::future::join_all(asks).await;
    if args.json {
        let json = serde_json::to_string_pretty(&reports).context("cannot encode the statuses")?;
        println!("{json}");
    } else {
        print!("{}", render(&reports));
    }
    Ok(if reports.iter().all(|r| r.status.is_some()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(SOME_UNREACHABLE)
    })
}

/// The admin listeners `config` lists, in file order.
fn targets_of(config: &std::path::Path) -> anyhow::Result<Vec<Target>> {
    let topology = Topology::from_file(config)?;
    let mut targets = Vec::new();
    for region in &topology.regions {
        if !region.admin.is_empty() && region.admin.len() != region.hosts.len() {
            return Err(ConfigError::AdminCount {
                region: region.name.clone(),
                admin: region.admin.len(),
                hosts: region.hosts.len(),
            }
            .into());
        }
        for (host, admin) in region.hosts.iter().zip(&region.admin) {
            targets.push(Target {
                admin: admin.clone(),
                region: Some(region.name.clone()),
                host: Some(host.clone()),
            });
        }
    }
    if targets.is_empty() {
        anyhow::bail!(
            "`{}` names no admin listener: add `admin = [...]` to each region of regions.toml, \
             or give --host",
            config.display()
        );
    }
    Ok(targets)
}

/// GETs and reads `/status` from the admin listener at `admin`.
async fn fetch(admin: &str, timeout: Duration) -> anyhow::Result<Status> {
    let response = crate::observe::http::get(admin, "/status", timeout).await?;
    if response.status != 200 {
        anyhow::bail!(
            "`{admin}` answered /status with HTTP {}: {}",
            response.status,
            response.body.trim()
        );
    }
    serde_json::from_str(&response.body)
        .with_context(|| format!("`{admin}` answered /status with something other than a status"))
}

/// The reports as text: a block per region (in the order of the reports),
/// a block per host in it.
pub(super) fn render(reports: &[Report]) -> String {
    let mut regions: Vec<Option<&str>> = Vec::new();
    for report in reports {
        if !regions.contains(&report.region.as_deref()) {
            regions.push(report.region.as_deref());
        }
    }
    let mut out = String::new();
    for region in regions {
        let _ = writeln!(out, "{}", region.unwrap_or("(region unknown)"));
        for report in reports.iter().filter(|r| r.region.as_deref() == region) {
            render_host(&mut out, report);
        }
    }
    let answered = reports.iter().filter(|r| r.status.is_some()).count();
    let _ = writeln!(
        out,
        "{} host{}: {answered} answered, {} unreachable",
        reports.len(),
        if reports.len() == 1 { "" } else { "s" },
        reports.len() - answered
    );
    out
}

fn render_host(out: &mut String, report: &Report) {
    let name = report.host.as_deref().unwrap_or(&report.admin);
    let Some(status) = &report.status else {
        let _ = writeln!(
            out,
            "  {name}  unreachable (admin {}): {}",
            report.admin,
            report.error.as_deref().unwrap_or("no answer")
        );
        return;
    };
    let state = if status.draining {
        "draining"
    } else if status.ready {
        "ready"
    } else {
        "starting"
    };
    let _ = writeln!(
        out,
        "  {name}  {state}, up {}, wasmrpc {} (admin {})",
        uptime(status.uptime_seconds),
        status.version,
        report.admin
    );
    render_plugins(out, &status.plugins);
    render_peers(out, &status.peers);
    if !status.routes.is_empty() {
        let routes: Vec<String> = status
            .routes
            .iter()
            .map(|r| format!("{} -> {}", r.pattern, r.regions.join(", ")))
            .collect();
        let _ = writeln!(out, "    routes: {}", routes.join("; "));
    }
    for rule in &status.keys {
        let pins: Vec<String> = rule
            .pins
            .iter()
            .map(|p| format!(", {} -> {}", p.keys, p.regions.join(", ")))
            .collect();
        let _ = writeln!(
            out,
            "    keys: {} by {}{}",
            rule.pattern,
            rule.key,
            pins.concat()
        );
    }
}

fn render_plugins(out: &mut String, plugins: &[PluginStatus]) {
    if plugins.is_empty() {
        let _ = writeln!(out, "    no plugins");
        return;
    }
    let mut rows = vec![row(["PLUGIN", "FUNCTIONS", "SHA256"])];
    let mut notes = vec![None];
    for plugin in plugins {
        let (functions, hash) = match &plugin.sha256 {
            Some(sha256) => (
                plugin.functions.len().to_string(),
                sha256.chars().take(12).collect(),
            ),
            None => ("-".to_owned(), "not loaded".to_owned()),
        };
        rows.push(vec![plugin.name.clone(), functions, hash]);
        notes.push(plugin.last_refusal.as_ref().map(|refusal| {
            format!(
                "last refused {}: `{}`: {}",
                refusal.at, refusal.file, refusal.error
            )
        }));
    }
    table(out, &rows, &notes);
}

fn render_peers(out: &mut String, peers: &[PeerStatus]) {
    if peers.is_empty() {
        let _ = writeln!(out, "    no peers");
        return;
    }
    let mut rows = vec![row([
        "PEER",
        "REGION",
        "HEALTH",
        "RTT",
        "IN-FLIGHT",
        "FAILURES",
        "EJECTED-FOR",
        "EJECTIONS",
        "LINKS-LOST",
        "REPORTED-CALLS",
        "INSTANCES",
        "CPU",
    ])];
    let mut notes = vec![None];
    for peer in peers {
        rows.push(vec![
            peer.address.clone(),
            peer.region.clone(),
            peer.health.clone(),
            peer.rtt_ms
                .map_or("-".to_owned(), |ms| format!("{ms:.2}ms")),
            peer.in_flight.to_string(),
            peer.failures.to_string(),
            peer.ejected_for_ms.map_or("-".to_owned(), millis),
            peer.ejections.to_string(),
            peer.links_lost.to_string(),
        ]);
        rows.last_mut()
            .expect("the row just pushed")
            .extend(reported_load(peer.reported.as_ref()));
        notes.push(
            peer.down_because
                .as_ref()
                .map(|why| format!("down because: {why}")),
        );
    }
    table(out, &rows, &notes);
}

/// The cells of a peer's own report: its calls in flight from all
/// callers, its instances in use of its pool, and its CPU use; `-` for
/// what it did not report.
fn reported_load(load: Option<&ReportedLoad>) -> [String; 3] {
    let Some(load) = load else {
        return ["-".to_owned(), "-".to_owned(), "-".to_owned()];
    };
    [
        load.in_flight.to_string(),
        format!("{}/{}", load.instances, load.instances_max),
        load.cpu
            .map_or("-".to_owned(), |cpu| format!("{:.0}%", cpu * 100.0)),
    ]
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|&c| c.to_owned()).collect()
}

/// Rows in left-aligned columns, indented under their host; each row's
/// note, if any, on the line below it.
fn table(out: &mut String, rows: &[Vec<String>], notes: &[Option<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for (row, note) in rows.iter().zip(notes) {
        let mut line = String::from("    ");
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if let Some(note) = note {
            let _ = writeln!(out, "      {note}");
        }
    }
}

/// `42s`, `5m 07s`, `2h 03m`, `3d 04h`.
fn uptime(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `850ms`, `29.4s`.
fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::status::{KeyStatus, PinStatus, RefusalStatus, RouteStatus};

    fn peer(region: &str, address: &str, health: &str) -> PeerStatus {
        PeerStatus {
            region: region.into(),
            address: address.into(),
            health: health.into(),
            rtt_ms: Some(0.4213),
            in_flight: 0,
            failures: 0,
            ejected_for_ms: None,
            ejections: 0,
            links_lost: 0,
            functions: 3,
            down_because: None,
            reported: Some(ReportedLoad {
                in_flight: 0,
                instances: 0,
                instances_max: 256,
                cpu: Some(0.013),
                age_ms: 120,
            }),
            score: Some(0.000_421_3),
        }
    }

    fn eu_west() -> Status {
        let ejected = PeerStatus {
            in_flight: 2,
            failures: 1,
            ejected_for_ms: Some(29_437),
            ejections: 1,
            reported: Some(ReportedLoad {
                in_flight: 37,
                instances: 12,
                instances_max: 256,
                cpu: Some(0.914),
                age_ms: 380,
            }),
            ..peer("us-east", "127.0.0.1:7202", "ejected")
        };
        let down = PeerStatus {
            rtt_ms: None,
            links_lost: 2,
            functions: 0,
            down_because: Some("cannot connect: connection refused".into()),
            reported: None,
            ..peer("ap-south", "127.0.0.1:7301", "down")
        };
        Status {
            region: "eu-west".into(),
            host: "127.0.0.1:7101".into(),
            version: "0.1.0".into(),
            uptime_seconds: 7384.9,
            ready: true,
            draining: false,
            plugins: vec![
                PluginStatus {
                    name: "math".into(),
                    file: Some("plugins/eu-west/math.wasm".into()),
                    sha256: Some("1a2b3c4d5e6f7a8b9c0d".into()),
                    sidecar_sha256: None,
                    functions: vec!["math.add".into(), "math.divide".into()],
                    loaded_at: Some("2025-01-01T00:00:00.000Z".into()),
                    compiled: None,
                    memory_mib: Some(64),
                    last_refusal: None,
                },
                PluginStatus {
                    name: "misbehave".into(),
                    file: None,
                    sha256: None,
                    sidecar_sha256: None,
                    functions: vec![],
                    loaded_at: None,
                    compiled: None,
                    memory_mib: None,
                    last_refusal: Some(RefusalStatus {
                        at: "2025-01-01T00:01:00.000Z".into(),
                        file: "plugins/eu-west/misbehave.wasm".into(),
                        error: "not a WebAssembly component".into(),
                    }),
                },
            ],
            peers: vec![peer("us-east", "127.0.0.1:7201", "up"), ejected, down],
            routes: vec![RouteStatus {
                pattern: "math.*".into(),
                regions: vec!["eu-west".into(), "us-east".into()],
            }],
            keys: vec![KeyStatus {
                pattern: "cache.*".into(),
                key: "metadata.tenant".into(),
                pins: vec![PinStatus {
                    keys: "eu-*".into(),
                    regions: vec!["eu-west".into()],
                }],
            }],
        }
    }

    #[test]
    fn the_topology_reads_by_region_host_plugin_and_peer() {
        let draining = Status {
            region: "us-east".into(),
            host: "127.0.0.1:7201".into(),
            uptime_seconds: 42.0,
            ready: false,
            draining: true,
            plugins: vec![],
            peers: vec![],
            routes: vec![],
            keys: vec![],
            ..eu_west()
        };
        let reports = [
            Report::new(
                Target {
                    admin: "127.0.0.1:9101".into(),
                    region: None,
                    host: None,
                },
                Ok(eu_west()),
            ),
            Report::new(
                Target {
                    admin: "127.0.0.1:9201".into(),
                    region: Some("us-east".into()),
                    host: Some("127.0.0.1:7201".into()),
                },
                Ok(draining),
            ),
            Report::new(
                Target {
                    admin: "127.0.0.1:9202".into(),
                    region: Some("us-east".into()),
                    host: Some("127.0.0.1:7202".into()),
                },
                Err(anyhow::anyhow!("no answer from `127.0.0.1:9202` within 2s")),
            ),
            Report::new(
                Target {
                    admin: "10.0.0.9:9101".into(),
                    region: None,
                    host: None,
                },
                Err(anyhow::anyhow!("connection refused").context("cannot connect")),
            ),
        ];
        let expected = "\
eu-west
  127.0.0.1:7101  ready, up 2h 03m, wasmrpc 0.1.0 (admin 127.0.0.1:9101)
    PLUGIN     FUNCTIONS  SHA256
    math       2          1a2b3c4d5e6f
    misbehave  -          not loaded
      last refused 2025-01-01T00:01:00.000Z: `plugins/eu-west/misbehave.wasm`: not a WebAssembly component
    PEER            REGION    HEALTH   RTT     IN-FLIGHT  FAILURES  EJECTED-FOR  EJECTIONS  LINKS-LOST  REPORTED-CALLS  INSTANCES  CPU
    127.0.0.1:7201  us-east   up       0.42ms  0          0         -            0          0           0               0/256      1%
    127.0.0.1:7202  us-east   ejected  0.42ms  2          1         29.4s        1          0           37              12/256     91%
    127.0.0.1:7301  ap-south  down     -       0          0         -            0          2           -               -          -
      down because: cannot connect: connection refused
    routes: math.* -> eu-west, us-east
    keys: cache.* by metadata.tenant, eu-* -> eu-west
us-east
  127.0.0.1:7201  draining, up 42s, wasmrpc 0.1.0 (admin 127.0.0.1:9201)
    no plugins
    no peers
  127.0.0.1:7202  unreachable (admin 127.0.0.1:9202): no answer from `127.0.0.1:9202` within 2s
(region unknown)
  10.0.0.9:9101  unreachable (admin 10.0.0.9:9101): cannot connect: connection refused
4 hosts: 2 answered, 2 unreachable
";
        assert_eq!(render(&reports), expected);
    }

    #[test]
    fn json_has_the_status_or_the_error_of_each_host() {
        let reports = [
            Report::new(
                Target {
                    admin: "127.0.0.1:9101".into(),
                    region: None,
                    host: None,
                },
                Ok(eu_west()),
            ),
            Report::new(
                Target {
                    admin: "127.0.0.1:9202".into(),
                    region: Some("us-east".into()),
                    host: Some("127.0.0.1:7202".into()),
                },
                Err(anyhow::anyhow!("refused")),
            ),
        ];
        let json: serde_json::Value = serde_json::to_value(&reports).unwrap();
        assert_eq!(
            json[1],
            serde_json::json!({
                "admin": "127.0.0.1:9202",
                "region": "us-east",
                "host": "127.0.0.1:7202",
                "error": "refused",
            })
        );
        let status: Status = serde_json::from_value(json[0]["status"].clone()).unwrap();
        assert_eq!(status, eu_west());
        assert_eq!(json[0]["region"], "eu-west");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(uptime(0.4), "0s");
        assert_eq!(uptime(59.9), "59s");
        assert_eq!(uptime(427.0), "7m 07s");
        assert_eq!(uptime(7384.0), "2h 03m");
        assert_eq!(uptime(3.0 * 86400.0 + 4.0 * 3600.0 + 5.0), "3d 04h");
        assert_eq!(millis(850), "850ms");
        assert_eq!(millis(29_437), "29.4s");
    }

    #[test]
    fn a_config_without_admin_addresses_says_what_to_add() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("regions.toml");
        std::fs::write(
            &path,
            "[[region]]\nname = \"eu-west\"\nhosts = [\"127.0.0.1:7101\"]\nplugins = \"p\"\n",
        )
        .unwrap();
        let error = targets_of(&path).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "`{}` names no admin listener: add `admin = [...]` to each region of \
                 regions.toml, or give --host",
                path.display()
            )
        );
        std::fs::write(
            &path,
            "[[region]]\nname = \"eu-west\"\nhosts = [\"127.0.0.1:7101\", \"127.0.0.1:7102\"]\n\
             admin = [\"127.0.0.1:9101\", \"127.0.0.1:9102\"]\nplugins = \"p\"\n",
        )
        .unwrap();
        let targets = targets_of(&path).unwrap();
        let pairs: Vec<(&str, &str)> = targets
            .iter()
            .map(|t| (t.host.as_deref().unwrap(), t.admin.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("127.0.0.1:7101", "127.0.0.1:9101"),
                ("127.0.0.1:7102", "127.0.0.1:9102")
            ]
        );
    }
}
