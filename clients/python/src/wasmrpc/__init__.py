"""An asyncio client for wasmrpc hosts.

>>> import wasmrpc
>>> async with await wasmrpc.connect("127.0.0.1:7101") as client:
...     assert await client.call("math.add", 2, 3) == 5

One multiplexed connection per host carries any number of concurrent calls.
Failed calls raise a subclass of :class:`CallError` named after the wire code
(:class:`HandlerError`, :class:`DeadlineExceeded`, ...), carrying ``code``,
``message``, ``processed``, ``region`` and ``detail``.
"""

from .client import Client, connect, connect_region
from .errors import (
    CallError,
    Cancelled,
    DeadlineExceeded,
    HandlerError,
    Internal,
    InvalidArgs,
    LoopDetected,
    NotFound,
    PermissionDenied,
    ProtocolError,
    ResourceExhausted,
    Trap,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "Client",
    "connect",
    "connect_region",
    "CallError",
    "NotFound",
    "InvalidArgs",
    "HandlerError",
    "Trap",
    "DeadlineExceeded",
    "Cancelled",
    "Unavailable",
    "ResourceExhausted",
    "LoopDetected",
    "Unauthenticated",
    "PermissionDenied",
    "ProtocolError",
    "Internal",
]
