//! CBOR items written by hand, byte by byte, including the forms a valid
//! encoder never writes (non-shortest heads, reserved additional information,
//! lone breaks).

/// The shortest head for `major` with argument `n`.
pub(super) fn head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    if n < 24 {
        vec![m | n as u8]
    } else if n <= 0xff {
        vec![m | 24, n as u8]
    } else if n <= 0xffff {
        let mut v = vec![m | 25];
        v.extend((n as u16).to_be_bytes());
        v
    } else if n <= 0xffff_ffff {
        let mut v = vec![m | 26];
        v.extend((n as u32).to_be_bytes());
        v
    } else {
        let mut v = vec![m | 27];
        v.extend(n.to_be_bytes());
        v
    }
}

/// A head with an explicit additional-info width (for non-shortest forms).
pub(super) fn head_wide(major: u8, ai: u8, n: u64) -> Vec<u8> {
    let mut v = vec![major << 5 | ai];
    match ai {
        24 => v.push(n as u8),
        25 => v.extend((n as u16).to_be_bytes()),
        26 => v.extend((n as u32).to_be_bytes()),
        27 => v.extend(n.to_be_bytes()),
        _ => panic!("head_wide needs ai 24..=27"),
    }
    v
}

pub(super) fn uint(n: u64) -> Vec<u8> {
    head(0, n)
}

/// The negative integer `-1 - n`.
pub(super) fn nint(n: u64) -> Vec<u8> {
    head(1, n)
}

pub(super) fn bytes(b: &[u8]) -> Vec<u8> {
    cat(&[&head(2, b.len() as u64), b])
}

pub(super) fn text(s: &str) -> Vec<u8> {
    raw_text(s.as_bytes())
}

/// A text string of arbitrary (possibly invalid UTF-8) bytes.
pub(super) fn raw_text(b: &[u8]) -> Vec<u8> {
    cat(&[&head(3, b.len() as u64), b])
}

pub(super) fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut v = head(4, items.len() as u64);
    for item in items {
        v.extend(item);
    }
    v
}

pub(super) fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut v = head(5, entries.len() as u64);
    for (k, x) in entries {
        v.extend(k);
        v.extend(x);
    }
    v
}

pub(super) fn tag(t: u64, inner: &[u8]) -> Vec<u8> {
    cat(&[&head(6, t), inner])
}

pub(super) const FALSE: u8 = 0xf4;
pub(super) const TRUE: u8 = 0xf5;
pub(super) const NULL: u8 = 0xf6;
pub(super) const UNDEFINED: u8 = 0xf7;
pub(super) const BREAK: u8 = 0xff;

pub(super) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub(super) fn repeat(pattern: &[u8], n: usize) -> Vec<u8> {
    pattern.repeat(n)
}
