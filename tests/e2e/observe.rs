//! The admin listener of real hosts: `/metrics`, `/healthz`, `/readyz`,
//! `/status`, read over HTTP and checked value by value.

use std::net::SocketAddr;
use std::time::Duration;

use ciborium::Value;
use wasmrpc::{CallOptions, ErrorCode, Processed};
use wasmrpc_tests::{
    Cluster, HostProcess, RawConn, RegionSpec, assert_adds, assert_call_error, call_in_flight,
    eventually_async, eventually_some,
};

#[tokio::test]
async fn metrics_count_each_call_by_function_code_and_placement() {
    let host = HostProcess::builder().plugins(&["math"]).admin().start();
    let client = host.client().await;
    const N: usize = 7;
    const M: usize = 3;
    for i in 0..N as i64 {
        let sum = client
            .call_value("math.add", vec![Value::from(i), Value::from(1)])
            .await
            .unwrap();
        assert_eq!(sum, Value::from(i + 1));
    }
    for _ in 0..M {
        let error = client
            .call_value("math.divide", vec![Value::from(1), Value::from(0)])
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::HandlerError);
    }
    // A name no catalog has: counted, but never as a label value.
    let error = client
        .call_value("nope.made-up-by-caller", vec![])
        .await
        .unwrap_err();
    assert_eq!(
        (error.code, error.processed),
        (ErrorCode::NotFound, Processed::No)
    );

    let m = host.metrics().await;
    let calls = |function: &str, code: &str, processed: &str| {
        m.get(
            "wasmrpc_calls_total",
            &[
                ("function", function),
                ("code", code),
                ("processed", processed),
                ("placement", "local"),
            ],
        )
    };
    assert_eq!(calls("math.add", "ok", "yes"), Some(N as f64), "{}", m.text);
    assert_eq!(
        calls("math.divide", "handler_error", "yes"),
        Some(M as f64),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "wasmrpc_calls_total",
            &[
                ("function", "_unknown"),
                ("code", "not_found"),
                ("processed", "no"),
                ("placement", "forwarded"),
            ],
        ),
        Some(1.0),
        "{}",
        m.text
    );
    assert!(!m.text.contains("made-up-by-caller"), "{}", m.text);
    assert_eq!(
        m.get(
            "wasmrpc_call_duration_seconds_count",
            &[("function", "math.add"), ("placement", "local")]
        ),
        Some(N as f64),
        "{}",
        m.text
    );
    assert_eq!(
        m.get("wasmrpc_plugin_loads_total", &[("plugin", "math")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("wasmrpc_connections_open", &[("role", "client")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("wasmrpc_instances_in_use", &[("plugin", "math")]),
        Some(0.0)
    );
    assert!(m.sum("wasmrpc_guest_cpu_seconds_total", &[("plugin", "math")]) > 0.0);
    assert_eq!(m.get("wasmrpc_ready", &[]), Some(1.0));

    let health = host.admin_get("/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = host.admin_get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let status = host.status().await;
    assert_eq!(status.region, "test");
    assert_eq!(status.host, host.addr.to_string());
    assert!(status.ready);
    assert_eq!(status.plugins.len(), 1);
    assert_eq!(
        status.plugins[0].functions,
        ["math.add", "math.divide", "math.stats"]
    );
}

/// The samples of a peer-labelled metric for the peer at `addr`.
fn peer_labels<'a>(region: &'a str, addr: &'a str) -> [(&'a str, &'a str); 2] {
    [("region", region), ("address", addr)]
}

/// The row `wasmrpc status` prints for the peer at `addr` in the block of
/// host `host`, split into its columns.
fn status_row(output: &str, host: SocketAddr, peer: SocketAddr) -> Vec<String> {
    let block = output
        .split(&format!("\n  {host}  "))
        .nth(1)
        .unwrap_or_else(|| panic!("no block for {host}:\n{output}"));
    let block = block.split("\n  1").next().unwrap();
    block
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("{peer} ")))
        .unwrap_or_else(|| panic!("no row for peer {peer} under {host}:\n{output}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `wasmrpc status` with `args`: exit code and stdout.
fn wasmrpc_status(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let output = wasmrpc_tests::cli(&all);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), stdout)
}

/// A peer whose instance pool is full answers `resource_exhausted`
/// (`processed: no`): a host-level failure. Five in a row eject it, and
/// every view says so: `/metrics`, `/status` and `wasmrpc status`. Then the
/// peer is killed: `wasmrpc status` reports it unreachable and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_peer_shows_as_ejected_in_metrics_status_and_wasmrpc_status() {
    let mut cluster = Cluster::pair(("edge", &[]), ("core", &["misbehave"]));
    cluster.with_admin();
    let edge = cluster.start("edge", 0);
    let mut core = cluster
        .host("core", 0)
        .args(&["--max-instances", "1"])
        .start();
    let core_addr = cluster.listed("core", 0);
    edge.wait_for_peer(core_addr, Duration::from_secs(10), |p| {
        p.health == "up" && p.functions > 0
    })
    .await;
    let client = edge.client().await;

    // The one instance runs a long call, direct to the core host.
    let direct = core.client().await;
    let long = tokio::spawn(async move {
        let options = CallOptions {
            timeout: Some(Duration::from_secs(30)),
            ..CallOptions::default()
        };
        direct
            .call_value_with("misbehave.busy", vec![Value::from(3000)], options)
            .await
    });
    let busy = eventually_async(Duration::from_secs(10), || async {
        core.metrics()
            .await
            .get("wasmrpc_instances_in_use", &[("plugin", "misbehave")])
            == Some(1.0)
    })
    .await;
    assert!(busy, "the long call never took the instance");
    // Through the edge: every call finds the pool full.
    const EJECT_AFTER: usize = 5;
    for _ in 0..EJECT_AFTER {
        let error = assert_call_error(
            client
                .call_value("misbehave.busy", vec![Value::from(1)])
                .await,
            ErrorCode::Unavailable,
            Processed::No,
            &format!(
                "no host serving `misbehave.busy` answered; tried region `core` ({core_addr}): \
                 no instance slot free to run `misbehave.busy`: maximum concurrent limit of 1 \
                 for component instances reached"
            ),
        );
        assert_eq!(error.region.as_deref(), Some("edge"));
    }
    assert_eq!(long.await.unwrap(), Ok(Value::from(3000)));

    let addr = core_addr.to_string();
    let labels = peer_labels("core", &addr);
    let m = edge.metrics().await;
    let health = |state: &str| {
        let mut labels = labels.to_vec();
        labels.push(("state", state));
        m.get("wasmrpc_peer_health", &labels)
    };
    assert_eq!(
        (health("up"), health("ejected"), health("down")),
        (Some(0.0), Some(1.0), Some(0.0)),
        "{}",
        m.text
    );
    assert_eq!(m.get("wasmrpc_peer_ejected", &labels), Some(1.0));
    assert_eq!(m.get("wasmrpc_peer_ejections_total", &labels), Some(1.0));
    // The count starts again after an ejection.
    assert_eq!(m.get("wasmrpc_peer_failures", &labels), Some(0.0));
    assert_eq!(m.get("wasmrpc_peer_in_flight", &labels), Some(0.0));
    assert_eq!(
        m.get(
            "wasmrpc_forward_attempts_total",
            &[("region", "core"), ("kind", "first")]
        ),
        Some(EJECT_AFTER as f64)
    );
    assert_eq!(
        m.get(
            "wasmrpc_calls_total",
            &[
                ("function", "misbehave.busy"),
                ("code", "unavailable"),
                ("processed", "no"),
                ("placement", "forwarded"),
            ]
        ),
        Some(EJECT_AFTER as f64),
        "{}",
        m.text
    );
    // Where they were refused: the pool was full.
    let m = core.metrics().await;
    assert_eq!(
        m.get(
            "wasmrpc_calls_total",
            &[
                ("function", "misbehave.busy"),
                ("code", "resource_exhausted"),
                ("processed", "no"),
                ("placement", "local"),
            ]
        ),
        Some(EJECT_AFTER as f64),
        "{}",
        m.text
    );

    let peer = edge.peer(core_addr).await.expect("the core host is a peer");
    assert_eq!(
        (
            peer.health.as_str(),
            peer.ejections,
            peer.failures,
            peer.links_lost
        ),
        ("ejected", 1, 0, 0)
    );
    // The first ejection lasts 30 s.
    let left = peer.ejected_for_ms.expect("ejected_for_ms while ejected");
    assert!(0 < left && left <= 30_000, "{left}");

    let config = cluster.config().to_str().unwrap();
    let (code, out) = wasmrpc_status(&["--config", config]);
    assert_eq!(code, Some(0), "{out}");
    let row = status_row(&out, cluster.listed("edge", 0), core_addr);
    // PEER REGION HEALTH RTT IN-FLIGHT FAILURES EJECTED-FOR EJECTIONS LINKS-LOST
    // REPORTED-CALLS INSTANCES CPU
    assert_eq!(row.len(), 12, "{out}");
    assert_eq!(
        [&row[..3], &row[4..6], &row[7..9]].concat(),
        [&addr, "core", "ejected", "0", "0", "1", "0"],
        "{out}"
    );
    assert!(row[3].ends_with("ms") && row[6].ends_with('s'), "{out}");
    // The core host reports its pool of one instance (`--max-instances 1`).
    assert!(row[10].ends_with("/1") && row[11].ends_with('%'), "{out}");
    assert!(
        out.ends_with("2 hosts: 2 answered, 0 unreachable\n"),
        "{out}"
    );

    // A dead host: the others are still shown, and the exit code says so.
    core.signal(libc::SIGKILL);
    core.wait_exit(Duration::from_secs(5))
        .expect("killed host exits");
    let down = edge
        .wait_for_peer(core_addr, Duration::from_secs(10), |p| p.health == "down")
        .await;
    assert_eq!(down.links_lost, 1);
    let (code, out) = wasmrpc_status(&["--config", config]);
    assert_eq!(code, Some(1), "{out}");
    let core_admin = cluster.admin("core", 0).unwrap();
    assert!(
        out.contains(&format!(
            "\ncore\n  {core_addr}  unreachable (admin {core_admin}): cannot connect to \
             `{core_admin}`: Connection refused (os error 111)\n"
        )),
        "{out}"
    );
    let row = status_row(&out, cluster.listed("edge", 0), core_addr);
    assert_eq!(row[2], "down", "{out}");
    assert!(
        out.ends_with("2 hosts: 1 answered, 1 unreachable\n"),
        "{out}"
    );
}

/// `wasmrpc status --host` asks only the hosts named; `--json` gives each
/// host's `/status` as the endpoint does; a config file without admin
/// addresses is refused with what to add.
#[tokio::test]
async fn wasmrpc_status_reads_named_hosts_and_prints_json() {
    let host = HostProcess::builder().plugins(&["math"]).admin().start();
    let admin = host.admin.unwrap().to_string();
    let (code, out) = wasmrpc_status(&["--host", &admin, "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 1, "{out}");
    assert_eq!(reports[0]["admin"], admin.as_str());
    assert_eq!(reports[0]["region"], "test");
    assert_eq!(reports[0]["host"], host.addr.to_string());
    let status: wasmrpc::observe::Status =
        serde_json::from_value(reports[0]["status"].clone()).unwrap();
    assert_eq!(status.plugins.len(), 1);
    assert_eq!(status.plugins[0].functions.len(), 3);

    let (code, out) = wasmrpc_status(&["--host", &admin]);
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "test");
    assert!(
        lines[1].starts_with(&format!("  {}  ready, up ", host.addr)),
        "{out}"
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["PLUGIN", "FUNCTIONS", "SHA256"]
    );
    let sha = status.plugins[0].sha256.as_deref().unwrap();
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["math", "3", &sha[..12]]
    );
    assert_eq!(
        &lines[4..],
        ["    no peers", "1 host: 1 answered, 0 unreachable"]
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regions.toml");
    std::fs::write(
        &config,
        "[[region]]\nname = \"a\"\nhosts = [\"127.0.0.1:7101\"]\nplugins = \"p\"\n",
    )
    .unwrap();
    let output = wasmrpc_tests::cli(&["status", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: `{}` names no admin listener: add `admin = [...]` to each region of \
             regions.toml, or give --host\n",
            config.display()
        )
    );
}

/// SIGTERM: `/readyz` turns 503 `not ready: draining` (and `/status`,
/// `wasmrpc_ready` with it) at once, while the calls in flight still run
/// and then answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_to_draining_on_sigterm_while_calls_in_flight_finish() {
    let mut host = HostProcess::builder()
        .plugins(&["misbehave"])
        .args(&["--drain-timeout", "30s"])
        .admin()
        .start();
    let ready = host.admin_get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let status = host.status().await;
    assert_eq!((status.ready, status.draining), (true, false));
    assert_eq!(host.metrics().await.get("wasmrpc_ready", &[]), Some(1.0));

    let client = host.client().await;
    let mut calls = Vec::new();
    for _ in 0..2 {
        calls.push(call_in_flight(&client, "misbehave.busy", vec![Value::from(2000)]).await);
    }
    let running = eventually_async(Duration::from_secs(10), || async {
        host.metrics()
            .await
            .get("wasmrpc_instances_in_use", &[("plugin", "misbehave")])
            == Some(2.0)
    })
    .await;
    assert!(running, "the calls never ran");
    host.signal(libc::SIGTERM);
    let draining = eventually_async(Duration::from_secs(5), || async {
        host.admin_get("/readyz").await.status == 503
    })
    .await;
    assert!(draining, "/readyz still ready 5 s after SIGTERM");
    let ready = host.admin_get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "not ready: draining\n")
    );
    let status = host.status().await;
    assert_eq!((status.ready, status.draining), (false, true));
    let m = host.metrics().await;
    assert_eq!(m.get("wasmrpc_ready", &[]), Some(0.0));
    // Still draining: the calls run.
    assert_eq!(
        m.get("wasmrpc_instances_in_use", &[("plugin", "misbehave")]),
        Some(2.0),
        "{}",
        m.text
    );
    let health = host.admin_get("/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    for call in calls {
        assert_eq!(call.await.unwrap(), Ok(Value::from(2000)));
    }
    let exit = tokio::task::spawn_blocking(move || host.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(exit.map(|s| s.code()), Some(Some(0)));
}

