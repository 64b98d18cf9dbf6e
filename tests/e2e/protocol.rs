//! Hostile and broken input on the wire gets a defined error or a close, and
//! never disturbs other connections.

use std::time::Duration;

use ciborium::Value;
use wasmrpc::protocol::{Call, ErrorCode, ErrorReply, Hello, Message, Ping, Processed, Role};
use wasmrpc_tests::{HostProcess, RawConn, Read2, assert_call_error};

const WAIT: Duration = Duration::from_secs(5);

/// The connection-level error (no call id) the host sent before closing.
fn connection_error(messages: &[Message]) -> &ErrorReply {
    let errors: Vec<&ErrorReply> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Error(error) if error.id.is_none() => Some(error),
            _ => None,
        })
        .collect();
    match errors.as_slice() {
        [error] => error,
        _ => panic!("expected one connection-level error before the close, got {messages:?}"),
    }
}

async fn healthy(host: &HostProcess, client: &wasmrpc::Client) {
    let sum = client
        .call_value("math.add", vec![Value::from(1), Value::from(2)])
        .await;
    assert_eq!(sum.unwrap(), Value::from(3));
    // A brand-new connection works too.
    let fresh = host.client().await;
    assert!(fresh.ping().await.is_ok());
}

fn hello(version: u32, role: Role) -> Message {
    Message::Hello(Hello {
        version,
        role,
        region: None,
        host_id: None,
        max_in_flight: None,
        token: None,
    })
}

fn call(id: u64, function: &str, args: Vec<Value>) -> Message {
    Message::Call(Call {
        id,
        function: function.into(),
        args,
        deadline_ms: None,
        hops: 0,
        visited: vec![],
        metadata: Default::default(),
        principal: None,
    })
}

#[tokio::test]
async fn huge_length_prefixes_are_refused_before_reading_the_body() {
    let host = HostProcess::start(&["math"]);
    let client = host.client().await;
    for prefix in [u32::MAX, 1 << 30, (4 << 20) + 1] {
        let mut conn = RawConn::handshake(host.addr);
        conn.send(&prefix.to_be_bytes());
        conn.send(&[0u8; 16]);
        let messages = conn.read_until_closed(WAIT);
        let error = connection_error(&messages);
        assert_eq!(error.code, ErrorCode::ResourceExhausted);
        assert_eq!(
            error.message,
            format!("frame of {prefix} bytes exceeds the limit of 4194304 bytes")
        );
        healthy(&host, &client).await;
    }
}

#[tokio::test]
async fn truncated_frame_and_random_bytes_end_only_their_connection() {
    let host = HostProcess::start(&["math"]);
    let client = host.client().await;

    // A frame that promises 100 bytes and delivers 10, then the sender stops.
    let mut conn = RawConn::handshake(host.addr);
    conn.send(&100u32.to_be_bytes());
    conn.send(&[0xa1; 10]);
    conn.finish_writing();
    let messages = conn.read_until_closed(WAIT);
    assert!(messages.is_empty(), "{messages:?}");
    healthy(&host, &client).await;

    // Random bytes as the first frame: not even a hello.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..64)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let mut conn = RawConn::connect(host.addr);
    let mut frame = (garbage.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&garbage);
    conn.send(&frame);
    let messages = conn.read_until_closed(WAIT);
    assert_eq!(connection_error(&messages).code, ErrorCode::ProtocolError);
    healthy(&host, &client).await;

    // Random bytes in a frame after the handshake.
    let mut conn = RawConn::handshake(host.addr);
    conn.send(&frame);
    let messages = conn.read_until_closed(WAIT);
    let error = connection_error(&messages);
    assert_eq!(error.code, ErrorCode::ProtocolError);
    assert!(
        error.message.starts_with("malformed frame: "),
        "{}",
        error.message
    );
    healthy(&host, &client).await;
}

#[tokio::test]
async fn deeply_nested_cbor_is_a_protocol_error() {
    let host = HostProcess::start(&["math"]);
    let client = host.client().await;
    let mut conn = RawConn::handshake(host.addr);
    // {"call": {"id": 1, "function": "f", "args": [[[[...100 000 levels...]]]]}}
    let mut body = b"\xa1\x64call\xa3\x62id\x01\x68function\x61f\x64args\x81".to_vec();
    body.extend(std::iter::repeat_n(0x81u8, 100_000));
    body.push(0x00);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    conn.send(&frame);
    let messages = conn.read_until_closed(WAIT);
    let error = connection_error(&messages);
    assert_eq!(error.code, ErrorCode::ProtocolError);
    assert_eq!(
        error.message,
        "malformed frame: CBOR nests deeper than 80 levels"
    );
    healthy(&host, &client).await;
}

