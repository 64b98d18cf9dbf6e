//! Arbitrary frame bodies through `decode_message`; whatever it accepts must
//! survive `encode_message` → `decode_message` unchanged.
//!
//! Checks, besides "never panics":
//!
//! - decode(encode(m)) == m (compared structurally, with NaN equal to NaN,
//!   since `ciborium::Value` compares floats with IEEE `==`);
//! - encoding is stable: encode(decode(encode(m))) == encode(m), byte for byte;
//! - the frame's length prefix is the body's length.

#![no_main]

use ciborium::Value;
use libfuzzer_sys::fuzz_target;
use wasmrpc::protocol::{Message, decode_message, encode_message};

/// `a == b`, except that a NaN float equals any NaN float.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((xk, xv), (yk, yv))| same_value(xk, yk) && same_value(xv, yv))
        }
        (Value::Tag(xt, x), Value::Tag(yt, y)) => xt == yt && same_value(x, y),
        _ => a == b,
    }
}

fn has_float(value: &Value) -> bool {
    match value {
        Value::Float(_) => true,
        Value::Array(items) => items.iter().any(has_float),
        Value::Map(entries) => entries.iter().any(|(k, v)| has_float(k) || has_float(v)),
        Value::Tag(_, inner) => has_float(inner),
        _ => false,
    }
}

/// The message's payload values, for the float-aware comparison.
fn payloads(message: &Message) -> Vec<&Value> {
    match message {
        Message::Call(call) => call.args.iter().collect(),
        Message::Reply(reply) => vec![&reply.value],
        Message::Error(error) => error.detail.iter().collect(),
        _ => Vec::new(),
    }
}

fn same_message(a: &Message, b: &Message) -> bool {
    let (pa, pb) = (payloads(a), payloads(b));
    if pa.iter().any(|v| has_float(v)) {
        // Compare the payloads float-aware, everything else with ==.
        let strip = |m: &Message| -> Message {
            let mut m = m.clone();
            match &mut m {
                Message::Call(call) => call.args.clear(),
                Message::Reply(reply) => reply.value = Value::Null,
                Message::Error(error) => error.detail = None,
                _ => {}
            }
            m
        };
        pa.len() == pb.len()
            && pa.iter().zip(&pb).all(|(x, y)| same_value(x, y))
            && strip(a) == strip(b)
    } else {
        a == b
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(first) = decode_message(data) else {
        return;
    };
    let frame = encode_message(&first, u32::MAX as usize).expect("a decoded message encodes");
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4, "length prefix != body length");
    let second = match decode_message(&frame[4..]) {
        Ok(message) => message,
        Err(error) => panic!(
            "re-encoded message does not decode: {error}\nfirst: {first:?}\nbytes: {:02x?}",
            &frame[4..]
        ),
    };
    assert!(
        same_message(&first, &second),
        "round trip changed the message\nfirst:  {first:?}\nsecond: {second:?}"
    );
    let again = encode_message(&second, u32::MAX as usize).expect("encodes again");
    assert_eq!(frame, again, "encoding is not stable");
});
