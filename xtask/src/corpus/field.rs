//! What a message's fields and keys hold instead of the right thing: every
//! major type, duplicate, unknown and oddly typed keys, missing fields,
//! broken envelopes, out-of-range integers, bignums, floats, invalid UTF-8.

use super::Corpus;
use super::cbor::{
    BREAK, FALSE, NULL, TRUE, UNDEFINED, array, bytes, cat, head, map, nint, raw_text, tag, text,
    uint,
};
use super::message::{
    CALL_FIELDS, call, call_with, cancel, frame, hello, list, ping, pong, small_messages,
};

/// One item of each major type (and several of major type 7). Major type
/// 6 is a tag wrapped around `valid`, the field's own valid value.
fn samples(valid: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("major-type-0", uint(1 << 32)),
        ("major-type-1", nint(0)),
        ("major-type-2", bytes(b"math.add")),
        ("major-type-3", text("x")),
        ("major-type-4", array(&[uint(1)])),
        ("major-type-5", map(&[(text("id"), uint(1))])),
        ("major-type-6", tag(6, valid)),
        ("major-type-7-false", vec![FALSE]),
        ("major-type-7-null", vec![NULL]),
        ("major-type-7-undefined", vec![UNDEFINED]),
        ("major-type-7-float16", vec![0xf9, 0x3c, 0x00]),
        ("major-type-7-float32", vec![0xfa, 0x3f, 0xc0, 0x00, 0x00]),
        (
            "major-type-7-float64-nan",
            vec![0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
        ),
        ("major-type-7-simple-16", vec![0xf0]),
        ("major-type-7-simple-255", vec![0xf8, 0xff]),
        ("major-type-7-simple-19-in-two-bytes", vec![0xf8, 0x13]),
    ]
}

/// Every major type in every field of `call`, `ping`, `cancel`, `list`,
/// as their bodies, and as the envelope.
pub(super) fn major_types(c: &mut Corpus) {
    const CAT: &str = "major types in every field";
    for field in CALL_FIELDS {
        let base = call_with(field);
        for (sample, value) in samples(&base.get(field)) {
            c.add(
                CAT,
                format!("{sample}-in-call.{field}"),
                base.set(field, value).frame(),
            );
        }
    }
    for (sample, value) in samples(&uint(2)) {
        c.add(
            CAT,
            format!("{sample}-in-call.args.0"),
            call()
                .set("args", cat(&[&[0x82], &value, &uint(3)]))
                .frame(),
        );
        c.add(
            CAT,
            format!("{sample}-in-call.args.1"),
            call()
                .set("args", cat(&[&[0x82], &uint(2), &value]))
                .frame(),
        );
    }
    for msg in [call(), ping(), cancel(), list()] {
        for (sample, value) in samples(&map(&msg.fields)) {
            c.add(
                CAT,
                format!("{sample}-as-{}.body", msg.kind),
                frame(&msg.body_with(&value)),
            );
        }
    }
    for (msg, field) in small_messages() {
        for (sample, value) in samples(&msg.get(field)) {
            c.add(
                CAT,
                format!("{sample}-in-{}.{field}", msg.kind),
                msg.set(field, value).frame(),
            );
        }
    }
    for (sample, value) in samples(&ping().body()) {
        c.add(CAT, format!("{sample}-as-envelope"), frame(&value));
    }
}

