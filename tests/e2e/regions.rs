//! Several regions from one `regions.toml`: forwarding, latency-aware routing,
//! failover, loop prevention and deadlines across hops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ciborium::Value;
use wasmrpc::protocol::{Call, Message, encode_message};
use wasmrpc::{CallOptions, Client, ErrorCode, Processed};
use wasmrpc_tests::{
    Cluster, HostProcess, Proxy, Read2, RegionSpec, assert_call_error, assert_call_error_prefix,
    cbor, eventually, eventually_async, eventually_some, json,
};

/// Waits until `client`'s catalog lists `function` in exactly `regions`.
async fn wait_for(client: &Client, function: &str, regions: &[&str]) {
    let listed = eventually_async(Duration::from_secs(10), || async {
        let catalog = client.list().await.expect("list");
        catalog
            .iter()
            .find(|f| f.name == function)
            .is_some_and(|info| info.regions == regions)
    })
    .await;
    assert!(
        listed,
        "`{function}` never listed in {regions:?}; catalog: {:?}",
        client.list().await
    );
}

/// Waits until `edge`'s `/status` shows its link to the host at `peer`
/// lost, once, and not back up: it has seen the killed host's connection
/// close.
async fn wait_for_lost_link(edge: &HostProcess, peer: SocketAddr) {
    let seen = edge
        .wait_for_peer(peer, Duration::from_secs(10), |p| p.health == "down")
        .await;
    assert_eq!(seen.links_lost, 1, "{seen:?}");
}

