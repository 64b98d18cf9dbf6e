//! Frames, and the valid messages every generator starts from: the base
//! frames of PROTOCOL.md §10, each field replaceable on its own.

use super::cbor::{array, cat, head, map, text, uint};

/// The largest frame body a host accepts (`DEFAULT_MAX_FRAME`).
pub(super) const MAX_FRAME: u32 = 4 << 20;

/// Length prefix + body.
pub(super) fn frame(body: &[u8]) -> Vec<u8> {
    cat(&[&(body.len() as u32).to_be_bytes(), body])
}

/// A length prefix of `len`, whatever the body's length.
pub(super) fn prefixed(len: u32, body: &[u8]) -> Vec<u8> {
    cat(&[&len.to_be_bytes(), body])
}

/// A message as its kind and its body's fields (encoded keys and values),
/// so that single fields can be replaced, repeated or dropped.
#[derive(Clone)]
pub(super) struct Msg {
    pub(super) kind: &'static str,
    pub(super) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Msg {
    pub(super) fn new(kind: &'static str, fields: &[(&str, Vec<u8>)]) -> Msg {
        Msg {
            kind,
            fields: fields.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        }
    }

    /// `{kind: {fields}}`.
    pub(super) fn body(&self) -> Vec<u8> {
        self.body_with(&map(&self.fields))
    }

    /// `{kind: inner}` with raw bytes for the inner item.
    pub(super) fn body_with(&self, inner: &[u8]) -> Vec<u8> {
        cat(&[&head(5, 1), &text(self.kind), inner])
    }

    pub(super) fn frame(&self) -> Vec<u8> {
        frame(&self.body())
    }

    /// The same message with `key` set to `value` (appended when absent).
    pub(super) fn set(&self, key: &str, value: Vec<u8>) -> Msg {
        let mut m = self.clone();
        let k = text(key);
        match m.fields.iter_mut().find(|(fk, _)| *fk == k) {
            Some(field) => field.1 = value,
            None => m.fields.push((k, value)),
        }
        m
    }

    /// The same message with an extra raw entry (the key may repeat).
    pub(super) fn push(&self, key: Vec<u8>, value: Vec<u8>) -> Msg {
        let mut m = self.clone();
        m.fields.push((key, value));
        m
    }

    /// The same message with `key` given an encoded key of another form.
    pub(super) fn rekey(&self, key: &str, new_key: Vec<u8>) -> Msg {
        let mut m = self.clone();
        let k = text(key);
        for field in &mut m.fields {
            if field.0 == k {
                field.0 = new_key.clone();
            }
        }
        m
    }

    pub(super) fn without(&self, key: &str) -> Msg {
        let mut m = self.clone();
        let k = text(key);
        m.fields.retain(|(fk, _)| *fk != k);
        m
    }

    /// The value of `key` (the valid one).
    pub(super) fn get(&self, key: &str) -> Vec<u8> {
        let k = text(key);
        self.fields
            .iter()
            .find(|(fk, _)| *fk == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{} has no field {key}", self.kind))
    }
}

/// `{"call": {"id": 1, "function": "math.add", "args": [2, 3]}}` (PROTOCOL.md §10.3).
pub(super) fn call() -> Msg {
    call_id(1)
}

pub(super) fn call_id(id: u64) -> Msg {
    Msg::new(
        "call",
        &[
            ("id", uint(id)),
            ("function", text("math.add")),
            ("args", array(&[uint(2), uint(3)])),
        ],
    )
}

/// Valid values for the optional fields of `call`.
fn call_optional(field: &str) -> Vec<u8> {
    match field {
        "deadline_ms" => uint(1000),
        "hops" => uint(0),
        "visited" => array(&[]),
        "metadata" => map(&[]),
        _ => unreachable!(),
    }
}

pub(super) const CALL_FIELDS: [&str; 7] = [
    "id",
    "function",
    "args",
    "deadline_ms",
    "hops",
    "visited",
    "metadata",
];

/// The call with `field` present: its own valid value when optional.
pub(super) fn call_with(field: &str) -> Msg {
    match field {
        "id" | "function" | "args" => call(),
        optional => call().set(optional, call_optional(optional)),
    }
}

pub(super) fn ping() -> Msg {
    ping_nonce(7)
}

pub(super) fn ping_nonce(nonce: u64) -> Msg {
    Msg::new("ping", &[("nonce", uint(nonce))])
}

pub(super) fn pong() -> Msg {
    Msg::new("pong", &[("nonce", uint(7))])
}

pub(super) fn list() -> Msg {
    Msg::new("list", &[("id", uint(3))])
}

pub(super) fn cancel() -> Msg {
    Msg::new("cancel", &[("id", uint(4))])
}

pub(super) fn hello() -> Msg {
    Msg::new("hello", &[("version", uint(1)), ("role", text("client"))])
}

pub(super) fn reply() -> Msg {
    Msg::new("reply", &[("id", uint(1)), ("value", uint(5))])
}

/// Single-field messages and the field, for the per-field cases.
pub(super) fn small_messages() -> [(Msg, &'static str); 3] {
    [(ping(), "nonce"), (cancel(), "id"), (list(), "id")]
}

/// The base frames are byte-for-byte those of PROTOCOL.md §10.
pub(super) fn check_reference_frames() {
    let hex = |s: &str| -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    assert_eq!(
        call().frame(),
        hex(
            "00 00 00 25 a1 64 63 61 6c 6c a3 62 69 64 01 68 66 75 6e 63 74 69 6f 6e 68 6d \
             61 74 68 2e 61 64 64 64 61 72 67 73 82 02 03"
        )
    );
    assert_eq!(
        ping().frame(),
        hex("00 00 00 0e a1 64 70 69 6e 67 a1 65 6e 6f 6e 63 65 07")
    );
    assert_eq!(
        pong().frame(),
        hex("00 00 00 0e a1 64 70 6f 6e 67 a1 65 6e 6f 6e 63 65 07")
    );
    assert_eq!(
        list().frame(),
        hex("00 00 00 0b a1 64 6c 69 73 74 a1 62 69 64 03")
    );
    assert_eq!(
        cancel().frame(),
        hex("00 00 00 0d a1 66 63 61 6e 63 65 6c a1 62 69 64 04")
    );
    assert_eq!(
        reply().frame(),
        hex("00 00 00 13 a1 65 72 65 70 6c 79 a2 62 69 64 01 65 76 61 6c 75 65 05")
    );
}
