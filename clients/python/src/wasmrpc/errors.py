"""Errors of wasmrpc calls: one exception class per wire error code.

Every failed call raises a subclass of :class:`CallError`. The class tells the
code; the attributes tell whether the function may have run (``processed``),
which region produced the error and, for handler errors, the function's own
error value.
"""

from __future__ import annotations

from typing import Any

__all__ = [
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
    "error_from_wire",
]

#: The three values of ``processed``.
PROCESSED = ("no", "maybe", "yes")


class CallError(Exception):
    """A call (or a connection) failed.

    Attributes:
        code: the wire error code, e.g. ``"handler_error"``.
        message: a human-readable explanation, not meant to be parsed.
        processed: ``"no"`` (the function certainly did not run), ``"maybe"``
            (it may have run, partly or fully) or ``"yes"`` (it ran to
            completion). Retrying is always safe for ``"no"``, and safe for
            ``"maybe"`` only when the function is idempotent.
        region: the region of the host that produced the error; ``None`` for
            errors the client produced itself (timeouts, lost connections) and
            for connection-level errors.
        detail: for ``handler_error``, the function's error value, decoded as
            any result value is; ``None`` otherwise.
    """

    #: The wire code of this class; ``CallError`` itself is never raised
    #: for a known code.
    code: str = ""

    def __init__(
        self,
        message: str,
        *,
        processed: str,
        region: str | None = None,
        detail: Any = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if processed not in PROCESSED:
            raise ValueError(f"processed must be one of {PROCESSED}, got {processed!r}")
        self.message = message
        self.processed = processed
        self.region = region
        self.detail = detail

    def __str__(self) -> str:
        where = f", region {self.region}" if self.region else ""
        return f"{self.code}: {self.message} (processed: {self.processed}{where})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"processed={self.processed!r}, region={self.region!r}, detail={self.detail!r})"
        )


class NotFound(CallError):
    """No host serves the function."""

    code = "not_found"


class InvalidArgs(CallError):
    """The arguments do not fit the function's parameters (or could not be encoded)."""

    code = "invalid_args"


class HandlerError(CallError):
    """The function ran and returned the ``err`` case of its result: see ``detail``."""

    code = "handler_error"


class Trap(CallError):
    """The guest trapped: a panic, a stack overflow, an out-of-bounds access."""

    code = "trap"


class DeadlineExceeded(CallError):
    """The deadline passed before the call completed."""

    code = "deadline_exceeded"


class Cancelled(CallError):
    """The call was cancelled by its caller (or the client was closed)."""

    code = "cancelled"


class Unavailable(CallError):
    """No host could be reached, the host is draining, or the connection was lost."""

    code = "unavailable"


class ResourceExhausted(CallError):
    """A limit was hit: in-flight calls, memory, frame size, connections."""

    code = "resource_exhausted"


class LoopDetected(CallError):
    """Forwarding would revisit a region or exceed the hop limit."""

    code = "loop_detected"


class Unauthenticated(CallError):
    """The caller's credentials (token, TLS) were refused."""

    code = "unauthenticated"


class PermissionDenied(CallError):
    """The caller's token may not call this function."""

    code = "permission_denied"


class ProtocolError(CallError):
    """A side broke the wire protocol."""

    code = "protocol_error"


class Internal(CallError):
    """A bug or unexpected condition in the host."""

    code = "internal"


_BY_CODE: dict[str, type[CallError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        InvalidArgs,
        HandlerError,
        Trap,
        DeadlineExceeded,
        Cancelled,
        Unavailable,
        ResourceExhausted,
        LoopDetected,
        Unauthenticated,
        PermissionDenied,
        ProtocolError,
        Internal,
    )
}


def error_class(code: str) -> type[CallError]:
    """The exception class of wire code ``code`` (``CallError`` for an unknown one)."""
    return _BY_CODE.get(code, CallError)


def error_from_wire(body: dict[str, Any]) -> CallError:
    """The exception for the body of an ``error`` frame."""
    code = body.get("code")
    message = body.get("message")
    processed = body.get("processed")
    if not isinstance(code, str) or not isinstance(message, str) or processed not in PROCESSED:
        return ProtocolError(f"the host sent a malformed error: {body!r}", processed="maybe")
    cls = error_class(code)
    region = body.get("region")
    return cls(
        message,
        processed=processed,
        region=region if isinstance(region, str) else None,
        detail=body.get("detail"),
        code=code if cls is CallError else None,
    )