/// Calls through an entry host count as `forwarded` there and `local` where
/// they run; each attempt counts by kind. A host killed under a call of an
/// idempotent function makes a `failover` attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_calls_count_at_each_hop_and_a_failover_by_its_kind() {
    let cluster = Cluster::new(
        &[
            RegionSpec {
                name: "eu-west",
                hosts: 1,
                plugins: &[],
            },
            RegionSpec {
                name: "us-east",
                hosts: 2,
                plugins: &["ledger"],
            },
        ],
        &[],
        &[],
    );
    // No hedges: each call makes exactly the attempts its failures need.
    let edge = cluster
        .host("eu-west", 0)
        .args(&["--hedge-max", "0s"])
        .admin()
        .start();
    let servers = [
        cluster.host("us-east", 0).admin().start(),
        cluster.host("us-east", 1).admin().start(),
    ];
    edge.wait_until_linked(2, Duration::from_secs(10));
    for server in &servers {
        edge.wait_for_peer(server.addr, Duration::from_secs(10), |p| p.functions == 3)
            .await;
    }
    let client = edge.client().await;
    const N: usize = 12;
    for i in 0..N {
        let region = client
            .call_value(
                "ledger.locate",
                vec![Value::from(format!("e{i}")), Value::from(0)],
            )
            .await
            .unwrap();
        assert_eq!(region, Value::from("us-east"));
    }
    let ok = |placement: &'static str| {
        [
            ("function", "ledger.locate"),
            ("code", "ok"),
            ("processed", "yes"),
            ("placement", placement),
        ]
    };
    let attempts = |kind: &'static str| [("region", "us-east"), ("kind", kind)];
    let m = edge.metrics().await;
    assert_eq!(
        m.get("wasmrpc_calls_total", &ok("forwarded")),
        Some(N as f64),
        "{}",
        m.text
    );
    assert_eq!(m.sum("wasmrpc_calls_total", &[("placement", "local")]), 0.0);
    assert_eq!(
        m.get("wasmrpc_forward_attempts_total", &attempts("first")),
        Some(N as f64)
    );
    assert_eq!(
        m.sum("wasmrpc_forward_attempts_total", &[]),
        N as f64,
        "{}",
        m.text
    );
    let mut local = Vec::new();
    for server in &servers {
        let m = server.metrics().await;
        local.push(m.get("wasmrpc_calls_total", &ok("local")).unwrap_or(0.0));
        assert_eq!(
            m.sum("wasmrpc_calls_total", &[("placement", "forwarded")]),
            0.0
        );
    }
    assert_eq!(local.iter().sum::<f64>(), N as f64, "{local:?}");

    // A long call; kill -9 the host running it.
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            let options = CallOptions {
                timeout: Some(Duration::from_secs(20)),
                ..CallOptions::default()
            };
            let args = vec![Value::from("slow"), Value::from(2000)];
            client.call_value_with("ledger.locate", args, options).await
        }
    });
    let running = eventually_some(Duration::from_secs(10), || async {
        for (i, server) in servers.iter().enumerate() {
            let m = server.metrics().await;
            if m.get("wasmrpc_instances_in_use", &[("plugin", "ledger")]) == Some(1.0) {
                return Some(i);
            }
        }
        None
    })
    .await
    .expect("the slow call never ran");
    servers[running].signal(libc::SIGKILL);
    assert_eq!(slow.await.unwrap(), Ok(Value::from("us-east")));
    let m = edge.metrics().await;
    assert_eq!(
        m.get("wasmrpc_forward_attempts_total", &attempts("first")),
        Some(N as f64 + 1.0)
    );
    assert_eq!(
        m.get("wasmrpc_forward_attempts_total", &attempts("failover")),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.get("wasmrpc_forward_attempts_total", &attempts("hedge")),
        None
    );
    assert_eq!(
        m.get("wasmrpc_calls_total", &ok("forwarded")),
        Some(N as f64 + 1.0)
    );
    // The survivor ran it.
    let survivor = 1 - running;
    assert_eq!(
        servers[survivor]
            .metrics()
            .await
            .get("wasmrpc_calls_total", &ok("local")),
        Some(local[survivor] + 1.0)
    );
}

