//! A client of several hosts (`Client::connect_any`, `connect_region`, the
//! CLI's repeated `--host` and `--config`/`--region`): it sends calls to the
//! nearest healthy host, moves them when a host dies or drains, and retries
//! only what the `processed` rule allows.
//!
//! Executions are counted from the `ledger` plugin's log lines
//! (`recorded <entry> in <region>` for the non-idempotent `record`,
//! `located ...` for `locate`, which its sidecar declares idempotent).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ciborium::Value;
use wasmrpc::{CallError, CallOptions, Client, ClientOptions, ErrorCode, Processed};
use wasmrpc_tests::{
    Cluster, HostProcess, Proxy, RegionSpec, eventually, eventually_async, ledger_runs,
};

/// Runs `wasmrpc ARGS` in `dir` with none of its `WASMRPC_*` variables set.
fn wasmrpc_in(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = std::process::Command::new(wasmrpc_tests::wasmrpc_bin());
    command.args(args).current_dir(dir);
    for name in ["WASMRPC_HOST", "WASMRPC_CA", "WASMRPC_TOKEN"] {
        command.env_remove(name);
    }
    let out = command.output().expect("run wasmrpc");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Callers of each kind.
const WORKERS: usize = 8;
/// Each call's deadline.
const DEADLINE: Duration = Duration::from_secs(5);

/// One call and how it ended.
struct Outcome {
    entry: String,
    result: Result<Value, CallError>,
}

/// Calls `function` back to back until `stop`, each call with an entry of
/// its own; the handler works 5 ms per call.
async fn caller(
    client: Client,
    function: &'static str,
    worker: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let entry = format!("{function}-{worker}-{n}");
        n += 1;
        let options = CallOptions {
            timeout: Some(DEADLINE),
            ..CallOptions::default()
        };
        let result = client
            .call_value_with(function, vec![entry.as_str().into(), 5.into()], options)
            .await;
        if result.is_err() {
            // A failure can be immediate (no host at all, if the test
            // breaks): never spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        outcomes.push(Outcome { entry, result });
    }
    outcomes
}

fn one_region(hosts: usize) -> Cluster {
    Cluster::new(
        &[RegionSpec {
            name: "us-east",
            hosts,
            plugins: &["ledger"],
        }],
        &[],
        &[],
    )
}

/// Waits until the client has a connection to every host of `addrs`
/// (true) or to none of them (false).
async fn wait_connected(client: &Client, addrs: &[String], connected: bool) {
    eventually_async(Duration::from_secs(15), || async {
        client
            .hosts()
            .iter()
            .filter(|h| addrs.contains(&h.addr))
            .all(|h| h.connected == connected)
    })
    .await;
}

/// The acceptance scenario: an application calls through two hosts of a
/// region while one is killed with `kill -9` (and started again) and then
/// the other drains. No idempotent call fails; every non-idempotent call is
/// answered (and ran once) or fails with `processed: maybe`/`no` (and ran
/// at most once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_survive_a_killed_host_and_a_drained_one_under_load() {
    let cluster = one_region(2);
    let mut hosts = [cluster.start("us-east", 0), cluster.start("us-east", 1)];
    let addrs: Vec<String> = hosts.iter().map(HostProcess::host_arg).collect();
    let client = Client::connect_any(&addrs, ClientOptions::default())
        .await
        .unwrap();
    wait_connected(&client, &addrs, true).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut located = Vec::new();
    let mut recorded = Vec::new();
    for worker in 0..WORKERS {
        // `locate` is idempotent by the catalog alone: the callers say nothing.
        located.push(tokio::spawn(caller(
            client.clone(),
            "ledger.locate",
            worker,
            stop.clone(),
        )));
        recorded.push(tokio::spawn(caller(
            client.clone(),
            "ledger.record",
            worker,
            stop.clone(),
        )));
    }
    // Calls go to one host (the nearest): kill it once it has served 100.
    let runs_on = |host: &HostProcess| ledger_runs(&[host.log()], "recorded").len();
    let current = || {
        client
            .hosts()
            .iter()
            .position(|h| h.current)
            .expect("a current host")
    };
    let mut busy = 0;
    eventually(Duration::from_secs(15), || {
        busy = current();
        runs_on(&hosts[busy]) >= 100
    });
    let other = 1 - busy;
    let before_kill = runs_on(&hosts[other]);
    hosts[busy].signal(libc::SIGKILL);
    hosts[busy]
        .wait_exit(Duration::from_secs(5))
        .expect("killed");
    let mut logs = vec![hosts[busy].log()];
    // The other host takes the calls.
    eventually(Duration::from_secs(10), || {
        runs_on(&hosts[other]) >= before_kill + 200
    });

    // The killed host comes back on its port; the client reconnects.
    hosts[busy] = cluster.start("us-east", busy);
    wait_connected(&client, &addrs[busy..=busy], true).await;
    // The host calls go to now (either, by their round trips) drains
    // (SIGTERM) under load, once it has served calls: new calls move to the
    // other one.
    let served = hosts.iter().map(runs_on).collect::<Vec<_>>();
    let mut drained = 0;
    eventually(Duration::from_secs(15), || {
        drained = current();
        runs_on(&hosts[drained]) >= served[drained] + 100
    });
    let survivor = 1 - drained;
    let survivor_before = runs_on(&hosts[survivor]);
    hosts[drained].signal(libc::SIGTERM);
    hosts[drained]
        .wait_exit(Duration::from_secs(15))
        .expect("drained and exited");
    logs.push(hosts[drained].log());
    eventually(Duration::from_secs(10), || {
        runs_on(&hosts[survivor]) >= survivor_before + 200
    });
    stop.store(true, Ordering::Relaxed);

    let mut located_outcomes = Vec::new();
    for task in located {
        located_outcomes.extend(task.await.unwrap());
    }
    let mut recorded_outcomes = Vec::new();
    for task in recorded {
        recorded_outcomes.extend(task.await.unwrap());
    }
    hosts[survivor]
        .wait_until_idle(Duration::from_secs(10))
        .await;
    logs.push(hosts[survivor].log());

    // No idempotent call failed.
    let failed: Vec<String> = located_outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.entry)))
        .collect();
    assert_eq!(failed, Vec::<String>::new(), "idempotent calls failed");
    for outcome in &located_outcomes {
        assert_eq!(
            outcome.result,
            Ok(Value::from("us-east")),
            "{}",
            outcome.entry
        );
    }

    // Every non-idempotent call answered ran once; every one that failed
    // says it may or may not have run, and ran at most once.
    let runs = ledger_runs(&logs, "recorded");
    let (mut answered, mut maybe, mut not_run) = (0, 0, 0);
    for outcome in &recorded_outcomes {
        let ran = runs.get(&outcome.entry).copied().unwrap_or(0);
        assert!(ran <= 1, "{} ran {ran} times", outcome.entry);
        match &outcome.result {
            Ok(region) => {
                assert_eq!(*region, Value::from("us-east"));
                assert_eq!(ran, 1, "{} answered but ran {ran} times", outcome.entry);
                answered += 1;
            }
            Err(error) => {
                assert_eq!(
                    error.code,
                    ErrorCode::Unavailable,
                    "{}: {error}",
                    outcome.entry
                );
                match error.processed {
                    Processed::Maybe => maybe += 1,
                    Processed::No => {
                        assert_eq!(ran, 0, "{} said not run but ran", outcome.entry);
                        not_run += 1;
                    }
                    Processed::Yes => panic!("{}: {error}", outcome.entry),
                }
            }
        }
    }
    eprintln!(
        "idempotent: {} calls, 0 failed; non-idempotent: {} calls, {answered} answered, \
         {maybe} failed with processed: maybe, {not_run} with processed: no",
        located_outcomes.len(),
        recorded_outcomes.len()
    );
    // The kill caught non-idempotent calls in flight (8 callers back to
    // back, 5 ms each): the test saw the case it is about.
    assert!(maybe > 0, "no call was in flight at the kill");
    // All three host processes served calls: the killed one, the drained
    // one, and the one left.
    for (i, log) in logs.iter().enumerate() {
        assert!(
            ledger_runs(std::slice::from_ref(log), "recorded").len() >= 100,
            "log {i} shows too few calls"
        );
    }
}