/// Duplicate, unknown and oddly typed keys; unknown kinds; missing fields.
pub(super) fn keys(c: &mut Corpus) {
    for field in CALL_FIELDS {
        let base = call_with(field);
        c.add(
            "duplicate keys",
            format!("duplicate-key-call.{field}"),
            base.push(text(field), base.get(field)).frame(),
        );
    }
    for (msg, field) in small_messages().into_iter().chain([(pong(), "nonce")]) {
        c.add(
            "duplicate keys",
            format!("duplicate-key-{}.{field}", msg.kind),
            msg.push(text(field), msg.get(field)).frame(),
        );
    }
    c.add(
        "duplicate keys",
        "duplicate-key-ping.nonce-different-values",
        ping().push(text("nonce"), uint(8)).frame(),
    );
    c.add(
        "duplicate keys",
        "duplicate-key-call.id-different-values",
        call().push(text("id"), uint(2)).frame(),
    );
    c.add(
        "duplicate keys",
        "duplicate-key-hello.version",
        hello().push(text("version"), uint(1)).frame(),
    );
    let ping_inner = map(&ping().fields);
    c.add(
        "duplicate keys",
        "duplicate-key-envelope.ping",
        frame(&cat(&[
            &head(5, 2),
            &text("ping"),
            &ping_inner,
            &text("ping"),
            &ping_inner,
        ])),
    );
    c.add(
        "duplicate keys",
        "duplicate-key-call.metadata.entry",
        call()
            .set(
                "metadata",
                map(&[(text("a"), text("1")), (text("a"), text("2"))]),
            )
            .frame(),
    );
    c.add(
        "duplicate keys",
        "duplicate-key-in-call.args.0-map",
        call()
            .set(
                "args",
                array(&[map(&[(text("a"), uint(1)), (text("a"), uint(2))]), uint(3)]),
            )
            .frame(),
    );

    let unknown_call_keys: &[(&str, &[u8])] = &[
        ("extra", b"extra"),
        ("ID", b"ID"),
        ("Id", b"Id"),
        ("deadlineMs", b"deadlineMs"),
        ("deadline-ms", b"deadline-ms"),
        ("empty", b""),
        ("id-nul", b"id\0"),
        ("id-space", b"id "),
        ("function_", b"function_"),
        ("value", b"value"),
    ];
    for (name, key) in unknown_call_keys {
        c.add(
            "unknown keys and kinds",
            format!("unknown-key-call.{name}"),
            call().push(raw_text(key), uint(2)).frame(),
        );
    }
    for (msg, _) in small_messages().into_iter().chain([(pong(), "nonce")]) {
        c.add(
            "unknown keys and kinds",
            format!("unknown-key-{}.extra", msg.kind),
            msg.push(text("extra"), uint(2)).frame(),
        );
    }
    c.add(
        "unknown keys and kinds",
        "unknown-key-ping.Nonce",
        ping().rekey("nonce", text("Nonce")).frame(),
    );
    let kinds: &[(&str, &[u8])] = &[
        ("shout", b"shout"),
        ("Call", b"Call"),
        ("CALL", b"CALL"),
        ("empty", b""),
        ("call-space", b"call "),
        ("call-nul", b"call\0"),
        ("calll", b"calll"),
        ("catalog-update", b"catalog-update"),
    ];
    for (name, kind) in kinds {
        c.add(
            "unknown keys and kinds",
            format!("unknown-kind-{name}"),
            frame(&cat(&[&head(5, 1), &raw_text(kind), &map(&call().fields)])),
        );
    }

    // Keys of other major types (text is the normal one).
    let key_samples = |name: &str| -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("major-type-0", uint(0)),
            ("major-type-1", nint(0)),
            ("major-type-2", bytes(name.as_bytes())),
            ("major-type-4", array(&[text(name)])),
            ("major-type-5", map(&[])),
            ("major-type-6", tag(6, &text(name))),
            ("major-type-7-null", vec![NULL]),
        ]
    };
    for (sample, key) in key_samples("id") {
        c.add(
            "keys of other types",
            format!("{sample}-as-key-call.id"),
            call().rekey("id", key).frame(),
        );
    }
    for (sample, key) in key_samples("nonce") {
        c.add(
            "keys of other types",
            format!("{sample}-as-key-ping.nonce"),
            ping().rekey("nonce", key).frame(),
        );
    }
    for (sample, key) in key_samples("ping") {
        c.add(
            "keys of other types",
            format!("{sample}-as-key-envelope.ping"),
            frame(&cat(&[&head(5, 1), &key, &map(&ping().fields)])),
        );
    }

    for field in ["id", "function", "args"] {
        c.add(
            "missing fields",
            format!("missing-field-call.{field}"),
            call().without(field).frame(),
        );
    }
    for (msg, field) in small_messages().into_iter().chain([(pong(), "nonce")]) {
        c.add(
            "missing fields",
            format!("missing-field-{}.{field}", msg.kind),
            msg.without(field).frame(),
        );
    }
}

