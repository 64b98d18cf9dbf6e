//! Nothing a client, a peer or a guest does can crash the host, stall it,
//! lose a call or grow its memory without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ciborium::Value;
use tokio::task::JoinHandle;
use wasmrpc::protocol::{Call, Cancel, ErrorCode, ErrorReply, Message, Processed};
use wasmrpc::{CallOptions, Client};
use wasmrpc_tests::{
    HostProcess, RawConn, Read2, assert_adds, assert_call_error, assert_call_error_prefix,
    call_in_flight, cbor, eventually, eventually_async,
};

fn call(id: u64, function: &str, args: Vec<Value>, deadline_ms: Option<u64>) -> Message {
    Message::Call(Call {
        id,
        function: function.into(),
        args,
        deadline_ms,
        hops: 0,
        visited: vec![],
        metadata: Default::default(),
        principal: None,
    })
}

/// Sends `count` calls of `misbehave.big` for 1 MiB each, reading nothing.
fn ask_for_megabytes(conn: &mut RawConn, count: u64) {
    for id in 1..=count {
        let big = call(
            id,
            "misbehave.big",
            vec![Value::from(1u32 << 20)],
            Some(20_000),
        );
        conn.send(&wasmrpc::protocol::encode_message(&big, 1 << 20).unwrap());
    }
}