/// A client of a regions file prefers its region's host, uses another
/// region's while its own is down, and comes back when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_prefers_its_region_falls_back_and_comes_back() {
    let cluster = Cluster::new(
        &[
            RegionSpec {
                name: "eu-west",
                hosts: 1,
                plugins: &["ledger"],
            },
            RegionSpec {
                name: "us-east",
                hosts: 1,
                plugins: &["ledger"],
            },
        ],
        &[],
        &[],
    );
    let eu = cluster.start("eu-west", 0);
    let mut us = cluster.start("us-east", 0);
    let options = ClientOptions {
        probe_interval: Duration::from_millis(100),
        ..ClientOptions::default()
    };
    let client = Client::connect_region(cluster.config(), Some("us-east"), options)
        .await
        .unwrap();
    let locate = |entry: &'static str| {
        let client = client.clone();
        async move {
            client
                .call::<_, String>("ledger.locate", (entry, 0))
                .await
                .unwrap()
        }
    };
    assert_eq!(locate("a").await, "us-east");
    let views = client.hosts();
    assert_eq!(
        views
            .iter()
            .map(|h| (h.region.as_deref(), h.preferred))
            .collect::<Vec<_>>(),
        [(Some("eu-west"), false), (Some("us-east"), true)]
    );

    us.signal(libc::SIGKILL);
    us.wait_exit(Duration::from_secs(5)).expect("killed");
    wait_connected(&client, &[us.host_arg()], false).await;
    assert_eq!(locate("b").await, "eu-west");

    let _us = cluster.start("us-east", 0);
    wait_connected(&client, &[eu.host_arg(), us.host_arg()], true).await;
    assert_eq!(locate("c").await, "us-east");

    // A region the file does not name is refused before connecting.
    let error = Client::connect_region(cluster.config(), Some("mars"), ClientOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidArgs);
    assert!(
        error
            .message
            .ends_with("names no region `mars` (it has: eu-west, us-east)"),
        "{}",
        error.message
    );
}