#[tokio::test]
async fn call_before_hello_is_answered_with_an_error_and_closed() {
    let host = HostProcess::start(&["math"]);
    let client = host.client().await;
    let mut conn = RawConn::connect(host.addr);
    conn.send_message(&call(9, "math.add", vec![Value::from(1), Value::from(2)]));
    let messages = conn.read_until_closed(WAIT);
    match messages.as_slice() {
        [Message::Error(error), Message::Error(closing)] => {
            assert_eq!(error.id, Some(9));
            let error = assert_call_error(
                error,
                ErrorCode::ProtocolError,
                Processed::No,
                "the connection must start with `hello`",
            );
            // Like every per-call error, it names the host's region (§7.3).
            assert_eq!(error.region.as_deref(), Some("test"));
            assert_eq!(error.detail, None);
            assert_eq!(closing.id, None);
            let closing = assert_call_error(
                closing,
                ErrorCode::ProtocolError,
                Processed::No,
                "unexpected `call` message: the connection must start with `hello`",
            );
            assert_eq!(closing.region, None);
        }
        other => panic!("expected an error for call 9, then the connection's, got {other:?}"),
    }
    healthy(&host, &client).await;
}

#[tokio::test]
async fn wrong_protocol_version_is_refused_with_a_clear_error() {
    let host = HostProcess::start(&["math"]);
    let mut conn = RawConn::connect(host.addr);
    conn.send_message(&hello(99, Role::Client));
    let messages = conn.read_until_closed(WAIT);
    let error = connection_error(&messages);
    assert_eq!(error.code, ErrorCode::ProtocolError);
    assert_eq!(
        error.message,
        "unsupported protocol version 99; this host speaks versions 1 to 3"
    );
}

#[tokio::test]
async fn replies_are_matched_by_id_and_may_come_out_of_order() {
    let host = HostProcess::start(&["math", "misbehave"]);
    let mut conn = RawConn::handshake(host.addr);
    conn.send_message(&call(1, "misbehave.busy", vec![Value::from(300)]));
    conn.send_message(&call(2, "math.add", vec![Value::from(20), Value::from(22)]));
    conn.send_message(&Message::Ping(Ping { nonce: 77 }));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match conn.read(WAIT) {
            Read2::Message(Message::Reply(reply)) => seen.push((reply.id, reply.value)),
            Read2::Message(Message::Pong(pong)) => seen.push((pong.nonce, Value::Null)),
            other => panic!("unexpected {other:?}"),
        }
    }
    seen[..2].sort_by_key(|(id, _)| *id);
    assert_eq!(
        seen,
        vec![
            (2, Value::from(42)),
            (77, Value::Null),
            (1, Value::from(300))
        ],
        "the slow call must not hold back the others"
    );
}