/// A connection ended by a bad frame counts by reason; the host serves on.
#[tokio::test]
async fn rejected_frames_count_by_reason_and_the_host_serves_on() {
    let host = HostProcess::builder().plugins(&["math"]).admin().start();
    let client = host.client().await;

    // After the handshake, a frame of bytes that are no envelope.
    let mut conn = RawConn::handshake(host.addr);
    let garbage = [0xff_u8; 12];
    let mut frame = (garbage.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&garbage);
    conn.send(&frame);
    conn.read_until_closed(Duration::from_secs(5));
    // A length prefix over the 4 MiB limit.
    let mut conn = RawConn::handshake(host.addr);
    conn.send(&u32::MAX.to_be_bytes());
    conn.read_until_closed(Duration::from_secs(5));
    assert_adds(&client, 20, 22).await;

    let m = host.metrics().await;
    assert_eq!(
        m.get("wasmrpc_rejected_frames_total", &[("reason", "malformed")]),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "wasmrpc_rejected_frames_total",
            &[("reason", "frame_too_large")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.label_values("wasmrpc_rejected_frames_total", "reason"),
        ["frame_too_large", "malformed"]
    );
    // Three connections completed their handshake; one is open.
    assert_eq!(
        m.get("wasmrpc_connections_total", &[("role", "client")]),
        Some(3.0)
    );
    assert_eq!(
        m.get("wasmrpc_connections_open", &[("role", "client")]),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "wasmrpc_calls_total",
            &[
                ("function", "math.add"),
                ("code", "ok"),
                ("processed", "yes"),
                ("placement", "local"),
            ]
        ),
        Some(1.0)
    );
}

