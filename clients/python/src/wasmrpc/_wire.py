"""Frames and message envelopes of the wasmrpc protocol (version 2).

A frame is a 4-byte big-endian length followed by one CBOR item: a map of
exactly one entry, message kind -> body.
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2

#: The protocol version this client speaks.
PROTOCOL_VERSION = 2
#: The largest frame body either side accepts (4 MiB).
MAX_FRAME = 4 * 1024 * 1024
#: Calls a host accepts in flight per connection when its hello does not say.
DEFAULT_MAX_IN_FLIGHT = 100

_LENGTH = struct.Struct(">I")


class FrameError(Exception):
    """A frame could not be encoded or decoded."""


def encode(kind: str, body: dict[str, Any], max_frame: int = MAX_FRAME) -> bytes:
    """The frame (length prefix included) of message ``kind`` with ``body``.

    Raises:
        FrameError: when a value cannot be encoded as CBOR, or the frame
            exceeds ``max_frame``.
    """
    try:
        payload = cbor2.dumps({kind: body})
    except (cbor2.CBOREncodeError, TypeError, ValueError) as e:
        raise FrameError(f"cannot encode the {kind} as CBOR: {e}") from None
    if len(payload) > max_frame:
        raise FrameError(f"frame of {len(payload)} bytes exceeds the limit of {max_frame} bytes")
    return _LENGTH.pack(len(payload)) + payload


def frame_length(prefix: bytes, max_frame: int = MAX_FRAME) -> int:
    """The body length a 4-byte prefix announces, checked against the limit."""
    n: int = _LENGTH.unpack(prefix)[0]
    if n == 0:
        raise FrameError("empty frame")
    if n > max_frame:
        raise FrameError(f"frame of {n} bytes exceeds the limit of {max_frame} bytes")
    return n


def decode(body: bytes) -> tuple[str, dict[str, Any]]:
    """The (kind, body) of a frame body.

    Raises:
        FrameError: when the body is not one CBOR map of one entry whose key
            is text and whose value is a map.
    """
    try:
        message = cbor2.loads(body)
    except Exception as e:  # cbor2 raises several types for bad input
        raise FrameError(f"invalid CBOR: {e}") from None
    if not isinstance(message, dict) or len(message) != 1:
        raise FrameError("the message is not a map of exactly one entry")
    ((kind, fields),) = message.items()
    if not isinstance(kind, str) or not isinstance(fields, dict):
        raise FrameError("the message kind is not text, or its body is not a map")
    return kind, fields
