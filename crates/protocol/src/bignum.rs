//! CBOR bignums (RFC 8949 §3.4.3): tag 2 or 3 over a byte string. The host
//! reads them as integers like any other (PROTOCOL.md §8.2), and so does the
//! client's typed mapping.

use ciborium::Value;

/// The tag of a positive bignum.
pub const POSITIVE: u64 = 2;
/// The tag of a negative bignum.
pub const NEGATIVE: u64 = 3;

/// The value of a bignum: `magnitude` n big-endian, negative meaning −1 − n.
///
/// # Errors
///
/// A description of the value when it does not fit an `i128`: its digits,
/// or `a [negative ]bignum of N bytes` when it has more than 16 bytes after
/// its leading zero bytes.
pub fn value(negative: bool, magnitude: &[u8]) -> Result<i128, String> {
    let first = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let digits = &magnitude[first..];
    if digits.len() > 16 {
        let sign = if negative { "negative " } else { "" };
        return Err(format!("a {sign}bignum of {} bytes", digits.len()));
    }
    let n = digits.iter().fold(0u128, |n, &b| (n << 8) | u128::from(b));
    match (negative, i128::try_from(n)) {
        (false, Ok(n)) => Ok(n),
        (true, Ok(n)) => Ok(-1 - n),
        (false, Err(_)) => Err(n.to_string()),
        (true, Err(_)) => Err(match n.checked_add(1) {
            Some(n) => format!("-{n}"),
            None => "-340282366920938463463374607431768211456".to_owned(), // −2¹²⁸
        }),
    }
}

/// The integer `value` holds: a CBOR integer, or a bignum (the decoder
/// turns bignums within ±2⁶⁴ into integers; these are the others). `None`
/// when it is neither; `Some(Err(shown))` for a bignum beyond an `i128`, as
/// [`value`] describes it.
pub fn integer(value: &Value) -> Option<Result<i128, String>> {
    match value {
        Value::Integer(i) => Some(Ok(i128::from(*i))),
        Value::Tag(tag @ (POSITIVE | NEGATIVE), inner) => match &**inner {
            Value::Bytes(magnitude) => Some(self::value(*tag == NEGATIVE, magnitude)),
            _ => None,
        },
        _ => None,
    }
}
