//! CBOR values for the `cbor_to_val` fuzz target.

use super::cbor::{
    BREAK, FALSE, NULL, TRUE, array, bytes, cat, map, nint, repeat, tag, text, uint,
};

/// CBOR values for every parameter type of the `cbor_to_val` fuzz target
/// (see its WAT): valid ones and near misses.
pub(super) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let record = |d: Vec<u8>| {
        map(&[
            (text("a"), uint(1)),
            (text("b"), text("x")),
            (text("c"), bytes(&[1, 2])),
            (text("d"), d),
        ])
    };
    vec![
        ("true", vec![TRUE]),
        ("false", vec![FALSE]),
        ("null", vec![NULL]),
        ("uint-0", uint(0)),
        ("uint-127", uint(127)),
        ("uint-255", uint(255)),
        ("uint-256", uint(256)),
        ("uint-65535", uint(65535)),
        ("uint-2pow31", uint(1 << 31)),
        ("uint-2pow32", uint(1 << 32)),
        ("uint-2pow63", uint(1 << 63)),
        ("uint-max", uint(u64::MAX)),
        ("nint-1", nint(0)),
        ("nint-129", nint(128)),
        ("nint-2pow63", nint((1 << 63) - 1)),
        ("nint-2pow63-1", nint(1 << 63)),
        ("nint-2pow64", nint(u64::MAX)),
        ("half-1.5", vec![0xf9, 0x3e, 0x00]),
        ("half-nan", vec![0xf9, 0x7e, 0x00]),
        ("half-inf", vec![0xf9, 0x7c, 0x00]),
        ("half-neg-zero", vec![0xf9, 0x80, 0x00]),
        ("single-1.5", vec![0xfa, 0x3f, 0xc0, 0x00, 0x00]),
        ("single-nan-payload", vec![0xfa, 0x7f, 0xc0, 0x00, 0x01]),
        (
            "double-f32-max",
            vec![0xfb, 0x47, 0xef, 0xff, 0xff, 0xe0, 0, 0, 0],
        ),
        (
            "double-above-f32-max",
            vec![0xfb, 0x47, 0xf0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "double-nan-payload",
            vec![0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 1],
        ),
        ("double-tiny", vec![0xfb, 0, 0, 0, 0, 0, 0, 0, 1]),
        ("char-a", text("a")),
        ("char-e-acute", text("é")),
        ("char-emoji", text("😀")),
        ("text-two-chars", text("ab")),
        ("text-empty", text("")),
        ("bytes", bytes(&[1, 2, 3])),
        ("bytes-empty", bytes(&[])),
        ("array-of-u8", array(&[uint(1), uint(255)])),
        ("array-u8-out-of-range", array(&[uint(256)])),
        ("array-of-text", array(&[text("a"), text("b")])),
        (
            "tuple",
            array(&[uint(1), text("x"), vec![0xf9, 0x3e, 0x00]]),
        ),
        ("tuple-short", array(&[uint(1), text("x")])),
        ("record", record(text("red"))),
        ("record-d-null", record(vec![NULL])),
        ("record-unknown-field", map(&[(text("z"), uint(1))])),
        (
            "record-duplicate-field",
            map(&[(text("a"), uint(1)), (text("a"), uint(2))]),
        ),
        ("record-uint-key", map(&[(uint(1), uint(1))])),
        ("variant-none-text", text("none")),
        ("variant-none-map", map(&[(text("none"), vec![NULL])])),
        ("variant-num", map(&[(text("num"), uint(5))])),
        ("variant-text", map(&[(text("text"), text("t"))])),
        (
            "variant-inner",
            map(&[(text("inner"), record(text("blue")))]),
        ),
        ("variant-maybe-null", map(&[(text("maybe"), vec![NULL])])),
        ("variant-maybe-7", map(&[(text("maybe"), uint(7))])),
        ("variant-unknown", map(&[(text("circle"), uint(1))])),
        (
            "variant-two-keys",
            map(&[(text("num"), uint(1)), (text("text"), text("t"))]),
        ),
        ("enum-green", text("green")),
        ("enum-unknown", text("purple")),
        ("option-option-some-none", array(&[vec![NULL]])),
        ("option-option-some-some", array(&[array(&[uint(5)])])),
        ("option-option-bare-5", uint(5)),
        (
            "option-option-two-elements",
            array(&[vec![NULL], vec![NULL]]),
        ),
        ("result-ok", map(&[(text("ok"), text("x"))])),
        ("result-err", map(&[(text("err"), uint(1))])),
        ("result-err-text", map(&[(text("err"), text("e"))])),
        ("result-ok-null", map(&[(text("ok"), vec![NULL])])),
        ("result-bare-ok", text("ok")),
        ("result-bare-err", text("err")),
        ("result-maybe", map(&[(text("maybe"), uint(1))])),
        ("flags", array(&[text("read"), text("exec")])),
        ("flags-repeated", array(&[text("read"), text("read")])),
        ("flags-unknown", array(&[text("fly")])),
        ("flags-empty", array(&[])),
        (
            "list-of-records",
            array(&[record(vec![NULL]), record(text("red"))]),
        ),
        (
            "list-of-option-options",
            array(&[vec![NULL], array(&[vec![NULL]]), array(&[uint(3)])]),
        ),
        (
            "nested",
            array(&[array(&[
                map(&[(text("num"), uint(1))]),
                array(&[
                    map(&[(text("ok"), uint(1))]),
                    map(&[(text("err"), text("red"))]),
                ]),
            ])]),
        ),
        ("tag-around-uint", tag(1, &uint(5))),
        ("bignum", tag(2, &bytes(&[1, 0, 0, 0, 0, 0, 0, 0, 0]))),
        (
            "indefinite-text",
            cat(&[&[0x7f], &text("a"), &text("b"), &[BREAK]]),
        ),
        ("indefinite-bytes", cat(&[&[0x5f], &bytes(&[1]), &[BREAK]])),
        ("indefinite-array", cat(&[&[0x9f], &uint(1), &[BREAK]])),
        ("deep-64", cat(&[&repeat(&[0x81], 63), &[0x00]])),
    ]
}