fn args(items: &[Value]) -> Vec<Value> {
    items.to_vec()
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// `eu-west` (no plugins) in front of two `us-east` hosts serving `ledger`,
/// all started and linked: (cluster, edge, first us-east, second us-east).
fn edge_and_two_ledger_hosts() -> (Cluster, HostProcess, HostProcess, HostProcess) {
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
    let mut hosts = cluster.start_all_linked().into_iter();
    let (edge, first, second) = (
        hosts.next().unwrap(),
        hosts.next().unwrap(),
        hosts.next().unwrap(),
    );
    (cluster, edge, first, second)
}

fn sample() -> Cluster {
    Cluster::new(
        &[
            RegionSpec {
                name: "eu-west",
                hosts: 1,
                plugins: &["math", "greeter"],
            },
            RegionSpec {
                name: "us-east",
                hosts: 2,
                plugins: &["orders", "math"],
            },
            RegionSpec {
                name: "ap-south",
                hosts: 1,
                plugins: &["inventory"],
            },
        ],
        &[],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cross_regions_through_forwarding_and_nested_calls() {
    let cluster = sample();
    let _hosts = cluster.start_all();
    let eu = Client::connect(cluster.listed("eu-west", 0)).await.unwrap();
    wait_for(&eu, "inventory.stock.reserve", &["ap-south"]).await;
    wait_for(&eu, "orders.place", &["us-east"]).await;
    for index in 0..2 {
        let us = Client::connect(cluster.listed("us-east", index))
            .await
            .unwrap();
        wait_for(&us, "inventory.stock.reserve", &["ap-south"]).await;
    }

    let reservation = eu
        .call_value(
            "inventory.stock.reserve",
            args(&[text("sku-1"), Value::from(3)]),
        )
        .await
        .unwrap();
    assert_eq!(
        json(&reservation),
        r#"{"sku":"sku-1","quantity":3,"warehouse":"lisbon","reservation-id":"R-sku-1-3"}"#
    );
    // client → eu-west → us-east (orders) → ap-south (inventory)
    let order = eu
        .call_value(
            "orders.place",
            args(&[text("ada"), text("sku-1"), Value::from(2)]),
        )
        .await
        .unwrap();
    assert_eq!(
        json(&order),
        r#"{"order-id":"O-ada-R-sku-1-2","customer":"ada","sku":"sku-1","quantity":2,"reservation-id":"R-sku-1-2","warehouse":"lisbon","region":"us-east"}"#
    );
    // Errors keep the region that produced them.
    let err = eu
        .call_value(
            "inventory.stock.reserve",
            args(&[text("sku-2"), Value::from(5)]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::HandlerError);
    assert_eq!(err.region.as_deref(), Some("ap-south"));
    assert_eq!(err.detail, Some(cbor(r#"{"insufficient": 3}"#)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_lists_every_function_with_its_regions() {
    let cluster = sample();
    let _hosts = cluster.start_all();
    for (region, index) in [
        ("eu-west", 0),
        ("us-east", 0),
        ("us-east", 1),
        ("ap-south", 0),
    ] {
        let client = Client::connect(cluster.listed(region, index))
            .await
            .unwrap();
        wait_for(&client, "inventory.stock.reserve", &["ap-south"]).await;
        wait_for(&client, "orders.place", &["us-east"]).await;
        wait_for(&client, "greeter.greet", &["eu-west"]).await;
        wait_for(&client, "math.add", &["eu-west", "us-east"]).await;
        let catalog = client.list().await.unwrap();
        assert_eq!(
            catalog.len(),
            3 + 6 + 25 + 1 + 1,
            "at {region}: {catalog:?}"
        );
    }
}

/// Answers counted by serving region, shared by the streams of a test.
type Served = Arc<std::sync::Mutex<HashMap<String, usize>>>;

fn served_by(served: &Served, region: &str) -> usize {
    served.lock().unwrap().get(region).copied().unwrap_or(0)
}

fn served_in_all(served: &Served) -> usize {
    served.lock().unwrap().values().sum()
}

/// Calls `ledger.locate` (idempotent) in a loop until `stop`, returning the
/// serving region of every call, and the errors; counts the answers in
/// `served` as they come.
async fn locate_stream(
    client: Client,
    stop: Arc<AtomicBool>,
    served: Served,
) -> (Vec<String>, Vec<String>) {
    let mut regions = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        match client
            .call_value(
                "ledger.locate",
                args(&[text(&format!("l{i}")), Value::from(5)]),
            )
            .await
        {
            Ok(Value::Text(region)) => {
                *served.lock().unwrap().entry(region.clone()).or_default() += 1;
                regions.push(region);
            }
            Ok(other) => errors.push(format!("unexpected {other:?}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (regions, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_prefer_the_near_region_and_fail_over_to_the_far_one() {
    let cluster = Cluster::new(
        &[
            RegionSpec {
                name: "edge",
                hosts: 1,
                plugins: &[],
            },
            RegionSpec {
                name: "near",
                hosts: 1,
                plugins: &["ledger"],
            },
            RegionSpec {
                name: "far",
                hosts: 1,
                plugins: &["ledger"],
            },
        ],
        &[],
        &[("far", 0)],
    );
    // Everyone reaches `far` through a proxy adding 50 ms each way.
    let listener = tokio::net::TcpListener::bind(cluster.listed("far", 0))
        .await
        .unwrap();
    let _proxy = Proxy::start_on(listener, cluster.bound("far", 0), Duration::from_millis(50));
    let edge = cluster.host("edge", 0).admin().start();
    let near = cluster.start("near", 0);
    let _far = cluster.start("far", 0);
    let client = Client::connect(cluster.listed("edge", 0)).await.unwrap();
    wait_for(&client, "ledger.locate", &["far", "near"]).await;
    // Pings (every 500 ms) have measured both links: the proxy's 100 ms
    // round trip shows on the far one.
    edge.wait_for_peer(cluster.listed("near", 0), Duration::from_secs(10), |p| {
        p.rtt_ms.is_some()
    })
    .await;
    edge.wait_for_peer(cluster.listed("far", 0), Duration::from_secs(10), |p| {
        p.rtt_ms.is_some_and(|ms| ms >= 100.0)
    })
    .await;

    let mut served: HashMap<String, usize> = HashMap::new();
    for i in 0..200 {
        let region = client
            .call_value(
                "ledger.locate",
                args(&[text(&format!("p{i}")), Value::from(0)]),
            )
            .await
            .unwrap();
        let Value::Text(region) = region else {
            panic!("{region:?}")
        };
        *served.entry(region).or_default() += 1;
    }
    let near_share = served.get("near").copied().unwrap_or(0);
    assert!(
        near_share >= 180,
        "only {near_share} of 200 calls went to the near region: {served:?}"
    );

    // Kill the near region's host during a stream of idempotent calls.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Served::default();
    let streams: Vec<_> = (0..4)
        .map(|_| tokio::spawn(locate_stream(client.clone(), stop.clone(), served.clone())))
        .collect();
    let streaming = eventually_async(Duration::from_secs(10), || async {
        served_by(&served, "near") >= 4
    })
    .await;
    assert!(streaming, "the streams got no answers from the near region");
    let far_before = served_by(&served, "far");
    near.signal(libc::SIGKILL);
    // The edge saw the host go, and the far region answers in its place.
    wait_for_lost_link(&edge, cluster.listed("near", 0)).await;
    let took_over = eventually_async(Duration::from_secs(10), || async {
        served_by(&served, "far") >= far_before + 4
    })
    .await;
    assert!(took_over, "the far region did not take over");
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for stream in streams {
        let (regions, errors) = stream.await.unwrap();
        assert_eq!(errors, Vec::<String>::new(), "calls failed during failover");
        all.extend(regions);
    }
    assert!(
        all.iter().any(|r| r == "near"),
        "no call ran before the kill"
    );
    assert_eq!(
        all.last().map(String::as_str),
        Some("far"),
        "the far region did not take over"
    );
    let after = client
        .call_value("ledger.locate", args(&[text("after"), Value::from(0)]))
        .await
        .unwrap();
    assert_eq!(after, text("far"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_of_two_hosts_of_a_region_fails_no_idempotent_call() {
    let (cluster, edge, first, _second) = edge_and_two_ledger_hosts();
    let client = Client::connect(cluster.listed("eu-west", 0)).await.unwrap();
    wait_for(&client, "ledger.locate", &["us-east"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let served = Served::default();
    let streams: Vec<_> = (0..6)
        .map(|_| tokio::spawn(locate_stream(client.clone(), stop.clone(), served.clone())))
        .collect();
    let streaming = eventually_async(Duration::from_secs(10), || async {
        served_in_all(&served) >= 6
    })
    .await;
    assert!(streaming, "the streams got no answers");
    let at_kill = served_in_all(&served);
    first.signal(libc::SIGKILL);
    // The edge saw the host go, and calls go on past it: two per stream
    // after the kill, and more than the 20 the check below wants.
    wait_for_lost_link(&edge, first.addr).await;
    let went_on = eventually_async(Duration::from_secs(10), || async {
        let now = served_in_all(&served);
        now >= at_kill + 12 && now > 20
    })
    .await;
    assert!(went_on, "calls stopped when one us-east host died");
    stop.store(true, Ordering::Relaxed);
    let mut calls = 0;
    for stream in streams {
        let (regions, errors) = stream.await.unwrap();
        assert_eq!(
            errors,
            Vec::<String>::new(),
            "calls failed when one us-east host died"
        );
        assert!(regions.iter().all(|r| r == "us-east"));
        calls += regions.len();
    }
    assert!(calls > 20, "only {calls} calls completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_region_is_unavailable_by_name_and_recovers_after_restart() {
    let cluster = Cluster::pair(("eu-west", &[]), ("ap-south", &["inventory"]));
    let _edge = cluster.start("eu-west", 0);
    let mut south = cluster.start("ap-south", 0);
    let client = Client::connect(cluster.listed("eu-west", 0)).await.unwrap();
    wait_for(&client, "inventory.stock.reserve", &["ap-south"]).await;
    let reserve = || {
        let client = client.clone();
        async move {
            let options = CallOptions {
                timeout: Some(Duration::from_secs(2)),
                ..CallOptions::default()
            };
            client
                .call_value_with(
                    "inventory.stock.reserve",
                    args(&[text("sku-1"), Value::from(1)]),
                    options,
                )
                .await
        }
    };
    assert!(reserve().await.is_ok());

    south.signal(libc::SIGKILL);
    south
        .wait_exit(Duration::from_secs(5))
        .expect("killed host exits");
    let start = Instant::now();
    let result = reserve().await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    let err = assert_call_error_prefix(
        result,
        ErrorCode::Unavailable,
        Processed::No,
        "no host serving `inventory.stock.reserve` answered; tried region `ap-south` (",
    );
    assert_eq!(err.region.as_deref(), Some("eu-west"));

    let _south = cluster.start("ap-south", 0);
    let recovered =
        eventually_some(Duration::from_secs(5), || async { reserve().await.ok() }).await;
    let Some(value) = recovered else {
        panic!("still failing after 5 s: {:?}", reserve().await);
    };
    assert_eq!(
        json(&value),
        r#"{"sku":"sku-1","quantity":1,"warehouse":"lisbon","reservation-id":"R-sku-1-1"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_idempotent_function_never_runs_twice_across_failover() {
    let (cluster, edge, first, second) = edge_and_two_ledger_hosts();
    let client = Client::connect(cluster.listed("eu-west", 0)).await.unwrap();
    wait_for(&client, "ledger.record", &["us-east"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (client, stop, answered) = (client.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let entry = format!("e{w}-{i}");
                    let result = client
                        .call_value("ledger.record", args(&[text(&entry), Value::from(20)]))
                        .await;
                    if result.is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    outcomes.push((entry, result));
                }
                outcomes
            })
        })
        .collect();
    let recorded = |host: &HostProcess| host.log().matches("recorded ").count();
    let flowing = eventually_async(Duration::from_secs(10), || async {
        recorded(&first) + recorded(&second) >= 6
    })
    .await;
    assert!(flowing, "no calls ran");
    // Kill the host serving more of the calls now, so that the kill catches
    // some in flight.
    let before = (recorded(&first), recorded(&second));
    // A sampling window, not a wait: which host ran more calls in 100 ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (killed, survivor) = if recorded(&first) - before.0 >= recorded(&second) - before.1 {
        (&first, &second)
    } else {
        (&second, &first)
    };
    let at_kill = answered.load(Ordering::Relaxed);
    killed.signal(libc::SIGKILL);
    // The edge saw the host go, and calls go on past it: one per worker
    // after the kill, and more than the 20 the check below wants.
    wait_for_lost_link(&edge, killed.addr).await;
    let went_on = eventually_async(Duration::from_secs(10), || async {
        let now = answered.load(Ordering::Relaxed);
        now >= at_kill + 6 && now > 20
    })
    .await;
    assert!(went_on, "calls stopped when a us-east host died");
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.unwrap());
    }

    let logs = format!("{}\n{}", killed.log(), survivor.log());
    let mut executed: HashMap<&str, usize> = HashMap::new();
    for line in logs.lines() {
        if let Some(rest) = line.split("recorded ").nth(1) {
            let entry = rest.split(' ').next().unwrap();
            *executed.entry(entry).or_default() += 1;
        }
    }
    let mut ok = 0;
    let mut maybe = 0;
    {
        for (entry, result) in outcomes {
            let runs = executed.get(entry.as_str()).copied().unwrap_or(0);
            assert!(runs <= 1, "{entry} ran {runs} times");
            match result {
                Ok(region) => {
                    assert_eq!(region, text("us-east"));
                    assert_eq!(runs, 1, "{entry} succeeded but ran {runs} times");
                    ok += 1;
                }
                Err(e) => {
                    // Only calls caught in flight on the killed host may fail,
                    // and they say they may have run.
                    assert_eq!(e.processed, Processed::Maybe, "{entry}: {e}");
                    maybe += 1;
                }
            }
        }
    }
    assert!(ok > 20, "only {ok} calls succeeded");
    assert!(
        maybe <= 6,
        "{maybe} calls failed; at most one per worker was in flight"
    );
    // The kill caught calls in flight, and the router did not run them again
    // elsewhere: had it retried them, they would have answered.
    assert!(
        maybe >= 1,
        "no call was in flight on the killed host, or a call that may have run was retried"
    );
    let runs: usize = executed.values().sum();
    assert!(
        runs <= ok + maybe,
        "{runs} executions of {} calls",
        ok + maybe
    );
}

/// A batch of calls read in one go is forwarded in one write to the peer
/// (the connection corks its thread); every call still gets its own exact
/// answer, errors included, and the host goes on serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_forwarded_calls_in_one_write_answers_every_call_exactly() {
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
        &[],
        &[],
    );
    let hosts = cluster.start_all_linked();
    let edge = Client::connect(cluster.listed("edge", 0)).await.unwrap();
    wait_for(&edge, "math.add", &["core"]).await;

    let mut conn = wasmrpc_tests::RawConn::handshake(cluster.listed("edge", 0));
    let call = |id: u64, function: &str, a: i64, b: i64| {
        let message = Message::Call(Call {
            id,
            function: function.into(),
            args: vec![Value::from(a), Value::from(b)],
            deadline_ms: None,
            hops: 0,
            visited: Vec::new(),
            metadata: Default::default(),
            principal: None,
        });
        encode_message(&message, 1 << 20).unwrap()
    };
    for round in 0..3i64 {
        // 100 calls in one write: every tenth divides by zero.
        let mut batch = Vec::new();
        for id in 1..=100u64 {
            let n = round * 1000 + id as i64;
            if id % 10 == 0 {
                batch.extend_from_slice(&call(id, "math.divide", n, 0));
            } else {
                batch.extend_from_slice(&call(id, "math.add", n, 7));
            }
        }
        conn.send(&batch);
        let mut answered = HashMap::new();
        while answered.len() < 100 {
            match conn.read(Duration::from_secs(10)) {
                Read2::Message(Message::Reply(reply)) => {
                    assert!(answered.insert(reply.id, Ok(reply.value)).is_none());
                }
                Read2::Message(Message::Error(error)) => {
                    let id = error.id.expect("a call's error");
                    assert!(answered.insert(id, Err(error)).is_none());
                }
                other => panic!("round {round}: {} answers, then {other:?}", answered.len()),
            }
        }
        for id in 1..=100u64 {
            let n = round * 1000 + id as i64;
            match &answered[&id] {
                Ok(value) if id % 10 != 0 => assert_eq!(value, &Value::from(n + 7), "call {id}"),
                Err(error) if id % 10 == 0 => {
                    let error = assert_call_error(
                        error,
                        ErrorCode::HandlerError,
                        Processed::Yes,
                        "division by zero",
                    );
                    assert_eq!(error.region.as_deref(), Some("core"), "call {id}");
                    assert_eq!(error.detail, Some(text("division by zero")), "call {id}");
                }
                other => panic!("call {id}: {other:?}"),
            }
        }
    }
    // The edge host serves other callers as before.
    assert_eq!(
        edge.call_value("math.add", vec![Value::from(40), Value::from(2)])
            .await
            .unwrap(),
        Value::from(42)
    );
    drop(hosts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_loops_and_forged_hops_are_loop_detected() {
    let cluster = Cluster::new(
        &[
            RegionSpec {
                name: "a",
                hosts: 1,
                plugins: &[],
            },
            RegionSpec {
                name: "b",
                hosts: 1,
                plugins: &[],
            },
            RegionSpec {
                name: "c",
                hosts: 1,
                plugins: &["math"],
            },
        ],
        // Nobody serves `ghost.*`, but the routes send it around the ring.
        &[("ghost.*", &["a", "b", "c"])],
        &[],
    );
    let [a, b, c]: [HostProcess; 3] = cluster.start_all_linked().try_into().ok().unwrap();
    let client = Client::connect(cluster.listed("a", 0)).await.unwrap();
    wait_for(&client, "math.add", &["c"]).await;

    let err = assert_call_error(
        client.call_value("ghost.boo", vec![]).await,
        ErrorCode::LoopDetected,
        Processed::No,
        "no host's catalog lists `ghost.boo`, and the regions its route names were all visited \
         (a, b; visited: a, b): check [routes] for a cycle",
    );
    // a → b → c (b is preferred by the route), and c finds every region visited.
    assert_eq!(err.region.as_deref(), Some("c"));
    // Counted by the hosts that forwarded: one first attempt each.
    let first_attempts = |to: &'static str| [("region", to), ("kind", "first")];
    let (ma, mb, mc) = (a.metrics().await, b.metrics().await, c.metrics().await);
    assert_eq!(
        ma.get("wasmrpc_forward_attempts_total", &first_attempts("b")),
        Some(1.0),
        "{}",
        ma.text
    );
    assert_eq!(
        mb.get("wasmrpc_forward_attempts_total", &first_attempts("c")),
        Some(1.0),
        "{}",
        mb.text
    );
    for (m, attempts) in [(&ma, 1.0), (&mb, 1.0), (&mc, 0.0)] {
        assert_eq!(
            m.sum("wasmrpc_forward_attempts_total", &[]),
            attempts,
            "a → b → c, then every region is visited: {}",
            m.text
        );
    }

    // A forged hop count at the limit: the call may not be forwarded.
    let forged = |hops: u32, visited: &[&str]| CallOptions {
        hops,
        visited: visited.iter().map(|s| (*s).to_owned()).collect(),
        ..CallOptions::default()
    };
    let add = args(&[Value::from(1), Value::from(2)]);
    let err = client
        .call_value_with("math.add", add.clone(), forged(8, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LoopDetected);
    assert_eq!(
        err.message,
        "forwarding `math.add` would exceed the hop limit of 8"
    );
    let err = client
        .call_value_with("math.add", add.clone(), forged(9, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LoopDetected);
    assert_eq!(
        err.message,
        "`math.add` arrived after 9 hops, over the hop limit of 8"
    );
    // A forged visited list naming the only region that serves it.
    let err = client
        .call_value_with("math.add", add.clone(), forged(0, &["c"]))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LoopDetected);
    assert_eq!(
        err.message,
        "every region serving `math.add` was already visited (c; visited: c)"
    );
    // Honest calls still work.
    assert_eq!(
        client.call_value("math.add", add).await.unwrap(),
        Value::from(3)
    );
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; after the `)` they are 12 and 13.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_deadline_stops_the_remote_guest() {
    let cluster = Cluster::pair(("eu-west", &[]), ("us-east", &["misbehave"]));
    let _edge = cluster.start("eu-west", 0);
    let remote = cluster.start("us-east", 0);
    let client = Client::connect(cluster.listed("eu-west", 0)).await.unwrap();
    wait_for(&client, "misbehave.spin", &["us-east"]).await;

    let start = Instant::now();
    let options = CallOptions {
        timeout: Some(Duration::from_millis(300)),
        ..CallOptions::default()
    };
    let err = client
        .call_value_with("misbehave.spin", vec![], options)
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code, ErrorCode::DeadlineExceeded);
    assert_eq!(err.region.as_deref(), Some("us-east"));
    assert!(took < Duration::from_millis(400), "took {took:?}");

    // The remote guest is stopped: the remote host is idle afterwards.
    // Durations under test, not waits: the guest must be stopped 50 ms
    // after the deadline's error, and stay stopped over 500 ms.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = cpu_ticks(remote.pid());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let burnt = cpu_ticks(remote.pid()) - before;
    assert!(
        burnt <= 10,
        "remote host used {burnt} ticks in 0.5 s after the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_across_two_hops_stops_the_remote_guest() {
    use wasmrpc::protocol::{Call, Cancel, Message};
    use wasmrpc_tests::{RawConn, Read2};

    let cluster = Cluster::pair(("eu-west", &[]), ("us-east", &["misbehave"]));
    let _edge = cluster.start("eu-west", 0);
    let remote = cluster.start("us-east", 0);
    let client = Client::connect(cluster.listed("eu-west", 0)).await.unwrap();
    wait_for(&client, "misbehave.spin", &["us-east"]).await;

    let edge = cluster.listed("eu-west", 0);
    let pid = remote.pid();
    let (reply, idle_ticks, busy_ticks) = tokio::task::spawn_blocking(move || {
        let mut conn = RawConn::handshake(edge);
        conn.send_message(&Message::Call(Call {
            id: 1,
            function: "misbehave.spin".into(),
            args: vec![],
            deadline_ms: Some(10_000),
            hops: 0,
            visited: vec![],
            metadata: Default::default(),
            principal: None,
        }));
        // The call reached the remote host and its guest spins there.
        let sent = cpu_ticks(pid);
        let spinning = eventually(Duration::from_secs(10), || cpu_ticks(pid) >= sent + 3);
        assert!(spinning, "the remote guest never started spinning");
        // Durations under test, not waits: the guest spins through 400 ms,
        // is stopped 50 ms after the cancel's answer, and stays stopped
        // over 500 ms.
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_millis(400));
        let busy = cpu_ticks(pid) - before;
        conn.send_message(&Message::Cancel(Cancel { id: 1 }));
        let reply = conn.read(Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(50));
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_millis(500));
        (reply, cpu_ticks(pid) - before, busy)
    })
    .await
    .unwrap();
    match reply {
        Read2::Message(Message::Error(error)) => {
            assert_eq!(error.id, Some(1));
            assert_eq!(error.code, ErrorCode::Cancelled);
            assert_eq!(error.processed, Processed::Maybe);
        }
        other => panic!("expected `cancelled`, got {other:?}"),
    }
    assert!(
        busy_ticks >= 8,
        "the remote guest was not spinning ({busy_ticks} ticks in 0.4 s)"
    );
    assert!(
        idle_ticks <= 10,
        "remote host used {idle_ticks} ticks in 0.5 s after the cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_links_carry_frames_up_to_the_hosts_own_limit() {
    // 8 MiB frames and guest output on both hosts; a 5 MiB byte string each
    // way is over the 4 MiB default.
    let limits = ["--max-frame-kib", "8192", "--max-guest-output-kib", "8192"];
    let cluster = Cluster::pair(("eu-west", &[]), ("us-east", &["greeter"]));
    let _serving = cluster.host("us-east", 0).args(&limits).start();
    let edge = cluster.host("eu-west", 0).args(&limits).start();
    let options = wasmrpc::ClientOptions {
        max_frame: 8 << 20,
        ..wasmrpc::ClientOptions::default()
    };
    let client = Client::connect_with(edge.addr, options).await.unwrap();
    wait_for(&client, "greeter.echo.echo-bytes", &["us-east"]).await;
    let big: Vec<u8> = (0..5 << 20).map(|i: usize| (i % 251) as u8).collect();
    let echoed = client
        .call_value("greeter.echo.echo-bytes", vec![Value::Bytes(big.clone())])
        .await;
    assert_eq!(echoed, Ok(Value::Bytes(big)));
}