#[tokio::test]
async fn cancel_stops_the_guest_and_answers_cancelled() {
    let host = HostProcess::start(&["misbehave"]);
    let mut conn = RawConn::handshake(host.addr);
    let mut spin = call(5, "misbehave.spin", vec![]);
    if let Message::Call(c) = &mut spin {
        c.deadline_ms = Some(10_000);
    }
    let pool_before = host.guest_pool_cpu();
    conn.send_message(&spin);
    // The spin is running: the host read it before the ping behind it,
    // and it moved on to the guest pool, where it keeps a thread busy.
    conn.send_message(&Message::Ping(Ping { nonce: 5 }));
    assert!(matches!(conn.read(WAIT), Read2::Message(Message::Pong(_))));
    host.wait_for_pool_work(pool_before).await;
    let sent = std::time::Instant::now();
    conn.send_message(&Message::Cancel(wasmrpc::protocol::Cancel { id: 5 }));
    match conn.read(WAIT) {
        Read2::Message(Message::Error(error)) => {
            assert_eq!(error.id, Some(5));
            assert_eq!(error.code, ErrorCode::Cancelled);
            assert_eq!(error.processed, Processed::Maybe);
        }
        other => panic!("expected the cancelled error, got {other:?}"),
    }
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn calls_beyond_the_in_flight_limit_are_refused_unprocessed() {
    let host = HostProcess::start(&["misbehave"]);
    let mut conn = RawConn::handshake(host.addr);
    for id in 1..=101 {
        conn.send_message(&call(id, "misbehave.busy", vec![Value::from(500)]));
    }
    match conn.read(WAIT) {
        Read2::Message(Message::Error(error)) => {
            assert_eq!(error.id, Some(101));
            assert_call_error(
                error,
                ErrorCode::ResourceExhausted,
                Processed::No,
                "100 calls already in flight on this connection (the limit)",
            );
        }
        other => panic!("expected call 101 to be refused first, got {other:?}"),
    }
    let mut replies = 0;
    while replies < 100 {
        match conn.read(Duration::from_secs(30)) {
            Read2::Message(Message::Reply(reply)) => {
                assert_eq!(reply.value, Value::from(500));
                replies += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_call_id_already_in_flight_closes_the_connection_and_neither_call_is_answered() {
    let host = HostProcess::start(&["math", "misbehave"]);
    let client = host.client().await;
    let mut conn = RawConn::handshake(host.addr);
    conn.send_message(&call(3, "misbehave.busy", vec![Value::from(300)]));
    conn.send_message(&call(3, "misbehave.busy", vec![Value::from(300)]));
    // No per-call `protocol_error`, and no answer for the first call 3: the
    // connection-level error is all, and the last frame (§6.1, §4.3).
    match conn.read_until_closed(WAIT).as_slice() {
        [Message::Error(error)] => {
            assert_eq!(error.id, None);
            assert_call_error(
                error,
                ErrorCode::ProtocolError,
                Processed::No,
                "unexpected `call` message: call id 3 is already in flight on this connection",
            );
        }
        other => panic!("expected only the connection-level error, got {other:?}"),
    }
    healthy(&host, &client).await;
}

#[tokio::test]
async fn a_caller_that_half_closes_gets_cancelled_for_each_call_in_flight() {
    let host = HostProcess::start(&["math", "misbehave"]);
    let client = host.client().await;
    let spin = |id| {
        let mut spin = call(id, "misbehave.spin", vec![]);
        if let Message::Call(c) = &mut spin {
            c.deadline_ms = Some(10_000);
        }
        spin
    };
    let cancelled = |messages: Vec<Message>| -> Vec<u64> {
        let mut ids: Vec<u64> = messages
            .into_iter()
            .map(|m| match m {
                Message::Error(error) => {
                    let id = error.id;
                    let error = assert_call_error(
                        error,
                        ErrorCode::Cancelled,
                        Processed::Maybe,
                        "call cancelled: the caller closed its side of the connection",
                    );
                    assert_eq!(error.region.as_deref(), Some("test"));
                    id.expect("a per-call error, not a connection-level one")
                }
                other => panic!("expected only `cancelled` errors, got {other:?}"),
            })
            .collect();
        ids.sort();
        ids
    };

    // Two spinning calls in flight, one answered, then the caller shuts
    // down its sending side and keeps reading.
    let mut conn = RawConn::handshake(host.addr);
    conn.send_message(&spin(1));
    conn.send_message(&spin(2));
    conn.send_message(&call(3, "math.add", vec![Value::from(1), Value::from(2)]));
    assert!(matches!(
        conn.read(WAIT),
        Read2::Message(Message::Reply(reply)) if reply.id == 3
    ));
    let closed_at = std::time::Instant::now();
    conn.finish_writing();
    assert_eq!(cancelled(conn.read_until_closed(WAIT)), vec![1, 2]);
    assert!(
        closed_at.elapsed() < Duration::from_secs(1),
        "the calls ran on for {:?}",
        closed_at.elapsed()
    );

    // The same when the caller stops in the middle of a frame: no error
    // for the frame, `cancelled` for the call.
    let mut conn = RawConn::handshake(host.addr);
    conn.send_message(&spin(7));
    conn.send_message(&Message::Ping(Ping { nonce: 1 }));
    assert!(matches!(conn.read(WAIT), Read2::Message(Message::Pong(_))));
    conn.send(&100u32.to_be_bytes());
    conn.send(&[0xa1; 10]);
    conn.finish_writing();
    assert_eq!(cancelled(conn.read_until_closed(WAIT)), vec![7]);
    healthy(&host, &client).await;
}

#[tokio::test]
async fn a_connection_level_error_is_the_last_frame_and_calls_in_flight_get_no_answer() {
    let host = HostProcess::start(&["math", "misbehave"]);
    let client = host.client().await;
    let mut conn = RawConn::handshake(host.addr);
    let mut spin = call(1, "misbehave.spin", vec![]);
    if let Message::Call(c) = &mut spin {
        c.deadline_ms = Some(10_000);
    }
    conn.send_message(&spin);
    conn.send_message(&call(2, "math.add", vec![Value::from(1), Value::from(2)]));
    assert!(matches!(
        conn.read(WAIT),
        Read2::Message(Message::Reply(reply)) if reply.id == 2
    ));
    // A malformed frame while call 1 spins: the connection-level error and
    // the close, nothing for call 1, before the error or after it.
    conn.send(&[0, 0, 0, 1, 0xff]);
    match conn.read_until_closed(WAIT).as_slice() {
        [Message::Error(error)] => {
            assert_eq!(error.id, None);
            assert_eq!(error.code, ErrorCode::ProtocolError);
            assert!(
                error.message.starts_with("malformed frame: "),
                "{}",
                error.message
            );
        }
        other => panic!("expected only the connection-level error, got {other:?}"),
    }
    healthy(&host, &client).await;
}

#[tokio::test]
async fn a_caller_claiming_to_be_a_host_is_refused() {
    let host = HostProcess::start(&["math"]);
    let mut conn = RawConn::connect(host.addr);
    conn.send_message(&hello(1, Role::Host));
    let messages = conn.read_until_closed(WAIT);
    let error = connection_error(&messages);
    assert_eq!(error.code, ErrorCode::ProtocolError);
    assert_eq!(
        error.message,
        "unexpected `hello` message: role `host` is only sent by the accepting host; say `client` or `peer`"
    );
}
