//! Valid frames damaged: cut short at every offset, or with one bit flipped.

use super::Corpus;
use super::message::{call, cancel, frame, hello, list, ping, reply};

/// Every prefix of valid frames, as a stream cut short (the host waits
/// for the rest) and as a complete frame whose CBOR is cut short.
pub(super) fn truncations(c: &mut Corpus) {
    let bases = [
        ("call", call()),
        ("ping", ping()),
        ("list", list()),
        ("cancel", cancel()),
        ("hello", hello()),
    ];
    for (name, msg) in &bases {
        let full = msg.frame();
        for n in 1..full.len() {
            c.add(
                "truncated stream",
                format!("truncated-{name}-at-{n}"),
                full[..n].to_vec(),
            );
        }
        let body = msg.body();
        for n in 0..body.len() {
            c.add(
                "truncated CBOR in a complete frame",
                format!("truncated-cbor-{name}-at-{n}"),
                frame(&body[..n]),
            );
        }
    }
    let full = hello().frame();
    for n in 1..full.len() {
        c.add(
            "truncated stream",
            format!("prehello-truncated-hello-at-{n}"),
            full[..n].to_vec(),
        );
    }
}

/// One bit flipped per byte, the bit varying with the offset.
pub(super) fn bit_flips(c: &mut Corpus) {
    let bases = [
        ("call", call().frame()),
        ("ping", ping().frame()),
        ("list", list().frame()),
        ("cancel", cancel().frame()),
        ("reply", reply().frame()),
    ];
    for (name, full) in &bases {
        for i in 0..full.len() {
            let bit = (i * 5 + 6) % 8;
            let mut flipped = full.clone();
            flipped[i] ^= 1 << bit;
            c.add(
                "bit flips",
                format!("bitflip-{name}-byte-{i}-bit-{bit}"),
                flipped,
            );
        }
    }
    // Every bit of the envelope's first bytes of a call (map head, kind).
    let full = call().frame();
    for i in 4..10 {
        for bit in 0..8 {
            if bit == (i * 5 + 6) % 8 {
                continue;
            }
            let mut flipped = full.clone();
            flipped[i] ^= 1 << bit;
            c.add(
                "bit flips",
                format!("bitflip-call-byte-{i}-bit-{bit}"),
                flipped,
            );
        }
    }
}
