//! CBOR encodings a decoder must survive: reserved additional information,
//! lone breaks, non-shortest heads, indefinite lengths, lying lengths and
//! nesting bombs.

use super::Corpus;
use super::cbor::{BREAK, array, bytes, cat, head, head_wide, map, raw_text, repeat, text, uint};
use super::message::{call, call_with, cancel, frame, list, ping};

/// Additional information 28, 29 and 30 (reserved), 31 where a major type
/// has no indefinite form, and lone breaks.
pub(super) fn reserved_encodings(c: &mut Corpus) {
    const CAT: &str = "reserved encodings and lone breaks";
    for ai in [28u8, 29, 30] {
        for major in 0..8u8 {
            let item = vec![major << 5 | ai];
            let name = if major == 0 {
                format!("reserved-ai-{ai}-in-ping.nonce")
            } else {
                format!("reserved-ai-{ai}-major-{major}-in-ping.nonce")
            };
            c.add(CAT, name, ping().set("nonce", item).frame());
        }
        let natural = |major: u8| vec![major << 5 | ai];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("call.id", call().set("id", natural(0)).frame()),
            ("call.function", call().set("function", natural(3)).frame()),
            ("call.args", call().set("args", natural(4)).frame()),
            (
                "call.args.0",
                call()
                    .set("args", cat(&[&[0x82], &natural(0), &uint(3)]))
                    .frame(),
            ),
            (
                "call.deadline_ms",
                call().set("deadline_ms", natural(0)).frame(),
            ),
            ("call.metadata", call().set("metadata", natural(5)).frame()),
            ("call.body", frame(&call().body_with(&natural(5)))),
            ("envelope", frame(&natural(5))),
            ("key-call.id", call().rekey("id", natural(3)).frame()),
            ("cancel.id", cancel().set("id", natural(0)).frame()),
            ("list.id", list().set("id", natural(0)).frame()),
        ];
        for (position, bytes) in cases {
            c.add(CAT, format!("reserved-ai-{ai}-in-{position}"), bytes);
        }
    }
    // ai 31 is "indefinite length" for majors 2-5 and "break" for 7; it is
    // not well-formed for 0, 1 and 6.
    for major in [0u8, 1, 6] {
        let item = vec![major << 5 | 31];
        c.add(
            CAT,
            format!("indefinite-ai-31-major-{major}-in-ping.nonce"),
            ping().set("nonce", item.clone()).frame(),
        );
        c.add(
            CAT,
            format!("indefinite-ai-31-major-{major}-in-call.args.0"),
            call().set("args", cat(&[&[0x82], &item, &uint(3)])).frame(),
        );
    }
    c.add(CAT, "lone-break-as-envelope", frame(&[BREAK]));
    c.add(
        CAT,
        "lone-break-after-envelope-ping",
        frame(&cat(&[&ping().body(), &[BREAK]])),
    );
    c.add(
        CAT,
        "lone-break-as-call.body",
        frame(&call().body_with(&[BREAK])),
    );
    for field in ["id", "function", "args"] {
        c.add(
            CAT,
            format!("lone-break-in-call.{field}"),
            call().set(field, vec![BREAK]).frame(),
        );
    }
    c.add(
        CAT,
        "lone-break-in-call.args.0",
        call()
            .set("args", cat(&[&[0x82], &[BREAK], &uint(3)]))
            .frame(),
    );
    c.add(
        CAT,
        "lone-break-as-key-call.id",
        call().rekey("id", vec![BREAK]).frame(),
    );
    c.add(
        CAT,
        "lone-break-in-ping.nonce",
        ping().set("nonce", vec![BREAK]).frame(),
    );
    c.add(
        CAT,
        "lone-break-as-kind",
        frame(&cat(&[&head(5, 1), &[BREAK], &map(&ping().fields)])),
    );
    // Non-shortest (but well-formed) integers and lengths: accepted.
    for ai in [24u8, 25, 26, 27] {
        c.add(
            "non-shortest forms",
            format!("non-shortest-ai-{ai}-uint-in-call.id"),
            call().set("id", head_wide(0, ai, 1)).frame(),
        );
        c.add(
            "non-shortest forms",
            format!("non-shortest-ai-{ai}-length-of-kind-ping"),
            frame(&cat(&[
                &head(5, 1),
                &head_wide(3, ai, 4),
                b"ping",
                &map(&ping().fields),
            ])),
        );
        c.add(
            "non-shortest forms",
            format!("non-shortest-ai-{ai}-length-of-call.args"),
            call()
                .set("args", cat(&[&head_wide(4, ai, 2), &uint(2), &uint(3)]))
                .frame(),
        );
    }
}

