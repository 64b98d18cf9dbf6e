//! Well-formed messages at the wrong point of a session (the host's own
//! kinds, anything before `hello`), and valid frames with edge values.

use super::Corpus;
use super::cbor::{BREAK, NULL, array, bytes, cat, head, map, nint, raw_text, repeat, text, uint};
use super::message::{
    MAX_FRAME, Msg, call, cancel, frame, hello, list, ping, ping_nonce, pong, prefixed, reply,
};

/// Well-formed messages a caller must not send (the host's kinds) and
/// valid frames with edge values.
pub(super) fn messages_out_of_place(c: &mut Corpus) {
    const CAT: &str = "messages a caller must not send";
    let functions = array(&[map(&[
        (text("name"), text("math.add")),
        (text("signature"), text("func(a: s64, b: s64) -> s64")),
        (text("regions"), array(&[text("test")])),
    ])]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("hello", hello().frame()),
        ("hello-role-host", hello().set("role", text("host")).frame()),
        ("reply", reply().frame()),
        (
            "error",
            Msg::new(
                "error",
                &[
                    ("id", uint(1)),
                    ("code", text("internal")),
                    ("message", text("x")),
                    ("processed", text("no")),
                ],
            )
            .frame(),
        ),
        (
            "error-connection-level",
            Msg::new(
                "error",
                &[
                    ("code", text("protocol_error")),
                    ("message", text("x")),
                    ("processed", text("no")),
                ],
            )
            .frame(),
        ),
        (
            "catalog",
            Msg::new(
                "catalog",
                &[("id", uint(3)), ("functions", functions.clone())],
            )
            .frame(),
        ),
        (
            "drain",
            Msg::new("drain", &[("message", text("bye"))]).frame(),
        ),
        (
            "catalog_update",
            Msg::new("catalog_update", &[("functions", functions)]).frame(),
        ),
    ];
    for (name, bytes) in cases {
        c.add(CAT, format!("unexpected-kind-{name}"), bytes);
    }

    const EDGE: &str = "valid frames with edge values";
    let edges: Vec<(&str, Vec<u8>)> = vec![
        ("call.id-0", call().set("id", uint(0)).frame()),
        ("call.id-2pow64-1", call().set("id", uint(u64::MAX)).frame()),
        (
            "call.deadline_ms-0",
            call().set("deadline_ms", uint(0)).frame(),
        ),
        (
            "call.deadline_ms-2pow64-1",
            call().set("deadline_ms", uint(u64::MAX)).frame(),
        ),
        (
            "call.deadline_ms-null",
            call().set("deadline_ms", vec![NULL]).frame(),
        ),
        ("call.hops-8", call().set("hops", uint(8)).frame()),
        ("call.hops-9", call().set("hops", uint(9)).frame()),
        (
            "call.hops-2pow32-1",
            call().set("hops", uint(u64::from(u32::MAX))).frame(),
        ),
        (
            "call.visited-own-region",
            call().set("visited", array(&[text("test")])).frame(),
        ),
        (
            "call.metadata-entries",
            call()
                .set(
                    "metadata",
                    map(&[(text("trace"), text("abc")), (text(""), text(""))]),
                )
                .frame(),
        ),
        ("call.args-empty", call().set("args", array(&[])).frame()),
        (
            "call.args-three",
            call()
                .set("args", array(&[uint(1), uint(2), uint(3)]))
                .frame(),
        ),
        (
            "call.args-s64-overflow",
            call()
                .set("args", array(&[uint(u64::MAX), uint(3)]))
                .frame(),
        ),
        (
            "call.args-nint-2pow64",
            call()
                .set("args", array(&[nint(u64::MAX), uint(3)]))
                .frame(),
        ),
        (
            "call.function-empty",
            call().set("function", text("")).frame(),
        ),
        (
            "call.function-no-dot",
            call().set("function", text("add")).frame(),
        ),
        (
            "call.function-MATH.ADD",
            call().set("function", text("MATH.ADD")).frame(),
        ),
        (
            "call.function-nul",
            call().set("function", raw_text(b"math\0.add")).frame(),
        ),
        (
            "call.function-bom",
            call()
                .set("function", raw_text(b"\xef\xbb\xbfmath.add"))
                .frame(),
        ),
        (
            "call.function-64KiB",
            call().set("function", text(&"m".repeat(65536))).frame(),
        ),
        (
            "call.stats-nan-inf",
            call()
                .set("function", text("math.stats"))
                .set(
                    "args",
                    array(&[array(&[
                        vec![0xf9, 0x7e, 0x00],
                        vec![0xf9, 0x7c, 0x00],
                        vec![0xf9, 0xfc, 0x00],
                        vec![0xf9, 0x80, 0x00],
                    ])]),
                )
                .frame(),
        ),
        ("ping.nonce-0", ping_nonce(0).frame()),
        ("ping.nonce-2pow64-1", ping_nonce(u64::MAX).frame()),
        ("list.id-2pow64-1", list().set("id", uint(u64::MAX)).frame()),
        ("cancel.id-unknown", cancel().set("id", uint(12345)).frame()),
        ("pong", pong().frame()),
        (
            "reordered-keys-call",
            Msg::new(
                "call",
                &[
                    ("args", array(&[uint(2), uint(3)])),
                    ("function", text("math.add")),
                    ("id", uint(1)),
                ],
            )
            .frame(),
        ),
        (
            "byte-string-keys-call",
            call()
                .rekey("id", bytes(b"id"))
                .rekey("function", bytes(b"function"))
                .rekey("args", bytes(b"args"))
                .frame(),
        ),
    ];
    for (name, bytes) in edges {
        c.add(EDGE, format!("edge-{name}"), bytes);
    }
}