/// Broken envelopes, integers out of range, bignums, floats, bad UTF-8.
pub(super) fn envelopes_and_scalars(c: &mut Corpus) {
    const ENV: &str = "broken envelopes";
    let ping_inner = map(&ping().fields);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("envelope-empty-map", frame(&map(&[]))),
        (
            "envelope-two-kinds-ping-call",
            frame(&cat(&[
                &head(5, 2),
                &text("ping"),
                &ping_inner,
                &text("call"),
                &map(&call().fields),
            ])),
        ),
        (
            "envelope-array-ping",
            frame(&array(&[text("ping"), ping_inner.clone()])),
        ),
        ("envelope-text-ping", frame(&text("ping"))),
        ("envelope-kind-null-ping", frame(&ping().body_with(&[NULL]))),
        (
            "envelope-body-empty-map-call",
            frame(&call().body_with(&map(&[]))),
        ),
        (
            "envelope-trailing-byte-ping",
            frame(&cat(&[&ping().body(), &[0x00]])),
        ),
        (
            "envelope-trailing-100-bytes-ping",
            frame(&cat(&[&ping().body(), &[0x00; 100]])),
        ),
        (
            "envelope-two-items-ping-ping",
            frame(&cat(&[&ping().body(), &ping().body()])),
        ),
        (
            "envelope-tag-around-ping",
            frame(&tag(55799, &ping().body())),
        ),
        (
            "envelope-tag-around-kind-ping",
            frame(&cat(&[&head(5, 1), &tag(6, &text("ping")), &ping_inner])),
        ),
    ];
    for (name, bytes) in cases {
        c.add(ENV, name, bytes);
    }

    const INT: &str = "integers, bignums and floats";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "uint-2pow32-in-call.hops",
            call().set("hops", uint(1 << 32)).frame(),
        ),
        (
            "nint-2pow64-in-call.id",
            call().set("id", nint(u64::MAX)).frame(),
        ),
        (
            "bignum-1-in-call.id",
            call().set("id", tag(2, &bytes(&[1]))).frame(),
        ),
        (
            "bignum-empty-in-ping.nonce",
            ping().set("nonce", tag(2, &bytes(&[]))).frame(),
        ),
        (
            "bignum-2pow64-in-call.id",
            call()
                .set("id", tag(2, &bytes(&[1, 0, 0, 0, 0, 0, 0, 0, 0])))
                .frame(),
        ),
        (
            "bignum-2pow128-in-call.args.0",
            call()
                .set(
                    "args",
                    array(&[tag(2, &cat(&[&[0x51, 1], &[0u8; 16]])), uint(3)]),
                )
                .frame(),
        ),
        (
            "bignum-1000-bytes-in-call.args.0",
            call()
                .set("args", array(&[tag(2, &bytes(&[0xff; 1000])), uint(3)]))
                .frame(),
        ),
        (
            "bignum-1000-bytes-in-ping.nonce",
            ping().set("nonce", tag(2, &bytes(&[0xff; 1000]))).frame(),
        ),
        (
            "bignum-negative-in-ping.nonce",
            ping().set("nonce", tag(3, &bytes(&[1]))).frame(),
        ),
        (
            "bignum-negative-2pow64-in-call.args.0",
            call()
                .set("args", array(&[tag(3, &bytes(&[0xff; 8])), uint(3)]))
                .frame(),
        ),
        (
            "bignum-text-payload-in-ping.nonce",
            ping().set("nonce", tag(2, &text("1"))).frame(),
        ),
        (
            "bignum-indefinite-bytes-in-ping.nonce",
            ping()
                .set("nonce", tag(2, &cat(&[&[0x5f], &bytes(&[1]), &[BREAK]])))
                .frame(),
        ),
        (
            "float16-1.0-in-call.id",
            call().set("id", vec![0xf9, 0x3c, 0x00]).frame(),
        ),
        (
            "float64-1.0-in-ping.nonce",
            ping()
                .set("nonce", vec![0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0])
                .frame(),
        ),
        (
            "float-nan-in-call.args.0",
            call()
                .set("args", array(&[vec![0xf9, 0x7e, 0x00], uint(3)]))
                .frame(),
        ),
        (
            "float-truncated-in-call.args.0",
            call().set("args", cat(&[&[0x82, 0xfb, 0x3f]])).frame(),
        ),
        (
            "true-in-ping.nonce",
            ping().set("nonce", vec![TRUE]).frame(),
        ),
    ];
    for (name, bytes) in cases {
        c.add(INT, name, bytes);
    }

    const UTF: &str = "invalid UTF-8";
    let bad: [(&str, &[u8]); 5] = [
        ("invalid-byte", b"math.\xff"),
        ("overlong", b"math.\xc0\xae"),
        ("surrogate", b"math.\xed\xa0\x80"),
        ("truncated-sequence", b"math.\xe2\x82"),
        ("above-u10ffff", b"math.\xf4\x90\x80\x80"),
    ];
    for (name, raw) in bad {
        c.add(
            UTF,
            format!("utf8-{name}-in-call.function"),
            call().set("function", raw_text(raw)).frame(),
        );
    }
    c.add(
        UTF,
        "utf8-invalid-byte-in-kind",
        frame(&cat(&[&head(5, 1), &raw_text(b"p\xffng"), &ping_inner])),
    );
    c.add(
        UTF,
        "utf8-invalid-byte-in-key-ping.nonce",
        ping().rekey("nonce", raw_text(b"non\xffe")).frame(),
    );
    c.add(
        UTF,
        "utf8-invalid-byte-in-call.args.0",
        call()
            .set("args", array(&[raw_text(b"\xff"), uint(3)]))
            .frame(),
    );
    c.add(
        UTF,
        "utf8-invalid-byte-in-call.metadata",
        call()
            .set("metadata", map(&[(text("k"), raw_text(b"\xff"))]))
            .frame(),
    );
    c.add(
        UTF,
        "utf8-invalid-byte-in-call.visited",
        call().set("visited", array(&[raw_text(b"\xff")])).frame(),
    );
    c.add(
        UTF,
        "utf8-invalid-chunk-in-indefinite-call.function",
        call()
            .set(
                "function",
                cat(&[&[0x7f], &text("math."), &raw_text(b"\xff"), &[BREAK]]),
            )
            .frame(),
    );
}
