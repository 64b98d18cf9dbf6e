//! Hosts report their own load in `pong` (protocol version 3): the calls
//! they run or forward for every caller, their instances in use and their
//! CPU. A host forwarding calls ranks its peers by it, so a peer that
//! other callers keep busy gets fewer new calls than an idle one.
//!
//! Executions are counted per host process from the `ledger` plugin's log
//! lines (`recorded <entry> in <region>`, for `ledger.record`, which is not
//! idempotent and so never hedged: each call runs once).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmrpc::observe::status::{PeerStatus, ReportedLoad};
use wasmrpc::protocol::{ErrorCode, Hello, Load, Message, Ping, Pong, Role};
use wasmrpc::{CallError, Client};
use wasmrpc_tests::{
    Cluster, HostProcess, RawConn, Read2, RegionSpec, call_in_flight, eventually_some,
};

const WAIT: Duration = Duration::from_secs(5);

fn hello(version: u32) -> Message {
    Message::Hello(Hello {
        version,
        role: Role::Client,
        region: None,
        host_id: None,
        max_in_flight: None,
        token: None,
    })
}

/// Opens a raw connection that says `version` in its `hello`.
fn connect(host: &HostProcess, version: u32) -> RawConn {
    let mut conn = RawConn::connect(host.addr);
    conn.send_message(&hello(version));
    match conn.read(WAIT) {
        Read2::Message(Message::Hello(hello)) => assert_eq!(hello.version, version),
        other => panic!("expected the host's hello, got {other:?}"),
    }
    conn
}