fn sha256_hex(path: &std::path::Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A broken `.wasm` dropped into the plugin folder is counted and shown as
/// refused; the loaded plugins keep their hashes.
#[tokio::test]
async fn a_refused_plugin_shows_in_metrics_and_status_with_its_error() {
    let host = HostProcess::builder().plugins(&["math"]).admin().start();
    let math = host.plugins().join("math.wasm");
    let status = host.status().await;
    assert_eq!(status.plugins.len(), 1);
    let loaded = &status.plugins[0];
    assert_eq!(loaded.name, "math");
    assert_eq!(loaded.sha256.as_deref(), Some(sha256_hex(&math).as_str()));
    assert_eq!(loaded.file.as_deref(), Some(math.to_str().unwrap()));
    assert_eq!(loaded.sidecar_sha256, None);
    assert_eq!(loaded.last_refusal, None);

    let broken = host.plugins().join("broken.wasm");
    let tmp = host.plugins().join("broken.part");
    std::fs::write(&tmp, b"\0asm not really").unwrap();
    std::fs::rename(&tmp, &broken).unwrap();
    let refused = eventually_async(Duration::from_secs(10), || async {
        host.metrics()
            .await
            .get("wasmrpc_plugin_refusals_total", &[("plugin", "broken")])
            .is_some()
    })
    .await;
    assert!(refused, "the broken plugin was never refused");
    let m = host.metrics().await;
    assert_eq!(
        m.get("wasmrpc_plugin_refusals_total", &[("plugin", "broken")]),
        Some(1.0)
    );
    assert_eq!(
        m.label_values("wasmrpc_plugin_refusals_total", "plugin"),
        ["broken"]
    );
    assert_eq!(
        m.get("wasmrpc_plugin_loads_total", &[("plugin", "math")]),
        Some(1.0)
    );
    assert_eq!(
        m.label_values("wasmrpc_plugin_functions", "plugin"),
        ["math"]
    );

    let status = host.status().await;
    let names: Vec<&str> = status.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["broken", "math"]);
    let refused = &status.plugins[0];
    assert_eq!(
        (refused.file.as_deref(), refused.sha256.as_deref()),
        (None, None)
    );
    assert!(refused.functions.is_empty());
    let refusal = refused.last_refusal.as_ref().expect("last_refusal");
    assert_eq!(refusal.file, broken.to_str().unwrap());
    assert!(
        refusal.error.contains("failed to parse WebAssembly"),
        "{}",
        refusal.error
    );
    assert!(!refusal.error.contains('\n'), "{}", refusal.error);
    // RFC 3339 in UTC to the millisecond: `2025-01-01T00:00:00.000Z`.
    assert!(
        refusal.at.len() == 24 && refusal.at.ends_with('Z') && refusal.at.as_bytes()[10] == b'T',
        "{}",
        refusal.at
    );
    assert_eq!(
        status.plugins[1].sha256.as_deref(),
        Some(sha256_hex(&math).as_str())
    );
    assert_eq!(status.plugins[1].last_refusal, None);
}

