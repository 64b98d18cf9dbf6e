//! The byte stream around the frames: length prefixes that do not match,
//! frames split into 1-byte writes, several frames in one write.

use super::Corpus;
use super::cbor::{BREAK, array, cat, head, map, repeat, text, uint};
use super::message::{
    MAX_FRAME, Msg, call, call_id, cancel, frame, hello, list, ping, ping_nonce, pong, prefixed,
    reply,
};

/// Length prefixes that do not match the body.
pub(super) fn length_prefixes(c: &mut Corpus) {
    const CAT: &str = "wrong length prefixes";
    let body = call().body();
    let len = body.len() as u32;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length-prefix-0", prefixed(0, &[])),
        (
            "length-prefix-0-then-ping",
            cat(&[&prefixed(0, &[]), &ping().frame()]),
        ),
        ("length-prefix-1-call", prefixed(1, &body)),
        ("length-prefix-body-minus-1-call", prefixed(len - 1, &body)),
        ("length-prefix-body-plus-1-call", prefixed(len + 1, &body)),
        (
            "length-prefix-body-plus-1000-call",
            prefixed(len + 1000, &body),
        ),
        ("length-prefix-4MiB-call", prefixed(MAX_FRAME, &body)),
        (
            "length-prefix-4MiB-plus-1-call",
            prefixed(MAX_FRAME + 1, &body),
        ),
        ("length-prefix-2pow31-call", prefixed(1 << 31, &body)),
        (
            "length-prefix-4GiB-0xffffffff-call",
            prefixed(u32::MAX, &body),
        ),
        (
            "length-prefix-4GiB-0xffffffff-only",
            u32::MAX.to_be_bytes().to_vec(),
        ),
        (
            "length-prefix-little-endian-call",
            cat(&[&len.to_le_bytes(), &body]),
        ),
        (
            "length-prefix-u64-call",
            cat(&[&u64::from(len).to_be_bytes(), &body]),
        ),
        (
            "length-prefix-u16-call",
            cat(&[&(len as u16).to_be_bytes(), &body]),
        ),
        ("length-prefix-missing-call", body.clone()),
        (
            "length-prefix-cbor-encoded-call",
            cat(&[&uint(u64::from(len)), &body]),
        ),
        (
            "length-prefix-ping-then-4GiB",
            cat(&[&ping().frame(), &u32::MAX.to_be_bytes(), &[0u8; 16]]),
        ),
    ];
    for (name, bytes) in cases {
        c.add(CAT, name, bytes);
    }
}

/// Frames split into 1-byte writes, and several frames in one write.
pub(super) fn splits_and_batches(c: &mut Corpus) {
    let splits: Vec<(&str, Vec<u8>)> = vec![
        ("call", call().frame()),
        ("ping", ping().frame()),
        ("list", list().frame()),
        ("cancel", cancel().frame()),
        ("pong", pong().frame()),
        ("call-ping", cat(&[&call().frame(), &ping().frame()])),
        ("hello", hello().frame()),
        (
            "unknown-kind",
            frame(&cat(&[&head(5, 1), &text("shout"), &map(&[])])),
        ),
        ("length-prefix-4GiB", prefixed(u32::MAX, &call().body())),
        (
            "nesting-depth-64-arrays-in-call.args.0",
            call()
                .set(
                    "args",
                    array(&[cat(&[&repeat(&[0x81], 64), &[0x00]]), uint(3)]),
                )
                .frame(),
        ),
        ("truncated-call-at-20", call().frame()[..20].to_vec()),
    ];
    for (name, bytes) in splits {
        c.add(
            "split into 1-byte writes",
            format!("split-1byte-{name}"),
            bytes,
        );
    }

    const CAT: &str = "several frames in one write";
    let two: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("ping-call", ping().frame(), call().frame()),
        ("call-ping", call().frame(), ping().frame()),
        ("ping-ping", ping_nonce(1).frame(), ping_nonce(2).frame()),
        ("call-call", call_id(1).frame(), call_id(2).frame()),
        ("list-ping", list().frame(), ping().frame()),
        ("ping-list", ping().frame(), list().frame()),
        ("pong-ping", pong().frame(), ping().frame()),
        ("cancel-ping", cancel().frame(), ping().frame()),
        ("call-list", call().frame(), list().frame()),
        (
            "call-cancel-same-id",
            call_id(9).frame(),
            Msg::new("cancel", &[("id", uint(9))]).frame(),
        ),
        (
            "call-divide-by-zero-ping",
            call()
                .set("function", text("math.divide"))
                .set("args", array(&[uint(1), uint(0)]))
                .frame(),
            ping().frame(),
        ),
        (
            "call-unknown-function-ping",
            call().set("function", text("math.nope")).frame(),
            ping().frame(),
        ),
    ];
    for (name, a, b) in two {
        c.add(
            CAT,
            format!("two-frames-in-one-write-{name}"),
            cat(&[&a, &b]),
        );
    }
    let pings: Vec<u8> = (0..100).flat_map(|n| ping_nonce(n).frame()).collect();
    c.add(CAT, "many-frames-in-one-write-100-pings", pings);
    let calls: Vec<u8> = (1..=50).flat_map(|n| call_id(n).frame()).collect();
    c.add(CAT, "many-frames-in-one-write-50-calls", calls);
    let mixed: Vec<u8> = [
        call_id(1).frame(),
        ping().frame(),
        list().frame(),
        pong().frame(),
        call_id(2).frame(),
        cancel().frame(),
        ping_nonce(8).frame(),
    ]
    .concat();
    c.add(CAT, "many-frames-in-one-write-mixed-7", mixed);

    const THEN: &str = "valid frames then a bad one";
    let then: Vec<(&str, Vec<u8>)> = vec![
        (
            "ping-then-unknown-kind",
            frame(&cat(&[&head(5, 1), &text("shout"), &map(&[])])),
        ),
        ("ping-then-truncated-cbor", frame(&ping().body()[..8])),
        ("ping-then-hello", hello().frame()),
        ("ping-then-length-prefix-0", prefixed(0, &[])),
        ("ping-then-lone-break", frame(&[BREAK])),
        ("call-then-reply", reply().frame()),
        (
            "call-then-duplicate-key",
            ping().push(text("nonce"), uint(7)).frame(),
        ),
    ];
    for (name, bad) in then {
        let first = if name.starts_with("call") {
            call().frame()
        } else {
            ping().frame()
        };
        c.add(
            THEN,
            format!("valid-then-malformed-{name}"),
            cat(&[&first, &bad]),
        );
    }
}
