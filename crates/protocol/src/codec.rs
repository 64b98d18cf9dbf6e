//! Framing (4-byte big-endian length + CBOR body) and envelope encoding.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ciborium::Value;

use super::error::ProtocolError;
use super::message::Message;
use super::{ARGS_NESTING, ENVELOPE_NESTING};

/// Splits a byte stream into frame bodies.
///
/// The length prefix is checked against `max_frame` before anything of that
/// size is allocated; a partial frame only ever holds the bytes received.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: usize,
    /// When the first byte of a frame not yet complete arrived.
    partial_since: Option<std::time::Instant>,
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> Self {
        FrameCodec {
            max_frame,
            partial_since: None,
        }
    }

    /// Whether `buf` starts with a complete frame (or with a length over the
    /// limit, which the next decode reports).
    pub fn holds_frame(&self, buf: &[u8]) -> bool {
        matches!(self.first_frame(buf), Some(Ok(_)) | Some(Err(())))
    }

    /// How many complete frames `buf` starts with, counting up to `most`.
    pub fn frames_held(&self, buf: &[u8], most: usize) -> usize {
        let mut rest = buf;
        let mut count = 0;
        while count < most {
            let Some(Ok(len)) = self.first_frame(rest) else {
                break;
            };
            rest = &rest[len..];
            count += 1;
        }
        count
    }

    /// The first frame of `buf`: `Ok` with its whole length (prefix
    /// included) when complete, `Err` when its length is over the limit,
    /// `None` while incomplete.
    fn first_frame(&self, buf: &[u8]) -> Option<Result<usize, ()>> {
        let len = u32::from_be_bytes(*buf.first_chunk::<4>()?) as usize;
        if len > self.max_frame {
            Some(Err(()))
        } else {
            (buf.len() - 4 >= len).then_some(Ok(4 + len))
        }
    }

    /// Since when a frame has been arriving without completing, if one is.
    pub fn partial_since(&self) -> Option<std::time::Instant> {
        self.partial_since
    }
}

impl FrameCodec {
    /// Takes the first complete frame body off `src`, if there is one.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::FrameTooLarge`] when the length prefix is over the
    /// limit.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        let frame = self.split_frame(src)?;
        self.partial_since = match (&frame, src.is_empty()) {
            (None, false) => Some(self.partial_since.unwrap_or_else(std::time::Instant::now)),
            _ => None,
        };
        Ok(frame)
    }
}

/// Frames from an async byte stream (`tokio_util::codec::FramedRead`).
#[cfg(feature = "tokio-codec")]
impl tokio_util::codec::Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        FrameCodec::decode(self, src)
    }
}

impl FrameCodec {
    fn split_frame(&self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        if src.len() < 4 + len {
            // Once a sixteenth of the frame is here, room for all of it at
            // once: a buffer that doubles as it fills copies what it holds
            // at each doubling. Not sooner, so that a length prefix alone
            // cannot make the host set aside a frame's worth of memory.
            if src.len() >= (4 + len) / 16 {
                src.reserve(4 + len - src.len());
            }
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len)))
    }
}

/// Decodes one frame body into a [`Message`].
///
/// # Errors
///
/// [`ProtocolError::Malformed`] when the body is not exactly one CBOR item,
/// nests deeper than the envelope plus argument limits, has unknown or
/// duplicate keys, or has a field of the wrong type.
pub fn decode_message(body: &[u8]) -> Result<Message, ProtocolError> {
    let mut reader = body;
    let message: Message = ciborium::de::from_reader_with_recursion_limit(
        &mut reader,
        ENVELOPE_NESTING + ARGS_NESTING,
    )
    .map_err(|e| ProtocolError::Malformed(describe_de_error(e)))?;
    if !reader.is_empty() {
        return Err(ProtocolError::Malformed(format!(
            "{} trailing bytes after the message",
            reader.len()
        )));
    }
    let payload_too_deep = match &message {
        Message::Call(call) => call.args.iter().any(|v| depth(v) >= ARGS_NESTING),
        Message::Reply(reply) => depth(&reply.value) > ARGS_NESTING,
        Message::Error(error) => error
            .detail
            .as_ref()
            .is_some_and(|d| depth(d) > ARGS_NESTING),
        _ => false,
    };
    if payload_too_deep {
        return Err(ProtocolError::Malformed(format!(
            "value nests deeper than {ARGS_NESTING} levels"
        )));
    }
    Ok(message)
}