/// Bytes sent as the very first bytes of a connection.
pub(super) fn before_hello(c: &mut Corpus) {
    const CAT: &str = "before hello (prehello-)";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("call", call().frame()),
        ("ping", ping().frame()),
        ("list", list().frame()),
        ("cancel", cancel().frame()),
        ("pong", pong().frame()),
        ("reply", reply().frame()),
        ("hello-version-0", hello().set("version", uint(0)).frame()),
        ("hello-version-2", hello().set("version", uint(2)).frame()),
        (
            "hello-version-2pow32",
            hello().set("version", uint(1 << 32)).frame(),
        ),
        (
            "hello-version-text",
            hello().set("version", text("1")).frame(),
        ),
        (
            "hello-version-negative",
            hello().set("version", nint(0)).frame(),
        ),
        ("hello-role-host", hello().set("role", text("host")).frame()),
        (
            "hello-role-admin",
            hello().set("role", text("admin")).frame(),
        ),
        (
            "hello-role-Client",
            hello().set("role", text("Client")).frame(),
        ),
        ("hello-missing-role", hello().without("role").frame()),
        ("hello-missing-version", hello().without("version").frame()),
        (
            "hello-region-null",
            hello().set("region", vec![NULL]).frame(),
        ),
        (
            "hello-max-in-flight-0",
            hello().set("max_in_flight", uint(0)).frame(),
        ),
        ("hello-role-peer", hello().set("role", text("peer")).frame()),
        (
            "hello-extra-key",
            hello().push(text("extra"), uint(1)).frame(),
        ),
        (
            "duplicate-key-hello.version",
            hello().push(text("version"), uint(1)).frame(),
        ),
        (
            "duplicate-key-hello.role",
            hello().push(text("role"), text("client")).frame(),
        ),
        (
            "unknown-kind-helo",
            frame(&cat(&[&head(5, 1), &text("helo"), &map(&hello().fields)])),
        ),
        ("http-get", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "tls-client-hello",
            vec![
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0, 0, 0, 0,
            ],
        ),
        ("length-prefix-0", prefixed(0, &[])),
        (
            "length-prefix-4GiB-0xffffffff",
            prefixed(u32::MAX, &hello().body()),
        ),
        (
            "length-prefix-4MiB-plus-1",
            prefixed(MAX_FRAME + 1, &hello().body()),
        ),
        ("lone-break", frame(&[BREAK])),
        (
            "nesting-bomb-100000-arrays-in-hello.region",
            hello()
                .set("region", cat(&[&repeat(&[0x81], 100_000), &[0x00]]))
                .frame(),
        ),
        (
            "two-frames-in-one-write-hello-ping",
            cat(&[&hello().frame(), &ping().frame()]),
        ),
        (
            "two-frames-in-one-write-hello-call",
            cat(&[&hello().frame(), &call().frame()]),
        ),
        (
            "split-1byte-hello-call",
            cat(&[&hello().frame(), &call().frame()]),
        ),
    ];
    for (name, bytes) in cases {
        c.add(CAT, format!("prehello-{name}"), bytes);
    }
}