/// Function names callers make up never become label values, whether the
/// host refuses them at once or forwards them by a route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_function_names_never_reach_metrics_on_any_hop() {
    let cluster = Cluster::new(
        &[
            RegionSpec {
                name: "edge",
                hosts: 1,
                plugins: &[],
            },
            RegionSpec {
                name: "core",
                hosts: 1,
                plugins: &["math"],
            },
        ],
        &[("ghost.*", &["core"])],
        &[],
    );
    let hosts = cluster.start_all_linked();
    let (edge, core) = (&hosts[0], &hosts[1]);
    let client = edge.client().await;
    let routed = client
        .call_value("ghost.made-up-routed", vec![])
        .await
        .unwrap_err();
    let plain = client
        .call_value("nope.made-up-plain", vec![])
        .await
        .unwrap_err();
    assert_eq!(
        (plain.code, plain.processed),
        (ErrorCode::NotFound, Processed::No)
    );
    assert_eq!(routed.processed, Processed::No, "{routed:?}");
    assert_adds(&client, 1, 2).await;
    // A host's own functions are series from the moment they load (at 0);
    // a peer's only once called.
    let core_functions = ["_unknown", "math.add", "math.divide", "math.stats"];
    for (host, unknown, functions) in [
        (edge, 2.0, &["_unknown", "math.add"][..]),
        (core, 1.0, &core_functions[..]),
    ] {
        let m = host.metrics().await;
        assert!(!m.text.contains("made-up"), "{}", m.text);
        assert_eq!(
            m.sum("wasmrpc_calls_total", &[("function", "_unknown")]),
            unknown,
            "{}",
            m.text
        );
        assert_eq!(
            m.label_values("wasmrpc_calls_total", "function"),
            functions,
            "{}",
            m.text
        );
    }
}