/// Indefinite-length items, valid and broken.
pub(super) fn indefinite_lengths(c: &mut Corpus) {
    const CAT: &str = "indefinite-length items";
    let ping_fields = cat(&[&text("nonce"), &uint(7)]);
    c.add(
        CAT,
        "indefinite-envelope-map-ping",
        frame(&cat(&[
            &[0xbf],
            &text("ping"),
            &map(&ping().fields),
            &[BREAK],
        ])),
    );
    c.add(
        CAT,
        "indefinite-envelope-map-ping-no-break",
        frame(&cat(&[&[0xbf], &text("ping"), &map(&ping().fields)])),
    );
    c.add(
        CAT,
        "indefinite-body-map-ping",
        frame(&ping().body_with(&cat(&[&[0xbf], &ping_fields, &[BREAK]]))),
    );
    c.add(
        CAT,
        "indefinite-body-map-ping-no-break",
        frame(&ping().body_with(&cat(&[&[0xbf], &ping_fields]))),
    );
    c.add(
        CAT,
        "indefinite-body-map-ping-odd-items",
        frame(&ping().body_with(&cat(&[&[0xbf], &ping_fields, &text("extra"), &[BREAK]]))),
    );
    c.add(
        CAT,
        "indefinite-args-array-call",
        call()
            .set("args", cat(&[&[0x9f], &uint(2), &uint(3), &[BREAK]]))
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-args-array-call-no-break",
        call()
            .set("args", cat(&[&[0x9f], &uint(2), &uint(3)]))
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-args-array-call-extra-break",
        call()
            .set("args", cat(&[&[0x9f], &uint(2), &uint(3), &[BREAK, BREAK]]))
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-text-call.function",
        call()
            .set(
                "function",
                cat(&[&[0x7f], &text("math"), &text(".add"), &[BREAK]]),
            )
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-text-empty-call.function",
        call().set("function", vec![0x7f, BREAK]).frame(),
    );
    c.add(
        CAT,
        "indefinite-text-bytes-chunk-call.function",
        call()
            .set("function", cat(&[&[0x7f], &bytes(b"math.add"), &[BREAK]]))
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-text-nested-indefinite-chunk-call.function",
        call()
            .set(
                "function",
                cat(&[&[0x7f, 0x7f], &text("math.add"), &[BREAK, BREAK]]),
            )
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-text-uint-chunk-call.function",
        call()
            .set("function", cat(&[&[0x7f], &uint(1), &[BREAK]]))
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-text-no-break-call.function",
        call()
            .set("function", cat(&[&[0x7f], &text("math.add")]))
            .frame(),
    );
    // "é" (c3 a9) split across two chunks: each chunk must be valid UTF-8.
    c.add(
        CAT,
        "indefinite-text-utf8-split-across-chunks-call.function",
        call()
            .set(
                "function",
                cat(&[
                    &[0x7f],
                    &raw_text(b"math.\xc3"),
                    &raw_text(b"\xa9"),
                    &[BREAK],
                ]),
            )
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-text-kind-ping",
        frame(&cat(&[
            &head(5, 1),
            &[0x7f],
            &text("pi"),
            &text("ng"),
            &[BREAK],
            &map(&ping().fields),
        ])),
    );
    c.add(
        CAT,
        "indefinite-bytes-in-call.args.0",
        call()
            .set(
                "args",
                array(&[
                    cat(&[&[0x5f], &bytes(&[1]), &bytes(&[2]), &[BREAK]]),
                    uint(3),
                ]),
            )
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-map-in-call.args.0",
        call()
            .set(
                "args",
                array(&[cat(&[&[0xbf], &text("a"), &uint(1), &[BREAK]]), uint(3)]),
            )
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-array-as-envelope",
        frame(&cat(&[
            &[0x9f],
            &text("ping"),
            &map(&ping().fields),
            &[BREAK],
        ])),
    );
    c.add(
        CAT,
        "indefinite-array-call.visited",
        call()
            .set("visited", cat(&[&[0x9f], &text("eu-west"), &[BREAK]]))
            .frame(),
    );
    c.add(
        CAT,
        "indefinite-map-call.metadata",
        call()
            .set(
                "metadata",
                cat(&[&[0xbf], &text("k"), &text("v"), &[BREAK]]),
            )
            .frame(),
    );
}

