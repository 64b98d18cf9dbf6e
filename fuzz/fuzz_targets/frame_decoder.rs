//! Arbitrary bytes through the host's read path: `FrameCodec` (length prefix
//! and limit) and then `decode_message` on every complete frame.
//!
//! The bytes are fed in chunks whose sizes are derived from the input itself
//! (a hash of it seeds a small PRNG), so that the seeds in `tests/corpus/`
//! stay byte-for-byte meaningful while every mutation also changes how the
//! stream is cut. Checks, besides "never panics":
//!
//! - no frame is longer than `max_frame`;
//! - every frame is exactly the body its length prefix announced, taken from
//!   the right place in the stream;
//! - `partial_since` is set exactly when a partial frame is buffered;
//! - chunked feeding yields the same frames and the same error as feeding
//!   everything at once;
//! - whatever `decode_message` accepts, `encode_message` can encode.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use wasmrpc::protocol::{FrameCodec, ProtocolError, decode_message, encode_message};

const MAX_FRAME: usize = 4 << 20;

/// What one pass over the input produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    /// `Some(len)` for `FrameTooLarge { len, .. }`.
    too_large: Option<usize>,
}

fn chunk_sizes(data: &[u8]) -> impl Iterator<Item = usize> {
    // FNV-1a of the input seeds an xorshift generator.
    let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    }) | 1;
    std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Mostly tiny chunks (1..=4 bytes split prefixes), some medium, some large.
        Some(match state % 8 {
            0..=2 => 1 + (state >> 8) as usize % 4,
            3..=5 => 1 + (state >> 8) as usize % 64,
            _ => 1 + (state >> 8) as usize % 4096,
        })
    })
}

fn feed(data: &[u8], chunked: bool) -> Outcome {
    let mut codec = FrameCodec::new(MAX_FRAME);
    let mut buf = BytesMut::new();
    let mut outcome = Outcome {
        frames: Vec::new(),
        too_large: None,
    };
    // Where in `data` the next frame's length prefix starts.
    let mut offset = 0usize;
    let mut fed = 0usize;
    let mut sizes = chunk_sizes(data);
    while fed < data.len() {
        let n = if chunked {
            sizes.next().unwrap().min(data.len() - fed)
        } else {
            data.len()
        };
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(
                        frame.len() <= MAX_FRAME,
                        "frame of {} bytes exceeds max_frame",
                        frame.len()
                    );
                    let prefix = u32::from_be_bytes(data[offset..offset + 4].try_into().unwrap());
                    assert_eq!(prefix as usize, frame.len(), "frame length != prefix");
                    assert_eq!(&frame[..], &data[offset + 4..offset + 4 + frame.len()]);
                    offset += 4 + frame.len();
                    assert_eq!(buf.len(), fed - offset, "bytes lost or duplicated");
                    if chunked {
                        check_body(&frame);
                    }
                    outcome.frames.push(frame.to_vec());
                }
                Ok(None) => {
                    assert_eq!(buf.len(), fed - offset, "bytes lost or duplicated");
                    assert_eq!(
                        codec.partial_since().is_some(),
                        !buf.is_empty(),
                        "partial_since disagrees with the buffer"
                    );
                    break;
                }
                Err(ProtocolError::FrameTooLarge { len, max }) => {
                    assert_eq!(max, MAX_FRAME);
                    assert!(len > MAX_FRAME);
                    let prefix = u32::from_be_bytes(data[offset..offset + 4].try_into().unwrap());
                    assert_eq!(prefix as usize, len);
                    outcome.too_large = Some(len);
                    return outcome;
                }
                Err(other) => panic!("FrameCodec returned an unexpected error: {other}"),
            }
        }
    }
    // What FramedRead does at EOF must not panic either.
    let _ = codec.decode_eof(&mut buf);
    outcome
}

fn check_body(body: &[u8]) {
    if let Ok(message) = decode_message(body) {
        encode_message(&message, u32::MAX as usize).expect("a decoded message re-encodes");
    }
}

fuzz_target!(|data: &[u8]| {
    let chunked = feed(data, true);
    let whole = feed(data, false);
    assert_eq!(chunked, whole, "chunking changed the decoded frames");
});