/// Reads until the host closes; returns the one connection-level error.
fn closing_error(conn: &mut RawConn, within: Duration) -> ErrorReply {
    let messages = conn.read_until_closed(within);
    let errors: Vec<ErrorReply> = messages
        .into_iter()
        .filter_map(|m| match m {
            Message::Error(error) if error.id.is_none() => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one connection-level error: {errors:?}"
    );
    errors.into_iter().next().unwrap()
}

fn timeout(ms: u64) -> CallOptions {
    CallOptions {
        timeout: Some(Duration::from_millis(ms)),
        ..CallOptions::default()
    }
}

// ---- C: connections ----

#[tokio::test]
async fn slow_senders_are_closed_by_the_frame_read_timeout() {
    let host = HostProcess::builder()
        .plugins(&["math"])
        .args(&["--frame-timeout", "1s"])
        .start();
    let client = host.client().await;
    let elapsed = tokio::task::spawn_blocking({
        let addr = host.addr;
        move || {
            let mut conn = RawConn::handshake(addr);
            // Drip a 100-byte frame one byte every 150 ms.
            let start = Instant::now();
            conn.send(&100u32.to_be_bytes());
            for _ in 0..20 {
                // The drip is the scenario: a sender slower than the frame
                // timeout allows.
                std::thread::sleep(Duration::from_millis(150));
                conn.send_lossy(&[0xa1]);
            }
            let error = closing_error(&mut conn, Duration::from_secs(5));
            assert_eq!(error.code, ErrorCode::ProtocolError);
            assert_eq!(
                error.message,
                "no complete frame within 1s of its first byte"
            );
            start.elapsed()
        }
    })
    .await
    .unwrap();
    assert!(
        elapsed >= Duration::from_secs(1),
        "closed after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "closed only after {elapsed:?}"
    );
    // A slow sender costs nobody else anything.
    assert_adds(&client, 1, 1).await;
}

#[tokio::test]
async fn a_hello_must_start_within_the_hello_timeout_and_finish_within_the_frame_timeout() {
    let host = HostProcess::builder()
        .plugins(&["math"])
        .args(&["--hello-timeout", "500ms", "--frame-timeout", "1500ms"])
        .start();
    let client = host.client().await;
    let addr = host.addr;
    tokio::task::spawn_blocking(move || {
        let hello = wasmrpc::protocol::encode_message(
            &Message::Hello(wasmrpc::protocol::Hello {
                version: 1,
                role: wasmrpc::protocol::Role::Client,
                region: None,
                host_id: None,
                max_in_flight: None,
                token: None,
            }),
            1 << 20,
        )
        .unwrap();

        // Nothing at all: closed at the hello timeout.
        let start = Instant::now();
        let mut silent = RawConn::connect(addr);
        let error = closing_error(&mut silent, Duration::from_secs(5));
        let took = start.elapsed();
        assert_eq!(error.code, ErrorCode::ProtocolError);
        assert_eq!(
            error.message,
            "unexpected `nothing` message: no `hello` within 500ms"
        );
        assert!(took >= Duration::from_millis(500), "closed after {took:?}");
        assert!(took < Duration::from_millis(1400), "closed after {took:?}");

        // A hello started in time may finish after the hello timeout,
        // within the frame timeout of its first byte. (The pauses are the
        // scenario: its first byte at 300 ms, its last at 900 ms.)
        let mut slow = RawConn::connect(addr);
        std::thread::sleep(Duration::from_millis(300));
        slow.send(&hello[..7]);
        std::thread::sleep(Duration::from_millis(600));
        slow.send(&hello[7..]);
        assert!(matches!(
            slow.read(Duration::from_secs(2)),
            Read2::Message(Message::Hello(_))
        ));

        // A hello started and never finished: the frame timeout's error,
        // from its first byte.
        let mut partial = RawConn::connect(addr);
        // The scenario: its first byte at 300 ms, within the hello timeout.
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        partial.send(&hello[..7]);
        let error = closing_error(&mut partial, Duration::from_secs(5));
        let took = start.elapsed();
        assert_eq!(error.code, ErrorCode::ProtocolError);
        assert_eq!(
            error.message,
            "no complete frame within 1.5s of its first byte"
        );
        assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
        assert!(took < Duration::from_millis(2500), "closed after {took:?}");
    })
    .await
    .unwrap();
    assert_adds(&client, 1, 1).await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_pings_keep_them_open() {
    let host = HostProcess::builder()
        .plugins(&["math"])
        .args(&["--idle-timeout", "1s", "--frame-timeout", "400ms"])
        .start();
    tokio::task::spawn_blocking(move || {
        let mut idle = RawConn::handshake(host.addr);
        let mut busy = RawConn::handshake(host.addr);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            busy.send_message(&Message::Ping(wasmrpc::protocol::Ping { nonce: 1 }));
            assert!(matches!(
                busy.read(Duration::from_secs(1)),
                Read2::Message(Message::Pong(_))
            ));
            // Pacing, not a wait: a ping every 200 ms, well within the
            // idle timeout.
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_call_error(
            closing_error(&mut idle, Duration::from_secs(3)),
            ErrorCode::Unavailable,
            Processed::No,
            "connection idle for 1s",
        );
        busy.send_message(&Message::Ping(wasmrpc::protocol::Ping { nonce: 2 }));
        assert!(matches!(
            busy.read(Duration::from_secs(1)),
            Read2::Message(Message::Pong(_))
        ));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn idle_time_counts_from_the_last_answer_and_never_while_a_call_runs() {
    let host = HostProcess::builder()
        .plugins(&["misbehave"])
        .args(&["--idle-timeout", "1s", "--frame-timeout", "400ms"])
        .start();
    tokio::task::spawn_blocking(move || {
        let mut conn = RawConn::handshake(host.addr);
        // A call twice as long as the idle timeout: the connection stays open.
        conn.send_message(&call(1, "misbehave.busy", vec![Value::from(2000)], None));
        match conn.read(Duration::from_secs(5)) {
            Read2::Message(Message::Reply(reply)) => assert_eq!(reply.id, 1),
            other => panic!("expected the reply to call 1, got {other:?}"),
        }
        let answered = Instant::now();
        // Past a few idle checks (every 100 ms here), but within the idle
        // timeout of the answer: still open. (A duration under test.)
        std::thread::sleep(Duration::from_millis(600));
        conn.send_message(&Message::Ping(wasmrpc::protocol::Ping { nonce: 3 }));
        match conn.read(Duration::from_secs(1)) {
            Read2::Message(Message::Pong(pong)) => assert_eq!(pong.nonce, 3),
            other => panic!(
                "closed {:?} after the answer: {other:?}",
                answered.elapsed()
            ),
        }
        let pinged = Instant::now();
        let error = closing_error(&mut conn, Duration::from_secs(3));
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert_eq!(error.message, "connection idle for 1s");
        assert!(
            pinged.elapsed() >= Duration::from_secs(1),
            "idle-closed {:?} after the last frame",
            pinged.elapsed()
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_promptly() {
    let host = HostProcess::builder()
        .plugins(&["math"])
        .args(&["--max-connections", "3"])
        .start();
    tokio::task::spawn_blocking(move || {
        let mut open: Vec<RawConn> = (0..3).map(|_| RawConn::handshake(host.addr)).collect();
        let start = Instant::now();
        let mut extra = RawConn::connect(host.addr);
        let error = closing_error(&mut extra, Duration::from_secs(2));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "refused after {:?}",
            start.elapsed()
        );
        assert_eq!(error.code, ErrorCode::ResourceExhausted);
        assert_eq!(error.message, "connection limit of 3 reached");
        for conn in &mut open {
            conn.send_message(&Message::Ping(wasmrpc::protocol::Ping { nonce: 9 }));
            assert!(matches!(
                conn.read(Duration::from_secs(1)),
                Read2::Message(Message::Pong(_))
            ));
        }
        // Closing one frees its slot.
        drop(open.pop());
        let ok = wasmrpc_tests::eventually(Duration::from_secs(2), || {
            let mut conn = RawConn::connect(host.addr);
            conn.send_message(&Message::Hello(wasmrpc::protocol::Hello {
                version: 1,
                role: wasmrpc::protocol::Role::Client,
                region: None,
                host_id: None,
                max_in_flight: None,
                token: None,
            }));
            matches!(
                conn.read(Duration::from_secs(1)),
                Read2::Message(Message::Hello(_))
            )
        });
        assert!(ok, "a freed slot was not reusable");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_flood_of_calls_and_cancels_gets_the_connection_closed() {
    let host = HostProcess::start(&["math"]);
    let client = host.client().await;
    tokio::task::spawn_blocking(move || {
        let mut conn = RawConn::handshake(host.addr);
        for id in 1..=150u64 {
            conn.send_lossy(
                &wasmrpc::protocol::encode_message(
                    &call(id, "math.add", vec![Value::from(1), Value::from(2)], None),
                    1 << 20,
                )
                .unwrap(),
            );
            conn.send_lossy(
                &wasmrpc::protocol::encode_message(&Message::Cancel(Cancel { id }), 1 << 20)
                    .unwrap(),
            );
        }
        let error = closing_error(&mut conn, Duration::from_secs(5));
        assert_eq!(error.code, ErrorCode::ResourceExhausted);
        assert_eq!(error.message, "more than 100 cancels within 10s");
    })
    .await
    .unwrap();
    assert_adds(&client, 2, 2).await;
}

#[tokio::test]
async fn a_caller_that_never_reads_replies_cannot_make_the_host_buffer_more_than_the_limit() {
    let host = HostProcess::builder()
        .plugins(&["math", "misbehave"])
        .args(&["--max-outbound-kib", "4096"])
        .start();
    let client = host.client().await;
    let baseline = host.rss_kib();
    let addr = host.addr;
    let worked_from = host.cpu_time();
    let mut conn = tokio::task::spawn_blocking(move || {
        let mut conn = RawConn::handshake(addr);
        // 64 replies of 1 MiB each, never read while they are produced.
        ask_for_megabytes(&mut conn, 64);
        conn
    })
    .await
    .unwrap();
    // The host ran calls until their replies overflowed the queue, then
    // gave up on the connection and went quiet.
    let worked = eventually_async(Duration::from_secs(10), || async {
        host.cpu_time() >= worked_from + Duration::from_millis(20)
    })
    .await;
    assert!(worked, "the host ran none of the calls");
    host.wait_until_idle(Duration::from_secs(10)).await;
    let error = tokio::task::spawn_blocking(move || {
        // Replies queued before the overflow, then the connection-level
        // error as the last frame: nothing for the calls still in flight.
        let messages = conn.read_until_closed(Duration::from_secs(20));
        let (last, replies) = messages.split_last().expect("frames before the close");
        assert!(replies.len() < 64, "{} replies", replies.len());
        for reply in replies {
            assert!(matches!(reply, Message::Reply(_)), "{reply:?}");
        }
        match last {
            Message::Error(error) if error.id.is_none() => error.clone(),
            other => panic!("expected the connection-level error last, got {other:?}"),
        }
    })
    .await
    .unwrap();
    assert_eq!(error.code, ErrorCode::ResourceExhausted);
    assert_eq!(
        error.message,
        "more than 4194304 bytes of replies queued: the caller is not reading them"
    );
    let after = host.rss_kib();
    eprintln!("host RSS {baseline} KiB before, {after} KiB after a non-reading caller");
    assert!(
        after < baseline + 48 * 1024,
        "host RSS grew from {baseline} KiB to {after} KiB"
    );
    assert_adds(&client, 3, 3).await;
}

// ---- X: guests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_spinning_guests_stop_on_time_while_a_healthy_client_is_served() {
    let host = HostProcess::start(&["math", "misbehave"]);
    let healthy = host.client().await;
    let attacker = host.client().await;
    healthy
        .call_value("math.add", vec![Value::from(0), Value::from(0)])
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (healthy, stop) = (healthy.clone(), stop.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut answered = 0;
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let sum = healthy
                    .call_value("math.add", vec![Value::from(20), Value::from(22)])
                    .await;
                assert_eq!(sum.unwrap(), Value::from(42));
                slowest = slowest.max(start.elapsed());
                answered += 1;
                // Pacing, not a wait: a healthy caller's steady trickle.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (answered, slowest)
        })
    };
    let spinners: Vec<_> = (0..16)
        .map(|_| {
            let attacker = attacker.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let err = attacker
                    .call_value_with("misbehave.spin", vec![], timeout(200))
                    .await
                    .unwrap_err();
                (err.code, start.elapsed())
            })
        })
        .collect();
    let mut latest = Duration::ZERO;
    for spinner in spinners {
        let (code, took) = spinner.await.unwrap();
        assert_eq!(code, ErrorCode::DeadlineExceeded);
        latest = latest.max(took);
    }
    // A measuring window, not a wait: the prober's count covers the
    // spinners' time and 100 ms more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let (answered, slowest) = prober.await.unwrap();
    eprintln!("16 spinners stopped by {latest:?}; healthy calls: {answered}, slowest {slowest:?}");
    assert!(
        latest < Duration::from_millis(250),
        "a spinner was stopped only after {latest:?}"
    );
    assert!(answered >= 10, "only {answered} healthy calls");
    assert!(
        slowest < Duration::from_millis(200),
        "a healthy call took {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_instance_pool_refuses_unprocessed_and_recovers() {
    let host = HostProcess::builder()
        .plugins(&["misbehave"])
        .args(&["--max-instances", "2"])
        .start();
    let client = host.client().await;
    // Both slots are taken: the host has both calls, and guests run.
    let pool_before = host.guest_pool_cpu();
    let mut busy = Vec::new();
    for _ in 0..2 {
        busy.push(call_in_flight(&client, "misbehave.busy", vec![Value::from(600)]).await);
    }
    host.wait_for_pool_work(pool_before).await;
    assert_call_error_prefix(
        client
            .call_value("misbehave.busy", vec![Value::from(1)])
            .await,
        ErrorCode::ResourceExhausted,
        Processed::No,
        "no instance slot free to run `misbehave.busy`",
    );
    for call in busy {
        assert_eq!(call.await.unwrap().unwrap(), Value::from(600));
    }
    assert_eq!(
        client
            .call_value("misbehave.busy", vec![Value::from(1)])
            .await
            .unwrap(),
        Value::from(1)
    );
}

#[tokio::test]
async fn a_guest_handing_back_more_data_than_allowed_is_stopped() {
    let host = HostProcess::builder()
        .plugins(&["misbehave"])
        .args(&["--max-guest-output-kib", "64"])
        .start();
    let client = host.client().await;
    let small = client
        .call_value("misbehave.big", vec![Value::from(1000)])
        .await
        .unwrap();
    assert_eq!(small, Value::Bytes(vec![7; 1000]));
    assert_call_error(
        client
            .call_value("misbehave.big", vec![Value::from(200_000)])
            .await,
        ErrorCode::ResourceExhausted,
        Processed::Maybe,
        "`misbehave.big` handed the host more than the 64 KiB of data allowed per call",
    );
    let again = client
        .call_value("misbehave.big", vec![Value::from(10)])
        .await
        .unwrap();
    assert_eq!(again, Value::Bytes(vec![7; 10]));
}

#[tokio::test]
async fn a_reply_larger_than_a_frame_is_an_error_and_the_connection_goes_on() {
    let host = HostProcess::builder()
        .plugins(&["misbehave"])
        .args(&["--max-frame-kib", "64"])
        .start();
    let client = host.client().await;
    assert_call_error(
        client
            .call_value("misbehave.big", vec![Value::from(100_000)])
            .await,
        ErrorCode::ResourceExhausted,
        Processed::Yes,
        "the reply does not fit in a frame: frame of 100023 bytes exceeds the limit of 65536 bytes",
    );
    // The refused reply left nothing behind in the connection's queue: the
    // next replies on the same connection arrive whole.
    for len in [65_000, 10] {
        let reply = client
            .call_value("misbehave.big", vec![Value::from(len)])
            .await
            .unwrap();
        assert_eq!(reply, Value::Bytes(vec![7; len as usize]));
    }
}

#[tokio::test]
async fn a_catalog_larger_than_a_frame_is_an_error_and_the_connection_goes_on() {
    // The catalog of these 47 functions takes several KiB: more than a
    // 1 KiB frame.
    let host = HostProcess::builder()
        .plugins(&["math", "greeter", "inventory", "orders", "misbehave"])
        .args(&["--max-frame-kib", "1"])
        .start();
    let client = host.client().await;
    assert_call_error(
        client.list().await,
        ErrorCode::ResourceExhausted,
        Processed::Yes,
        "the catalog does not fit in one frame",
    );
    // Nothing of the refused catalog was queued: the next answers on the
    // same connection arrive whole.
    assert_adds(&client, 40, 2).await;
    let err = client.list().await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ResourceExhausted);
    assert_adds(&client, 41, 2).await;
}

#[tokio::test]
async fn the_output_limit_counts_text_and_nested_call_arguments_in_bytes() {
    let plugins = wasmrpc_tests::plugin_dir(&["misbehave", "relay", "greeter"]);
    std::fs::write(
        plugins.path().join("relay.toml"),
        "calls = [\"greeter.echo.echo-bytes\"]\n",
    )
    .unwrap();
    let host = HostProcess::builder()
        .plugin_dir(plugins.path())
        .args(&["--max-guest-output-kib", "64"])
        .start();
    let client = host.client().await;
    // A string result goes through wasmtime's dynamic API, whose hostcall
    // fuel would let through 32 times the limit: it is measured in bytes.
    let text = client
        .call_value("misbehave.big-text", vec![Value::from(65_536)])
        .await
        .unwrap();
    assert_eq!(text, Value::Text("x".repeat(65_536)));
    assert_call_error(
        client
            .call_value("misbehave.big-text", vec![Value::from(65_537)])
            .await,
        ErrorCode::ResourceExhausted,
        Processed::Maybe,
        "`misbehave.big-text` handed the host more than the 64 KiB of data allowed per call",
    );

    // The arguments of a nested call, handed to the host's `call` import.
    let nested = |len: usize| {
        let mut args = Vec::new();
        ciborium::into_writer(&Value::Array(vec![Value::Bytes(vec![7; len])]), &mut args).unwrap();
        vec![
            Value::Text("greeter.echo.echo-bytes".into()),
            Value::Bytes(args),
        ]
    };
    let echoed = client
        .call_value("relay.call", nested(60_000))
        .await
        .unwrap();
    let Value::Bytes(echoed) = echoed else {
        panic!("relay.call returned {echoed:?}");
    };
    let echoed: Value = ciborium::from_reader(echoed.as_slice()).unwrap();
    assert_eq!(echoed, Value::Bytes(vec![7; 60_000]));
    let err = client
        .call_value("relay.call", nested(70_000))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::HandlerError);
    assert_eq!(
        err.message,
        "plugin `relay` handed the host more than the 64 KiB of data allowed per call"
    );
    // The host still serves.
    let text = client
        .call_value("misbehave.big-text", vec![Value::from(3)])
        .await
        .unwrap();
    assert_eq!(text, Value::Text("xxx".into()));
}

#[tokio::test]
async fn a_log_message_longer_than_the_output_limit_is_cut() {
    let host = HostProcess::builder()
        .plugins(&["relay"])
        .args(&["--max-guest-output-kib", "1"])
        .start();
    let client = host.client().await;
    // A function name over the limit: the nested call is refused, and
    // `relay.call` logs that, name first.
    let function = format!("f{}", "x".repeat(3000));
    let err = client
        .call_value(
            "relay.call",
            vec![Value::Text(function), Value::Bytes(vec![0x80])],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::HandlerError);
    assert_eq!(
        err.message,
        "plugin `relay` handed the host more than the 1 KiB of data allowed per call"
    );
    host.wait_for_log(
        &format!("f{} [truncated] plugin=relay", "x".repeat(1023)),
        1,
        Duration::from_secs(5),
    );
    assert!(!host.log().contains(&"x".repeat(1024)), "{}", host.log());
}

#[tokio::test]
async fn a_guest_gets_no_socket() {
    let host = HostProcess::start(&["misbehave"]);
    let client = host.client().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let err = client
        .call_value("misbehave.connect", vec![Value::Text(target)])
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::HandlerError);
    assert!(
        err.message.contains("ermission denied") || err.message.contains("not permitted"),
        "{}",
        err.message
    );
    // Waiting for something not to happen takes a fixed time: a connection
    // that reached the listener late has 100 ms to show up.
    std::thread::sleep(Duration::from_millis(100));
    assert!(listener.accept().is_err(), "the guest reached the listener");
}

// ---- D: deadlines and cancellation ----

#[tokio::test]
async fn a_call_without_deadline_gets_the_default_and_a_huge_one_is_clamped() {
    let host = HostProcess::builder()
        .plugins(&["misbehave"])
        .args(&["--default-deadline", "300ms", "--max-deadline", "600ms"])
        .start();
    tokio::task::spawn_blocking(move || {
        for (deadline_ms, expected) in [(None, 300u64), (Some(3_600_000), 600)] {
            let mut conn = RawConn::handshake(host.addr);
            let start = Instant::now();
            conn.send_message(&call(1, "misbehave.spin", vec![], deadline_ms));
            match conn.read(Duration::from_secs(5)) {
                Read2::Message(Message::Error(error)) => {
                    assert_eq!(error.code, ErrorCode::DeadlineExceeded);
                    assert_eq!(error.processed, Processed::Maybe);
                }
                other => panic!("unexpected {other:?}"),
            }
            let took = start.elapsed();
            assert!(
                took >= Duration::from_millis(expected),
                "{deadline_ms:?}: {took:?}"
            );
            assert!(
                took < Duration::from_millis(expected + 100),
                "{deadline_ms:?}: {took:?}"
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn failure_classes_map_to_their_documented_code_and_processed_flag() {
    let host = HostProcess::builder()
        .plugins(&["math", "misbehave"])
        .args(&["--max-instances", "64"])
        .start();
    let client = host.client().await;
    let add = |a: Value| vec![Value::from(1), a];
    let cases: Vec<(
        &str,
        Result<Value, wasmrpc::CallError>,
        ErrorCode,
        Processed,
    )> = vec![
        (
            "unknown function",
            client.call_value("math.nope", vec![]).await,
            ErrorCode::NotFound,
            Processed::No,
        ),
        (
            "bad argument",
            client.call_value("math.add", add(cbor("\"x\""))).await,
            ErrorCode::InvalidArgs,
            Processed::No,
        ),
        (
            "handler error",
            client.call_value("math.divide", add(Value::from(0))).await,
            ErrorCode::HandlerError,
            Processed::Yes,
        ),
        (
            "panic",
            client
                .call_value("misbehave.crash", vec![cbor("\"x\"")])
                .await,
            ErrorCode::Trap,
            Processed::Maybe,
        ),
        (
            "stack overflow",
            client
                .call_value("misbehave.recurse", vec![Value::from(0)])
                .await,
            ErrorCode::Trap,
            Processed::Maybe,
        ),
        (
            "memory limit",
            client.call_value("misbehave.hog", vec![]).await,
            ErrorCode::ResourceExhausted,
            Processed::Maybe,
        ),
        (
            "deadline while running",
            client
                .call_value_with("misbehave.spin", vec![], timeout(100))
                .await,
            ErrorCode::DeadlineExceeded,
            Processed::Maybe,
        ),
        (
            "deadline before running",
            client
                .call_value_with("math.add", add(Value::from(1)), timeout(0))
                .await,
            ErrorCode::DeadlineExceeded,
            Processed::No,
        ),
        (
            "forged hop count",
            client
                .call_value_with(
                    "math.add",
                    add(Value::from(1)),
                    CallOptions {
                        hops: 9,
                        ..CallOptions::default()
                    },
                )
                .await,
            ErrorCode::LoopDetected,
            Processed::No,
        ),
        (
            "host unreachable",
            match Client::connect("127.0.0.1:1").await {
                Ok(_) => panic!("port 1 answered"),
                Err(e) => Err(e),
            },
            ErrorCode::Unavailable,
            Processed::No,
        ),
    ];
    for (what, result, code, processed) in cases {
        let err = result.expect_err(what);
        assert_eq!(
            (err.code, err.processed),
            (code, processed),
            "{what}: {err}"
        );
    }

    // Cancelled by the caller while running.
    let mut conn = RawConn::handshake(host.addr);
    let pool_before = host.guest_pool_cpu();
    let mut conn = tokio::task::spawn_blocking(move || {
        conn.send_message(&call(7, "misbehave.spin", vec![], Some(5000)));
        // The host read the call before the ping behind it.
        conn.send_message(&Message::Ping(wasmrpc::protocol::Ping { nonce: 7 }));
        assert!(matches!(
            conn.read(Duration::from_secs(5)),
            Read2::Message(Message::Pong(_))
        ));
        conn
    })
    .await
    .unwrap();
    host.wait_for_pool_work(pool_before).await;
    let cancelled = tokio::task::spawn_blocking(move || {
        conn.send_message(&Message::Cancel(Cancel { id: 7 }));
        match conn.read(Duration::from_secs(2)) {
            Read2::Message(Message::Error(error)) => (error.code, error.processed),
            other => panic!("unexpected {other:?}"),
        }
    })
    .await
    .unwrap();
    assert_eq!(cancelled, (ErrorCode::Cancelled, Processed::Maybe));
}

#[tokio::test]
async fn a_host_dying_mid_call_gives_unavailable_maybe_processed() {
    let host = HostProcess::start(&["misbehave"]);
    let client = host.client().await;
    let pending = call_in_flight(&client, "misbehave.busy", vec![Value::from(2000)]).await;
    host.signal(libc::SIGKILL);
    let err = pending.await.unwrap().unwrap_err();
    assert_eq!(
        (err.code, err.processed),
        (ErrorCode::Unavailable, Processed::Maybe),
        "{err}"
    );
    let err = client
        .call_value("misbehave.busy", vec![Value::from(1)])
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.processed),
        (ErrorCode::Unavailable, Processed::No),
        "{err}"
    );
}

// ---- W: the wire ----

#[tokio::test]
async fn huge_length_prefixes_cost_the_host_no_memory() {
    let host = HostProcess::start(&["math"]);
    let addr = host.addr;
    // Warm up: one full connection so buffers and tasks exist already.
    let sockets = host.open_sockets();
    tokio::task::spawn_blocking(move || drop(RawConn::handshake(addr)))
        .await
        .unwrap();
    let closed = eventually_async(Duration::from_secs(5), || async {
        host.open_sockets() == sockets
    })
    .await;
    assert!(closed, "the host kept the warm-up connection");
    let before = host.rss_kib();
    tokio::task::spawn_blocking(move || {
        for prefix in [1u32 << 30, u32::MAX, (4 << 20) + 1] {
            let mut conn = RawConn::handshake(addr);
            conn.send(&prefix.to_be_bytes());
            conn.send(&[0u8; 16]);
            let error = closing_error(&mut conn, Duration::from_secs(2));
            assert_eq!(error.code, ErrorCode::ResourceExhausted);
        }
        // Lying lengths inside a legal frame: a byte string and an array
        // claiming 4 GiB and 2^64-1 elements, with a few bytes present.
        for lie in [
            &b"\x5a\xff\xff\xff\xff\x00"[..],
            &b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff\x00"[..],
        ] {
            let mut body = b"\xa1\x64call\xa3\x62id\x01\x68function\x61f\x64args\x81".to_vec();
            body.extend_from_slice(lie);
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            let mut conn = RawConn::handshake(addr);
            conn.send(&frame);
            let error = closing_error(&mut conn, Duration::from_secs(2));
            assert_eq!(error.code, ErrorCode::ProtocolError);
        }
    })
    .await
    .unwrap();
    let after = host.rss_kib();
    assert!(
        after < before + 1024,
        "host RSS grew from {before} KiB to {after} KiB"
    );
    let client = host.client().await;
    assert_adds(&client, 1, 1).await;
}

#[tokio::test]
async fn a_caller_that_never_reads_and_never_closes_is_let_go_of() {
    let host = HostProcess::builder()
        .plugins(&["misbehave"])
        .args(&["--max-outbound-kib", "2048"])
        .start();
    // Warm up (the first guest call opens descriptors the host keeps), then
    // count with no caller connected.
    let client = host.client().await;
    client
        .call_value("misbehave.big", vec![Value::from(10)])
        .await
        .unwrap();
    let connected = host.open_sockets();
    drop(client);
    // The host has closed the client's connection and made its spares.
    let closed = eventually_async(Duration::from_secs(5), || async {
        host.open_sockets() < connected
    })
    .await;
    assert!(closed, "the host kept the warm-up connection");
    host.wait_until_idle(Duration::from_secs(5)).await;
    let baseline = host.open_fds();
    let addr = host.addr;
    let mut conn = tokio::task::spawn_blocking(move || {
        let mut conn = RawConn::handshake(addr);
        ask_for_megabytes(&mut conn, 32);
        conn
    })
    .await
    .unwrap();
    assert!(
        host.open_fds() > baseline,
        "the connection is open on the host"
    );
    // We never read and never close; the host must still let go of the
    // connection (overflow, then at most 5 s trying to flush).
    let released = eventually(Duration::from_secs(15), || host.open_fds() <= baseline);
    assert!(
        released,
        "the host still holds the connection of a caller that never reads"
    );
    conn.finish_writing();
}

/// Starts `misbehave.busy(ms)` and returns once it runs on the guest pool,
/// holding its instance; its answer is left to await.
async fn busy_on_the_pool(
    host: &HostProcess,
    client: &Client,
    ms: u32,
) -> JoinHandle<Result<Value, wasmrpc::CallError>> {
    let pool_before = host.guest_pool_cpu();
    let busy = call_in_flight(client, "misbehave.busy", vec![Value::from(ms)]).await;
    host.wait_for_pool_work(pool_before).await;
    busy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_retries_only_what_its_processed_flag_and_idempotency_allow() {
    let host = HostProcess::builder()
        .plugins(&["misbehave"])
        .args(&["--max-instances", "1"])
        .start();
    let client = host.client().await;
    // The only instance slot is busy: without retries the call is refused...
    let busy = busy_on_the_pool(&host, &client, 300).await;
    let err = client
        .call_value("misbehave.busy", vec![Value::from(1)])
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.processed),
        (ErrorCode::ResourceExhausted, Processed::No)
    );
    busy.await.unwrap().unwrap();

    // ...with retries it was not processed, so it is retried until it runs.
    let busy = busy_on_the_pool(&host, &client, 300).await;
    let retrying = CallOptions {
        attempts: Some(7),
        ..CallOptions::default()
    };
    let ms = client
        .call_value_with("misbehave.busy", vec![Value::from(1)], retrying.clone())
        .await;
    assert_eq!(ms.unwrap(), Value::from(1));
    busy.await.unwrap().unwrap();

    // A failure that may have run (a trap) is not retried unless idempotent.
    let crash = |options: CallOptions| {
        let client = client.clone();
        async move {
            client
                .call_value_with("misbehave.crash", vec![cbor("\"once\"")], options)
                .await
        }
    };
    let err = crash(retrying.clone()).await.unwrap_err();
    assert_eq!(
        (err.code, err.processed),
        (ErrorCode::Trap, Processed::Maybe)
    );
    host.wait_for_log("panicked at", 1, Duration::from_secs(1));
    let panics = || host.log().matches("panicked at").count();
    assert_eq!(panics(), 1, "a call that may have run was retried");
    // Even when idempotent, a trap is not a transient failure: no retry.
    let idempotent = CallOptions {
        idempotent: true,
        ..retrying
    };
    crash(idempotent).await.unwrap_err();
    assert_eq!(panics(), 2);
}