/// Heads claiming far more content than the frame holds.
pub(super) fn lying_lengths(c: &mut Corpus) {
    const CAT: &str = "lying lengths";
    let lengths: [(&str, Vec<u8>); 3] = [
        ("2pow32-1", vec![26, 0xff, 0xff, 0xff, 0xff]),
        ("2pow32", vec![27, 0, 0, 0, 1, 0, 0, 0, 0]),
        (
            "2pow64-1",
            vec![27, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
    ];
    let majors = [("bytes", 2u8), ("text", 3), ("array", 4), ("map", 5)];
    for (length, tail) in &lengths {
        for (kind, major) in majors {
            let lie = cat(&[&[major << 5 | tail[0]], &tail[1..]]);
            let call_fields = map(&call().fields);
            let cases: Vec<(&str, Vec<u8>)> = vec![
                ("call.args", call().set("args", lie.clone()).frame()),
                (
                    "call.args.0",
                    call().set("args", cat(&[&[0x82], &lie, &uint(3)])).frame(),
                ),
                ("call.function", call().set("function", lie.clone()).frame()),
                (
                    "call.visited",
                    call_with("visited").set("visited", lie.clone()).frame(),
                ),
                (
                    "call.metadata",
                    call_with("metadata").set("metadata", lie.clone()).frame(),
                ),
                (
                    "call.body",
                    frame(&call().body_with(&cat(&[&lie, &call_fields[1..]]))),
                ),
                ("envelope", frame(&cat(&[&lie, &call().body()[1..]]))),
                ("key-call.id", call().rekey("id", lie.clone()).frame()),
            ];
            for (position, bytes) in cases {
                c.add(
                    CAT,
                    format!("lying-length-{kind}-{length}-in-{position}"),
                    bytes,
                );
            }
        }
        // A chunk of an indefinite text string that lies.
        c.add(
            CAT,
            format!("lying-length-text-chunk-{length}-in-call.function"),
            call()
                .set(
                    "function",
                    cat(&[&[0x7f], &[0x60 | tail[0]], &tail[1..], b"math", &[BREAK]]),
                )
                .frame(),
        );
    }
}

/// Nesting bombs (100 000 levels) and the documented depth limits.
pub(super) fn nesting(c: &mut Corpus) {
    const CAT: &str = "nesting bombs and depth limits";
    const N: usize = 100_000;
    let arg0 = |value: Vec<u8>| call().set("args", cat(&[&[0x81], &value])).frame();
    let bombs: Vec<(&str, Vec<u8>)> = vec![
        ("arrays", cat(&[&repeat(&[0x81], N), &[0x00]])),
        ("maps", cat(&[&repeat(&[0xa1, 0x00], N), &[0x00]])),
        (
            "map-keys",
            cat(&[&repeat(&[0xa1], N), &[0x00, 0x00], &repeat(&[0x00], N - 1)]),
        ),
        ("tags", cat(&[&repeat(&[0xc6], N), &[0x00]])),
        ("bignum-tags", cat(&[&repeat(&[0xc2], N), &bytes(&[1])])),
        (
            "indefinite-arrays",
            cat(&[&repeat(&[0x9f], N), &repeat(&[BREAK], N)]),
        ),
        ("indefinite-arrays-unclosed", repeat(&[0x9f], N)),
        (
            "indefinite-maps",
            cat(&[&repeat(&[0xbf, 0x00], N), &[0x00], &repeat(&[BREAK], N)]),
        ),
        (
            "mixed",
            cat(&[&repeat(&[0x81, 0xa1, 0x00, 0xc6], N / 4), &[0x00]]),
        ),
    ];
    for (name, bomb) in &bombs {
        c.add(
            CAT,
            format!("nesting-bomb-{N}-{name}-in-call.args.0"),
            arg0(bomb.clone()),
        );
    }
    let arrays = &bombs[0].1;
    c.add(
        CAT,
        format!("nesting-bomb-{N}-arrays-as-envelope"),
        frame(arrays),
    );
    c.add(
        CAT,
        format!("nesting-bomb-{N}-arrays-as-call.body"),
        frame(&call().body_with(arrays)),
    );
    c.add(
        CAT,
        format!("nesting-bomb-{N}-arrays-in-call.metadata"),
        call()
            .set("metadata", cat(&[&[0xa1], &text("k"), arrays]))
            .frame(),
    );
    c.add(
        CAT,
        format!("nesting-bomb-{N}-arrays-in-call.visited"),
        call().set("visited", cat(&[&[0x81], arrays])).frame(),
    );
    c.add(
        CAT,
        format!("nesting-bomb-{N}-tags-in-ping.nonce"),
        ping()
            .set("nonce", cat(&[&repeat(&[0xc6], N), &uint(7)]))
            .frame(),
    );
    c.add(
        CAT,
        format!("nesting-bomb-{N}-tags-around-envelope-ping"),
        frame(&cat(&[&repeat(&[0xc6], N), &ping().body()])),
    );
    c.add(
        CAT,
        format!("nesting-bomb-{N}-tags-around-call.body"),
        frame(&call().body_with(&cat(&[&repeat(&[0xc6], N), &map(&call().fields)]))),
    );
    // The limits: each argument may nest 63 levels, the frame 80.
    let nested = |depth: usize| cat(&[&repeat(&[0x81], depth), &[0x00]]);
    for depth in [63usize, 64, 77, 78] {
        c.add(
            CAT,
            format!("nesting-depth-{depth}-arrays-in-call.args.0"),
            call().set("args", array(&[nested(depth), uint(3)])).frame(),
        );
    }
    for depth in [63usize, 64] {
        c.add(
            CAT,
            format!("nesting-depth-{depth}-tags-in-call.args.0"),
            call()
                .set(
                    "args",
                    array(&[cat(&[&repeat(&[0xc6], depth), &[0x00]]), uint(3)]),
                )
                .frame(),
        );
        c.add(
            CAT,
            format!("nesting-depth-{depth}-maps-in-call.args.0"),
            call()
                .set(
                    "args",
                    array(&[cat(&[&repeat(&[0xa1, 0x00], depth), &[0x00]]), uint(3)]),
                )
                .frame(),
        );
    }
}
