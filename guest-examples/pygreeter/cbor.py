"""Just enough CBOR (RFC 8949) for `visit`: encoding an array of texts and
nulls, the arguments of a nested call, and decoding a text, its reply.

The host speaks CBOR for nested calls (`host.call` takes the arguments as a
CBOR array and returns the result's CBOR). A real plugin would use a CBOR
library; this example keeps to the standard library.
"""

# Major types, the top three bits of an item's first byte.
_TEXT = 3
_ARRAY = 4
_NULL = b"\xf6"


def _head(major: int, length: int) -> bytes:
    """The first bytes of an item: its major type and a length, in the
    shortest form CBOR allows."""
    if length < 24:
        return bytes([major << 5 | length])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if length < 1 << (8 * size):
            return bytes([major << 5 | extra]) + length.to_bytes(size, "big")
    raise ValueError(f"{length} is too long for CBOR")


def encode(items: list[str | None]) -> bytes:
    """`items` as a CBOR array of texts and nulls."""
    out = bytearray(_head(_ARRAY, len(items)))
    for item in items:
        if item is None:
            out += _NULL
        else:
            text = item.encode()
            out += _head(_TEXT, len(text)) + text
    return bytes(out)


def decode_text(data: bytes) -> str:
    """The text `data` encodes; ValueError when it encodes anything else."""
    if not data or data[0] >> 5 != _TEXT:
        raise ValueError(f"expected a CBOR text, got {data.hex()}")
    extra = data[0] & 0x1F
    if extra < 24:
        start, length = 1, extra
    elif extra <= 27:
        start = 1 + (1 << (extra - 24))
        length = int.from_bytes(data[1:start], "big")
    else:
        raise ValueError("expected a CBOR text of definite length")
    if len(data) != start + length:
        raise ValueError(f"expected a CBOR text of {length} bytes, got {len(data) - start}")
    return data[start:].decode()