/// Pings over `conn` and returns the `pong`.
fn ping(conn: &mut RawConn, nonce: u64) -> Pong {
    conn.send_message(&Message::Ping(Ping { nonce }));
    match conn.read(WAIT) {
        Read2::Message(Message::Pong(pong)) => {
            assert_eq!(pong.nonce, nonce);
            pong
        }
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// Pings over `conn` until the reported load passes `check`, for at most
/// 10 s; returns that load.
async fn load_when(conn: &mut RawConn, check: impl Fn(&Load) -> bool) -> Load {
    let mut nonce = 100;
    let mut last = None;
    let seen = eventually_some(Duration::from_secs(10), || {
        nonce += 1;
        let load = ping(conn, nonce).load.expect("a version 3 pong has a load");
        last = Some(load);
        std::future::ready(check(&load).then_some(load))
    })
    .await;
    seen.unwrap_or_else(|| panic!("the load never passed the check; last: {last:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pong_reports_the_hosts_load_to_callers_of_version_3_only() {
    let host = HostProcess::builder()
        .plugins(&["ledger"])
        .args(&["--max-instances", "64"])
        .start();

    // Version 2: the pong it knows, nonce alone.
    let mut old = connect(&host, 2);
    assert_eq!(
        ping(&mut old, 7),
        Pong {
            nonce: 7,
            load: None
        }
    );

    // Version 3: idle, with the pool's capacity and, once the sampler has
    // two readings, the CPU use.
    let mut new = connect(&host, 3);
    let idle = load_when(&mut new, |l| l.cpu.is_some()).await;
    assert_eq!(
        (idle.in_flight, idle.instances, idle.instances_max),
        (0, 0, 64)
    );
    assert!((0.0..=1.0).contains(&idle.cpu.unwrap()), "{idle:?}");

    // A call running: one call in flight, one instance in use.
    let client = host.client().await;
    let running = call_in_flight(&client, "ledger.locate", vec!["held".into(), 1500.into()]).await;
    let busy = ping(&mut new, 8).load.unwrap();
    assert_eq!(
        (busy.in_flight, busy.instances, busy.instances_max),
        (1, 1, 64)
    );
    // The old caller still gets no load, and its connection is fine.
    assert_eq!(ping(&mut old, 9).load, None);
    let answer = running.await.unwrap().unwrap();
    assert_eq!(answer, "test".into());
    let done = load_when(&mut new, |l| l.in_flight == 0 && l.instances == 0).await;
    assert_eq!(done.instances_max, 64);

    // A version this host does not speak yet.
    let mut newer = RawConn::connect(host.addr);
    newer.send_message(&hello(4));
    let messages = newer.read_until_closed(WAIT);
    let Some(Message::Error(error)) = messages.last() else {
        panic!("expected a connection-level error, got {messages:?}");
    };
    assert_eq!(
        (error.code, error.message.as_str()),
        (
            ErrorCode::ProtocolError,
            "unsupported protocol version 4; this host speaks versions 1 to 3"
        )
    );
}

/// How many `ledger.record` entries starting with `prefix` host `host` ran.
fn ran(host: &HostProcess, prefix: &str) -> usize {
    let marker = format!("recorded {prefix}");
    host.log().matches(&marker).count()
}

/// Makes `calls` calls of `ledger.record` through `client` from `workers`
/// tasks at once, entries `PREFIX-WORKER-N`, each working `work_ms`; every
/// one must be answered from region `b`.
async fn record_through(client: &Client, prefix: &str, workers: usize, calls: usize, work_ms: u32) {
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let client = client.clone();
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            for n in 0..calls / workers {
                let entry = format!("{prefix}-{worker}-{n}");
                let region: String = client
                    .call("ledger.record", (entry.as_str(), work_ms))
                    .await
                    .unwrap_or_else(|e| panic!("{entry}: {e}"));
                assert_eq!(region, "b");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Calls `ledger.locate` on `client` from `workers` tasks, each working
/// `work_ms`, back to back until `stop` (or a call fails); each task ends
/// with its calls' answers, the first failure last.
fn keep_busy(
    client: &Client,
    workers: usize,
    work_ms: u32,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Result<String, CallError>>>> {
    (0..workers)
        .map(|worker| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let entry = format!("busy-{worker}-{}", answers.len());
                    let answer = client
                        .call("ledger.locate", (entry.as_str(), work_ms))
                        .await;
                    let failed = answer.is_err();
                    answers.push(answer);
                    if failed {
                        break;
                    }
                }
                answers
            })
        })
        .collect()
}

/// Whether `a`'s smoothed round trip, as C measures it, is under 3 times
/// `b`'s.
fn near(a: &PeerStatus, b: &PeerStatus) -> bool {
    match (a.rtt_ms, b.rtt_ms) {
        (Some(a), Some(b)) => a < 3.0 * b,
        _ => false,
    }
}

/// Waits, for at most 15 s, until host `c`'s `/status` shows its peers at
/// `b1` and `b2` as `check` wants; returns their views.
async fn until_c_sees(
    c: &HostProcess,
    b1: SocketAddr,
    b2: SocketAddr,
    check: impl Fn(&PeerStatus, &PeerStatus) -> bool,
) -> [PeerStatus; 2] {
    let find = |peers: &[PeerStatus], addr: SocketAddr| {
        let addr = addr.to_string();
        peers.iter().find(|p| p.address == addr).cloned()
    };
    let seen = eventually_some(Duration::from_secs(15), || async {
        let peers = c.status().await.peers;
        let pair = [find(&peers, b1)?, find(&peers, b2)?];
        check(&pair[0], &pair[1]).then_some(pair)
    })
    .await;
    seen.unwrap_or_else(|| {
        panic!(
            "C never saw its peers as wanted; now: {}",
            describe(&c.status_now().peers)
        )
    })
}

fn describe(peers: &[PeerStatus]) -> String {
    peers
        .iter()
        .map(|p| {
            format!(
                "{} rtt {:?} ms, ours {}, score {:?}, reported {:?}",
                p.address, p.rtt_ms, p.in_flight, p.score, p.reported
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The scenario: hosts B1 and B2 of region `b` serve `ledger`; host C of
/// region `c` serves nothing and forwards. A second client keeps B2 busy
/// with 32 calls in flight of CPU work, straight to B2, which C cannot see
/// from its own calls: only B2's report tells it. Calls through C then go
/// to B1 (at least 80% of them, with 6 in flight); once the load stops and
/// B2 reports itself idle, calls with 24 in flight reach B2 again (at least
/// 20% of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_busy_with_other_callers_gets_fewer_forwarded_calls() {
    let mut cluster = Cluster::new(
        &[
            RegionSpec {
                name: "b",
                hosts: 2,
                plugins: &["ledger"],
            },
            RegionSpec {
                name: "c",
                hosts: 1,
                plugins: &[],
            },
        ],
        &[],
        &[],
    );
    cluster.with_admin();
    let start = std::time::Instant::now();
    let hosts = cluster.start_all_linked();
    eprintln!("linked ({:?})", start.elapsed());
    let (b1, b2, c) = (&hosts[0], &hosts[1], &hosts[2]);
    let (b1_listed, b2_listed) = (cluster.listed("b", 0), cluster.listed("b", 1));
    let through_c = c.client().await;

    // B2 saturated by a caller C does not see.
    let stop = Arc::new(AtomicBool::new(false));
    let on_b2 = Client::connect(b2.addr).await.unwrap();
    let busy = keep_busy(&on_b2, 32, 100, &stop);
    // C has B2's report, and sees B1 and B2 at about the same round trip
    // (the first pings of a link can be slow, and the smoothed figure takes
    // a few seconds to forget them).
    let peers = until_c_sees(c, b1_listed, b2_listed, |b1, b2| {
        b2.reported.as_ref().is_some_and(|r| r.in_flight >= 24) && near(b1, b2)
    })
    .await;
    let ReportedLoad { instances_max, .. } = peers[1].reported.clone().unwrap();
    assert_eq!(instances_max, 256);
    // Operators see it too.
    let metrics = c.metrics().await;
    let (on_b1_labels, on_b2_labels) = (b1_listed.to_string(), b2_listed.to_string());
    let of = |name: &str, address: &str| {
        metrics
            .get(name, &[("region", "b"), ("address", address)])
            .unwrap_or_else(|| panic!("no {name} for {address}: {}", metrics.text))
    };
    let in_flight = of("wasmrpc_peer_reported_in_flight", &on_b2_labels);
    let instances = of("wasmrpc_peer_reported_instances", &on_b2_labels);
    let cpu = of("wasmrpc_peer_reported_cpu", &on_b2_labels);
    assert!(
        in_flight >= 24.0 && instances >= 1.0,
        "{in_flight} {instances}"
    );
    assert!((0.0..=1.0).contains(&cpu), "{cpu}");
    assert_eq!(of("wasmrpc_peer_reported_in_flight", &on_b1_labels), 0.0);
    assert!(
        of("wasmrpc_peer_score", &on_b2_labels) > of("wasmrpc_peer_score", &on_b1_labels),
        "{}",
        metrics.text
    );
    eprintln!("phase 1 starts: {}", describe(&c.status().await.peers));

    // Phase 1: 60 calls through C, 6 at a time, go to B1: B2's 32 calls
    // in flight and its CPU outweigh C's own calls in flight to B1 unless
    // B1's round trip is over 5 times B2's. By round trip and C's own
    // calls alone, B2 would take its share as soon as B1's round trip is
    // over 0.4 times B2's, and a busy host often answers pings sooner than
    // an idle one (its threads are awake).
    record_through(&through_c, "one", 6, 60, 0).await;
    let (on_b1, on_b2_runs) = (ran(b1, "one-"), ran(b2, "one-"));
    eprintln!(
        "phase 1 ({:?}): B1 ran {on_b1}, B2 ran {on_b2_runs}",
        start.elapsed()
    );
    assert_eq!(on_b1 + on_b2_runs, 60);
    assert!(
        on_b1 >= 48,
        "B1 ran {on_b1} of 60 calls while B2 was busy (B2 ran {on_b2_runs}); {}",
        describe(&c.status().await.peers)
    );

    // The load stops; B2 says so within a ping or two.
    stop.store(true, Ordering::Relaxed);
    for task in busy {
        for answer in task.await.unwrap() {
            assert_eq!(answer.unwrap(), "b");
        }
    }
    until_c_sees(c, b1_listed, b2_listed, |b1, b2| {
        let idle = b2.reported.as_ref().is_some_and(|r| {
            r.in_flight == 0 && r.instances == 0 && r.cpu.is_some_and(|cpu| cpu < 0.25)
        });
        idle && near(b2, b1)
    })
    .await;
    eprintln!("phase 2 starts: {}", describe(&c.status().await.peers));

    // Phase 2: calls through C, 24 at a time, each working 50 ms, spread
    // to B2 as C's calls in flight to B1 grow. With B2's round trip up to
    // 3 times B1's, B2 would still get about a sixth of them, and as B1's
    // CPU rises with the work, more; a report that still counted would
    // leave it next to none.
    record_through(&through_c, "two", 24, 192, 50).await;
    let (on_b1, on_b2_runs) = (ran(b1, "two-"), ran(b2, "two-"));
    eprintln!(
        "phase 2 ({:?}): B1 ran {on_b1}, B2 ran {on_b2_runs}",
        start.elapsed()
    );
    assert_eq!(on_b1 + on_b2_runs, 192);
    assert!(
        on_b2_runs >= 39,
        "B2 ran {on_b2_runs} of 192 calls once idle (B1 ran {on_b1}); {}",
        describe(&c.status().await.peers)
    );
}