/// The admin listener and the RPC port are two listeners: an HTTP request
/// at the RPC port is a refused frame, never an answer, and the protocol's
/// `hello` at the admin port is no handshake.
#[tokio::test]
async fn the_admin_listener_is_not_reachable_through_the_rpc_port_nor_the_reverse() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let host = HostProcess::builder().plugins(&["math"]).admin().start();
    let mut rpc = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    rpc.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rpc.read_to_end(&mut answer))
        .await
        .expect("the host closes the connection")
        .ok();
    assert!(
        !answer.starts_with(b"HTTP/"),
        "the RPC port answered HTTP: {}",
        String::from_utf8_lossy(&answer)
    );
    let m = host.metrics().await;
    // "GET " read as a length prefix is a frame of over a gigabyte.
    assert_eq!(
        m.get(
            "wasmrpc_rejected_frames_total",
            &[("reason", "frame_too_large")]
        ),
        Some(1.0),
        "{}",
        m.text
    );

    let admin = host.admin.unwrap();
    let refused = wasmrpc::Client::connect_with(admin, wasmrpc::ClientOptions::default()).await;
    assert!(
        refused.is_err(),
        "a wasmrpc handshake succeeded on the admin port"
    );
    // The host still serves calls, and its admin listener still answers.
    let client = host.client().await;
    let sum = client
        .call_value("math.add", vec![Value::from(2), Value::from(3)])
        .await
        .unwrap();
    assert_eq!(sum, Value::from(5));
    assert_eq!(host.admin_get("/healthz").await.status, 200);
}