/// Of two equal hosts, calls go to the one with the shorter round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_to_the_host_with_the_shorter_round_trip() {
    let cluster = one_region(2);
    let near = cluster.start("us-east", 0);
    let far = cluster.start("us-east", 1);
    let proxy = Proxy::start(far.addr, Duration::from_millis(20)).await;
    let options = ClientOptions {
        probe_interval: Duration::from_millis(50),
        ..ClientOptions::default()
    };
    // The far host first, so that only the round trip can put it second.
    let client = Client::connect_any([proxy.addr.to_string(), near.host_arg()], options)
        .await
        .unwrap();
    eventually_async(Duration::from_secs(10), || async {
        client.hosts().iter().all(|h| h.rtt.is_some())
    })
    .await;
    let views = client.hosts();
    assert!(views[0].rtt > views[1].rtt, "{views:?}");
    for i in 0..50 {
        let region: String = client
            .call("ledger.record", (format!("near-{i}"), 0))
            .await
            .unwrap();
        assert_eq!(region, "us-east");
    }
    assert!(client.hosts()[1].current, "{:?}", client.hosts());
    let near_runs = ledger_runs(&[near.log()], "recorded");
    let far_runs = ledger_runs(&[far.log()], "recorded");
    assert_eq!((near_runs.len(), far_runs.len()), (50, 0));
}

/// Starts `function` through `client` and returns once the host has read
/// it (the ping behind it is answered), with the call still running.
async fn in_flight(
    client: &Client,
    entry: &str,
    options: CallOptions,
) -> tokio::task::JoinHandle<Result<Value, CallError>> {
    let mut call = Box::pin({
        let (client, args) = (client.clone(), vec![entry.into(), 3000.into()]);
        tokio::task::unconstrained(async move {
            client.call_value_with("ledger.record", args, options).await
        })
    });
    // The first poll writes the call's frame; the ping goes out after it.
    assert!(futures::poll!(call.as_mut()).is_pending());
    let answer = tokio::spawn(call);
    client.ping().await.expect("ping the host behind the call");
    answer
}