/// Encodes `message` as a complete frame (length prefix included).
///
/// # Errors
///
/// [`ProtocolError::FrameTooLarge`] when the body exceeds `max_frame`.
pub fn encode_message(message: &Message, max_frame: usize) -> Result<Bytes, ProtocolError> {
    let mut buf = BytesMut::with_capacity(64);
    encode_message_into(message, max_frame, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends `message` to `buf` as a complete frame (length prefix included)
/// and returns the frame's length. A writer's queue can take a frame this way
/// without a buffer of its own to copy from.
///
/// # Errors
///
/// As [`encode_message`]; `buf` is then as it was.
pub fn encode_message_into(
    message: &Message,
    max_frame: usize,
    buf: &mut BytesMut,
) -> Result<usize, ProtocolError> {
    let start = buf.len();
    buf.put_u32(0);
    let encoded = ciborium::ser::into_writer(message, (&mut *buf).writer());
    let len = buf.len() - start - 4;
    if let Err(e) = encoded {
        buf.truncate(start);
        return Err(ProtocolError::Malformed(format!(
            "cannot encode message: {e}"
        )));
    }
    if len > max_frame {
        buf.truncate(start);
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(len + 4)
}

/// Nesting depth of a value: scalars are 0, `[1]` is 1, `[[1]]` is 2.
pub(crate) fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        Value::Tag(_, inner) => 1 + depth(inner),
        _ => 0,
    }
}

fn describe_de_error(error: ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match error {
        Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "truncated CBOR item".to_owned()
        }
        Error::Io(e) => format!("i/o error: {e}"),
        Error::Syntax(offset) => format!("invalid CBOR at byte {offset}"),
        Error::Semantic(Some(offset), msg) => format!("{msg} (at byte {offset})"),
        Error::Semantic(None, msg) => msg,
        Error::RecursionLimitExceeded => format!(
            "CBOR nests deeper than {} levels",
            ENVELOPE_NESTING + ARGS_NESTING
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Call, Hello, Role};

    fn frame(msg: &Message) -> Bytes {
        encode_message(msg, 1 << 20).unwrap()
    }

    #[test]
    fn call_round_trips_through_frame_and_envelope() {
        let msg = Message::Call(Call {
            id: 7,
            function: "math.add".into(),
            args: vec![Value::from(2), Value::from(3)],
            deadline_ms: Some(250),
            hops: 1,
            visited: vec!["eu-west".into()],
            metadata: [("trace".to_owned(), "abc".to_owned())].into(),
            principal: None,
        });
        let mut buf = BytesMut::from(&frame(&msg)[..]);
        let body = FrameCodec::new(1 << 20).decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(decode_message(&body).unwrap(), msg);
    }

    #[test]
    fn a_frame_is_appended_to_what_the_buffer_holds_or_not_at_all() {
        let ping = Message::Ping(crate::Ping { nonce: 3 });
        let mut buf = BytesMut::from(&b"queued"[..]);
        let len = encode_message_into(&ping, 1 << 20, &mut buf).unwrap();
        assert_eq!(&buf[..6], b"queued");
        assert_eq!(&buf[6..], &frame(&ping)[..]);
        assert_eq!(len, buf.len() - 6);

        let big = Message::Reply(crate::Reply {
            id: 4,
            value: Value::Bytes(vec![7; 100]),
        });
        let refused = encode_message_into(&big, 64, &mut buf);
        assert!(
            matches!(refused, Err(ProtocolError::FrameTooLarge { max: 64, .. })),
            "{refused:?}"
        );
        assert_eq!(&buf[6..], &frame(&ping)[..]);
        assert_eq!(buf.len(), 6 + len);
    }

    #[test]
    fn a_partial_frame_makes_room_for_the_whole_frame_once_a_sixteenth_is_here() {
        let mut codec = FrameCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        buf.put_u32(100_000);
        buf.put_bytes(7, 10);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() < 100_004, "capacity {}", buf.capacity());
        buf.put_bytes(7, 6_250 - 14);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() >= 100_004, "capacity {}", buf.capacity());
        assert_eq!(buf.len(), 6_250);
    }

    #[test]
    fn hello_encodes_as_a_single_key_map() {
        let msg = Message::Hello(Hello {
            version: 1,
            role: Role::Client,
            region: None,
            host_id: None,
            max_in_flight: None,
            token: None,
        });
        let bytes = frame(&msg);
        // Version 1, as an old client sends it.
        // a1 (map of 1) 65 "hello" a2 (map of 2) 67 "version" 01 64 "role" 66 "client"
        let expected: &[u8] = b"\xa1\x65hello\xa2\x67version\x01\x64role\x66client";
        assert_eq!(&bytes[4..], expected);
        assert_eq!(&bytes[..4], &(expected.len() as u32).to_be_bytes());
    }

    #[test]
    fn pong_encodes_its_load_after_the_nonce_and_without_it_as_before() {
        let with_load = Message::Pong(crate::Pong {
            nonce: 7,
            load: Some(crate::Load {
                in_flight: 16,
                instances: 3,
                instances_max: 256,
                cpu: Some(0.5),
            }),
        });
        // a1 65 "pong" a2 65 "nonce" 07 64 "load" a4
        //   69 "in_flight" 10, 69 "instances" 03,
        //   6d "instances_max" 19 01 00, 63 "cpu" f9 38 00 (0.5 as a half float)
        let expected: &[u8] = b"\xa1\x64pong\xa2\x65nonce\x07\x64load\xa4\
            \x69in_flight\x10\x69instances\x03\x6dinstances_max\x19\x01\x00\x63cpu\xf9\x38\x00";
        let bytes = frame(&with_load);
        assert_eq!(&bytes[4..], expected);
        assert_eq!(&bytes[..4], &(expected.len() as u32).to_be_bytes());
        assert_eq!(decode_message(expected).unwrap(), with_load);

        // Without a CPU figure, and without a load at all: what version 2 sends.
        let no_cpu = Message::Pong(crate::Pong {
            nonce: 7,
            load: Some(crate::Load {
                in_flight: 0,
                instances: 0,
                instances_max: 256,
                cpu: None,
            }),
        });
        assert_eq!(
            &frame(&no_cpu)[4..],
            b"\xa1\x64pong\xa2\x65nonce\x07\x64load\xa3\
              \x69in_flight\x00\x69instances\x00\x6dinstances_max\x19\x01\x00"
        );
        let bare = Message::Pong(crate::Pong {
            nonce: 7,
            load: None,
        });
        assert_eq!(&frame(&bare)[4..], b"\xa1\x64pong\xa1\x65nonce\x07");
        assert_eq!(
            decode_message(b"\xa1\x64pong\xa2\x65nonce\x07\x64load\xf6").unwrap(),
            bare,
            "a null load is no load"
        );
    }

    #[test]
    fn a_load_with_an_unknown_field_or_a_missing_one_is_refused() {
        // {"pong": {"nonce": 1, "load": {"in_flight": 1, "instances": 0,
        //  "instances_max": 1, "queue": 2}}}
        let unknown = b"\xa1\x64pong\xa2\x65nonce\x01\x64load\xa4\x69in_flight\x01\
            \x69instances\x00\x6dinstances_max\x01\x65queue\x02";
        let error = decode_message(unknown).unwrap_err().to_string();
        assert!(error.contains("unknown field `queue`"), "{error}");
        // {"pong": {"nonce": 1, "load": {"in_flight": 1}}}
        let missing = b"\xa1\x64pong\xa2\x65nonce\x01\x64load\xa1\x69in_flight\x01";
        let error = decode_message(missing).unwrap_err().to_string();
        assert!(error.contains("missing field `instances`"), "{error}");
        // A CPU figure that is not a float.
        let text = b"\xa1\x64pong\xa2\x65nonce\x01\x64load\xa4\x69in_flight\x01\
            \x69instances\x00\x6dinstances_max\x01\x63cpu\x61x";
        let error = decode_message(text).unwrap_err().to_string();
        assert!(
            error.starts_with("malformed frame: invalid type: string"),
            "{error}"
        );
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2][..]);
        let err = FrameCodec::new(4 << 20).decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::FrameTooLarge {
                len: 0xffff_ffff,
                max: 4194304
            }
        ));
    }

    #[test]
    fn frames_held_counts_complete_frames_up_to_a_cap() {
        let codec = FrameCodec::new(64);
        let mut buf = Vec::new();
        for body in [&b"ab"[..], b"", b"cde"] {
            buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
            buf.extend_from_slice(body);
        }
        assert_eq!(codec.frames_held(&buf, 10), 3);
        assert_eq!(codec.frames_held(&buf, 2), 2);
        // A partial frame after them is not counted, nor is a short prefix.
        buf.extend_from_slice(&[0, 0, 0, 9, 1]);
        assert_eq!(codec.frames_held(&buf, 10), 3);
        assert_eq!(codec.frames_held(&[0, 0], 10), 0);
        // Counting stops at a length over the limit.
        assert_eq!(codec.frames_held(&[0, 0, 0, 65, 0], 10), 0);
    }

    #[test]
    fn partial_frame_waits_for_more_bytes() {
        let mut buf = BytesMut::from(&[0, 0, 0, 10, 1, 2][..]);
        assert!(FrameCodec::new(64).decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 6);
    }

    #[test]
    fn duplicate_and_unknown_keys_are_rejected() {
        // {"ping": {"nonce": 1, "nonce": 2}}
        let dup = b"\xa1\x64ping\xa2\x65nonce\x01\x65nonce\x02";
        let err = decode_message(dup).unwrap_err().to_string();
        assert!(err.contains("duplicate field `nonce`"), "{err}");
        // {"ping": {"nonce": 1, "extra": 2}}
        let unknown = b"\xa1\x64ping\xa2\x65nonce\x01\x65extra\x02";
        let err = decode_message(unknown).unwrap_err().to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
        // {"shout": {}}
        let kind = b"\xa1\x65shout\xa0";
        let err = decode_message(kind).unwrap_err().to_string();
        assert!(err.contains("unknown variant `shout`"), "{err}");
    }

    #[test]
    fn nesting_bomb_is_an_error_not_a_stack_overflow() {
        let mut body = b"\xa1\x64call\xa3\x62id\x01\x68function\x61f\x64args\x81".to_vec();
        body.extend(std::iter::repeat_n(0x81u8, 100_000));
        body.push(0x00);
        let err = decode_message(&body).unwrap_err().to_string();
        assert!(err.contains("nests deeper"), "{err}");
    }

    /// A frame body whose `args` hold 100 000 nested items of `head`.
    fn bomb(head: u8) -> Vec<u8> {
        let mut body = b"\xa1\x64call\xa3\x62id\x01\x68function\x61f\x64args\x81".to_vec();
        body.extend(std::iter::repeat_n(head, 100_000));
        body
    }

    /// Decodes `body` on a thread with a `stack`-byte stack: a stack overflow
    /// would abort the whole test process.
    fn decode_on_small_stack(body: Vec<u8>, stack: usize) -> String {
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || decode_message(&body).unwrap_err().to_string())
            .unwrap()
            .join()
            .unwrap()
    }

    /// The recursion limit (16 + 64 levels) bounds the decoder's stack. An
    /// unoptimised build needs between 256 and 384 KiB for it (measured);
    /// frames are decoded on tokio workers with 2 MiB, and nested-call
    /// arguments (64 levels) on wasmtime fibers with about 1.5 MiB left for
    /// the host. A fifth of a worker's stack is plenty:
    #[test]
    fn nesting_bombs_fail_cleanly_on_a_small_stack() {
        // Arrays, indefinite arrays, maps, indefinite maps and tags; the
        // test profile keeps the decoder unoptimised (its deepest frames).
        for head in [0x81u8, 0x9f, 0xa1, 0xbf, 0xc6] {
            let err = decode_on_small_stack(bomb(head), 384 << 10);
            assert!(
                err.contains("nests deeper")
                    || err.contains("truncated")
                    || err.contains("invalid"),
                "{head:#x}: {err}"
            );
        }
    }

    #[test]
    fn args_deeper_than_the_limit_are_rejected() {
        let mut nested = Value::from(1);
        for _ in 0..ARGS_NESTING {
            nested = Value::Array(vec![nested]);
        }
        let msg = Message::Call(Call {
            id: 1,
            function: "f.g".into(),
            args: vec![nested],
            deadline_ms: None,
            hops: 0,
            visited: vec![],
            metadata: Default::default(),
            principal: None,
        });
        let bytes = frame(&msg);
        let err = decode_message(&bytes[4..]).unwrap_err().to_string();
        assert!(err.contains("deeper than 64"), "{err}");
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut body = frame(&Message::Ping(crate::Ping { nonce: 1 }))[4..].to_vec();
        body.push(0);
        let err = decode_message(&body).unwrap_err().to_string();
        assert!(err.contains("1 trailing bytes"), "{err}");
    }
}