/// A call that may have run is tried on another host only when idempotent:
/// per call, or by the client's list of functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_lost_in_flight_is_retried_elsewhere_only_when_idempotent() {
    let cluster = one_region(2);
    let mut near = cluster.start("us-east", 0);
    let far = cluster.start("us-east", 1);
    let proxy = Proxy::start(far.addr, Duration::from_millis(20)).await;
    let addrs = [near.host_arg(), proxy.addr.to_string()];
    let options = ClientOptions {
        probe_interval: Duration::from_millis(50),
        ..ClientOptions::default()
    };
    let plain = Client::connect_any(&addrs, options.clone()).await.unwrap();
    let listed = Client::connect_any(
        &addrs,
        ClientOptions {
            idempotent: vec!["ledger.rec*".into()],
            ..options
        },
    )
    .await
    .unwrap();
    for client in [&plain, &listed] {
        eventually_async(Duration::from_secs(10), || async {
            let views = client.hosts();
            views.iter().all(|h| h.rtt.is_some()) && views[0].rtt < views[1].rtt
        })
        .await;
    }
    let once = CallOptions::default();
    let per_call = CallOptions {
        idempotent: true,
        ..CallOptions::default()
    };
    let calls = [
        in_flight(&plain, "slow-once", once.clone()).await,
        in_flight(&plain, "slow-per-call", per_call).await,
        in_flight(&listed, "slow-listed", once).await,
    ];
    near.signal(libc::SIGKILL);
    near.wait_exit(Duration::from_secs(5)).expect("killed");
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    let error = results[0].clone().unwrap_err();
    assert_eq!(
        (error.code, error.processed),
        (ErrorCode::Unavailable, Processed::Maybe),
        "{error}"
    );
    assert_eq!(results[1], Ok(Value::from("us-east")));
    assert_eq!(results[2], Ok(Value::from("us-east")));
    // The retried ones ran on the far host; the other did not run again.
    let far_runs = ledger_runs(&[far.log()], "recorded");
    let mut ran: Vec<&str> = far_runs.keys().map(String::as_str).collect();
    ran.sort_unstable();
    assert_eq!(ran, ["slow-listed", "slow-per-call"]);
}

/// `wasmrpc call` with several `--host`s, or a regions file and a region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_takes_several_hosts_or_a_region_of_a_regions_file() {
    let cluster = one_region(1);
    let host = cluster.start("us-east", 0);
    let dir = cluster.dir();
    let addr = host.host_arg();
    // A dead address first: the live one answers.
    let call = ["ledger.locate", "\"x\"", "0"];
    let args = [
        &["call", "--host", "127.0.0.1:1", "--host", &addr][..],
        &call,
    ]
    .concat();
    assert_eq!(
        wasmrpc_in(dir, &args),
        (Some(0), "\"us-east\"\n".to_owned(), String::new())
    );
    let config = cluster.config().to_str().unwrap().to_owned();
    let args = [
        &["call", "--config", &config, "--region", "us-east"][..],
        &call,
    ]
    .concat();
    assert_eq!(
        wasmrpc_in(dir, &args),
        (Some(0), "\"us-east\"\n".to_owned(), String::new())
    );
    let args = [
        &["call", "--config", &config, "--region", "mars"][..],
        &call,
    ]
    .concat();
    let (code, _, stderr) = wasmrpc_in(dir, &args);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("names no region `mars` (it has: us-east)"),
        "{stderr}"
    );
    // No host can be reached: each one's reason, at once.
    let args = [
        &["call", "--host", "127.0.0.1:1", "--host", "127.0.0.1:2"][..],
        &call,
    ]
    .concat();
    let (code, _, stderr) = wasmrpc_in(dir, &args);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no host can take the call: cannot connect to `127.0.0.1:1`")
            && stderr.contains("; cannot connect to `127.0.0.1:2`"),
        "{stderr}"
    );
}
