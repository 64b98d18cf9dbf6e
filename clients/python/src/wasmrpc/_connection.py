"""One multiplexed connection to one host.

Many calls share the connection: each gets an id from one counter, its frame
is written at once, and a reader task resolves each waiting future by the id
of its answer. Calls beyond the host's ``max_in_flight`` wait for a slot
within their deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import socket
import ssl
from collections.abc import Callable
from typing import Any

from . import _wire
from .errors import (
    CallError,
    Cancelled,
    DeadlineExceeded,
    InvalidArgs,
    ProtocolError,
    Unauthenticated,
    Unavailable,
    error_class,
    error_from_wire,
)

#: How long past its deadline a call waits for the host's own answer (the
#: host reports ``deadline_exceeded`` itself; this covers the trip back).
GRACE = 0.5
#: How long :meth:`Connection.close` waits for the host's answers to the
#: calls still in flight after shutting down the sending side.
CLOSE_GRACE = 1.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or a name) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) as (host, port).

    Raises:
        ValueError: when the address has no port.
    """
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not a `host:port` address: `{addr}`")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _describe_tls_error(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the host's certificate was refused: {error.verify_message}"
    reason = error.reason or str(error)
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return "the host did not answer with TLS: is this a plaintext port?"
    return f"the TLS handshake failed: {reason}"


class Connection:
    """A connection to one host, past its ``hello``; made by :meth:`open`."""

    def __init__(
        self,
        addr: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello: dict[str, Any],
        max_frame: int,
    ) -> None:
        self.addr = addr
        self.region: str | None = hello.get("region")
        self.host_id: str | None = hello.get("host_id")
        limit = hello.get("max_in_flight")
        self.max_in_flight: int = (
            limit if isinstance(limit, int) and limit > 0 else _wire.DEFAULT_MAX_IN_FLIGHT
        )
        #: Set when the host sent ``drain``: it takes no new calls.
        self.draining = False
        self._reader = reader
        self._writer = writer
        self._max_frame = max_frame
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[tuple[str, dict[str, Any]]]] = {}
        self._slots = asyncio.Semaphore(self.max_in_flight)
        #: Why new requests fail: set on drain and when the connection ends.
        self._refusal: CallError | None = None
        self._closing = False
        self.ended = asyncio.Event()
        #: Called (with this connection) when the host drains or the connection ends.
        self.on_change: Callable[[Connection], None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        addr: str,
        *,
        ssl_context: ssl.SSLContext | None,
        server_name: str | None,
        token: str | None,
        timeout: float,
        max_frame: int = _wire.MAX_FRAME,
    ) -> Connection:
        """Connects to ``addr``, exchanges ``hello``, and starts the reader.

        Raises:
            Unavailable: the host cannot be reached or closed the connection
                during the handshake (``processed: no``).
            Unauthenticated: TLS failed, or the host refused the token.
            CallError: another refusal, with the host's own code.
            InvalidArgs: a token would go in plaintext to a non-loopback host.
        """
        host, port = split_addr(addr)
        if token is not None and ssl_context is None and not is_loopback(host):
            raise InvalidArgs(
                f"refusing to send a token in plaintext to `{addr}`, which is not a "
                "loopback address: connect with TLS (the cluster CA)",
                processed="no",
            )

        def unavailable(why: object) -> Unavailable:
            return Unavailable(f"cannot connect to `{addr}`: {why}", processed="no")

        def refused(cls_: type[CallError], why: str) -> CallError:
            return cls_(f"`{addr}` refused the connection: {why}", processed="no")

        async def handshake() -> Connection:
            try:
                if ssl_context is None:
                    reader, writer = await asyncio.open_connection(host, port)
                else:
                    reader, writer = await asyncio.open_connection(
                        host,
                        port,
                        ssl=ssl_context,
                        server_hostname=server_name or host,
                    )
            except ssl.SSLError as e:
                raise refused(Unauthenticated, _describe_tls_error(e)) from None
            except OSError as e:
                raise unavailable(e.strerror or e) from None
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if token is not None and ssl_context is None:
                peer = writer.get_extra_info("peername")
                if not (peer and is_loopback(peer[0])):
                    writer.close()
                    raise InvalidArgs(
                        f"refusing to send a token in plaintext to `{addr}`, which is not a "
                        "loopback address: connect with TLS (the cluster CA)",
                        processed="no",
                    )
            try:
                hello: dict[str, Any] = {"version": _wire.PROTOCOL_VERSION, "role": "client"}
                if token is not None:
                    hello["token"] = token
                writer.write(_wire.encode("hello", hello, max_frame))
                prefix = await reader.readexactly(4)
                body = await reader.readexactly(_wire.frame_length(prefix, max_frame))
                kind, fields = _wire.decode(body)
            except ssl.SSLError as e:
                writer.close()
                raise refused(Unauthenticated, _describe_tls_error(e)) from None
            except asyncio.IncompleteReadError:
                writer.close()
                raise unavailable("connection closed during handshake") from None
            except (OSError, _wire.FrameError) as e:
                writer.close()
                raise unavailable(e) from None
            if kind == "hello" and fields.get("role") == "host":
                return cls(addr, reader, writer, fields, max_frame)
            writer.close()
            if kind == "error":
                error = error_from_wire(fields)
                raise refused(error_class(error.code), error.message)
            raise unavailable(f"expected `hello`, got `{kind}`")

        try:
            return await asyncio.wait_for(handshake(), timeout)
        except TimeoutError:
            raise unavailable(f"no answer within {timeout}s") from None

    @property
    def usable(self) -> bool:
        """Whether the connection takes new calls (open, not draining)."""
        return self._refusal is None

    def _take_id(self) -> int:
        id_ = self._next_id
        self._next_id += 1
        return id_

    def _send(self, kind: str, body: dict[str, Any]) -> None:
        self._writer.write(_wire.encode(kind, body, self._max_frame))

    async def call(
        self,
        function: str,
        args: list[Any],
        deadline: float,
        metadata: dict[str, str] | None,
    ) -> Any:
        """Calls ``function`` and waits for its answer until ``deadline``
        (event-loop time) plus a grace period.

        Cancelling the awaiting task sends ``cancel`` to the host.

        Raises:
            CallError: the host's error; ``Unavailable`` when the connection
                is draining or lost; ``DeadlineExceeded`` when no answer came
                in time or no call slot freed in time.
        """
        loop = asyncio.get_running_loop()
        if self._refusal is not None:
            raise self.refusal("no")
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), deadline - loop.time())
            except TimeoutError:
                raise DeadlineExceeded(
                    "deadline passed while waiting for a free call slot "
                    "(the host's in-flight limit)",
                    processed="no",
                ) from None
        else:
            await self._slots.acquire()
        try:
            if self._refusal is not None:
                raise self.refusal("no")
            id_ = self._take_id()
            remaining = max(0.0, deadline - loop.time())
            body: dict[str, Any] = {
                "id": id_,
                "function": function,
                "args": args,
                # Rounded up, so that a deadline never shrinks by rounding.
                "deadline_ms": math.ceil(remaining * 1000),
            }
            if metadata:
                body["metadata"] = metadata
            try:
                frame = _wire.encode("call", body, self._max_frame)
            except _wire.FrameError as e:
                raise InvalidArgs(f"cannot send the request: {e}", processed="no") from None
            kind, fields = await self._request(id_, frame, remaining + GRACE, cancellable=True)
            if kind == "reply":
                return fields.get("value")
            if kind == "error":
                raise error_from_wire(fields)
            raise ProtocolError(
                f"host `{self.addr}` answered call {id_} with `{kind}`", processed="maybe"
            )
        finally:
            self._slots.release()

    async def list(self, timeout: float) -> list[dict[str, Any]]:
        """The host's catalog: one dict per function (name, signature, regions, idempotent)."""
        if self.ended.is_set():
            raise self.refusal("no")
        id_ = self._take_id()
        kind, fields = await self._request(
            id_, _wire.encode("list", {"id": id_}, self._max_frame), timeout, cancellable=False
        )
        if kind == "error":
            raise error_from_wire(fields)
        functions = fields.get("functions")
        if kind != "catalog" or not isinstance(functions, list):
            raise ProtocolError(f"host `{self.addr}` answered `list` with `{kind}`", processed="no")
        return functions

    async def ping(self, timeout: float) -> float:
        """One round trip to the host, in seconds."""
        if self.ended.is_set():
            raise self.refusal("no")
        loop = asyncio.get_running_loop()
        nonce = self._take_id()
        start = loop.time()
        await self._request(
            nonce,
            _wire.encode("ping", {"nonce": nonce}, self._max_frame),
            timeout,
            cancellable=False,
        )
        return loop.time() - start

    async def _request(
        self, id_: int, frame: bytes, wait: float, *, cancellable: bool
    ) -> tuple[str, dict[str, Any]]:
        """Writes ``frame`` and waits up to ``wait`` seconds for the answer with ``id_``."""
        if self.ended.is_set():
            raise self.refusal("no")
        future: asyncio.Future[tuple[str, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[id_] = future
        try:
            self._writer.write(frame)
            # From here on the host may have the request.
            try:
                async with asyncio.timeout(wait):
                    try:
                        await self._writer.drain()
                    except (OSError, RuntimeError):
                        pass  # the reader reports the lost connection
                    return await future
            except TimeoutError:
                if cancellable:
                    self._cancel(id_)
                raise DeadlineExceeded(
                    f"no answer from `{self.addr}` within {wait - GRACE:.3f}s",
                    processed="maybe",
                ) from None
            except asyncio.CancelledError:
                # Awaiting `future` cancelled it too: whether the answer
                # came is whether the reader took the waiter out.
                if cancellable and id_ in self._waiting:
                    self._cancel(id_)
                raise
        finally:
            self._waiting.pop(id_, None)

    def _cancel(self, id_: int) -> None:
        """Tells the host to stop call ``id_``."""
        if not self.ended.is_set():
            try:
                self._send("cancel", {"id": id_})
            except (OSError, RuntimeError):
                pass

    def refusal(self, processed: str) -> CallError:
        """Why the connection takes no new calls (draining, or ended), as an
        error with ``processed``."""
        refusal = self._refusal or Unavailable(
            f"connection to `{self.addr}` lost", processed=processed
        )
        return type(refusal)(refusal.message, processed=processed, code=refusal.code)

    async def _read_loop(self) -> None:
        reason: CallError
        try:
            while True:
                prefix = await self._reader.readexactly(4)
                body = await self._reader.readexactly(_wire.frame_length(prefix, self._max_frame))
                kind, fields = _wire.decode(body)
                if kind in ("reply", "catalog"):
                    self._resolve(fields.get("id"), kind, fields)
                elif kind == "pong":
                    self._resolve(fields.get("nonce"), kind, fields)
                elif kind == "error":
                    if fields.get("id") is None:
                        error = error_from_wire(fields)
                        reason = Unavailable(
                            f"host `{self.addr}` closed the connection: "
                            f"{error.code}: {error.message}",
                            processed="maybe",
                        )
                        break
                    self._resolve(fields.get("id"), kind, fields)
                elif kind == "drain":
                    self.draining = True
                    self._refusal = Unavailable(
                        f"host `{self.addr}` is draining: {fields.get('message', '')}",
                        processed="no",
                    )
                    self._notify()
                elif kind == "catalog_update":
                    continue
                else:
                    reason = Unavailable(
                        f"host `{self.addr}` sent an unexpected `{kind}`", processed="maybe"
                    )
                    break
        except asyncio.IncompleteReadError:
            reason = Unavailable(
                f"connection to `{self.addr}` closed by the host", processed="maybe"
            )
        except _wire.FrameError as e:
            reason = Unavailable(f"host `{self.addr}` sent a bad frame: {e}", processed="maybe")
        except (OSError, ssl.SSLError) as e:
            reason = Unavailable(f"connection to `{self.addr}` failed: {e}", processed="maybe")
        except asyncio.CancelledError:
            reason = Unavailable(f"connection to `{self.addr}` closed", processed="maybe")
        self._end(reason)

    def _resolve(self, id_: Any, kind: str, fields: dict[str, Any]) -> None:
        future = self._waiting.pop(id_, None) if isinstance(id_, int) else None
        if future is not None and not future.done():
            future.set_result((kind, fields))

    def _end(self, reason: CallError) -> None:
        """Fails every waiting request with ``reason`` and marks the connection ended."""
        if self.ended.is_set():
            return
        if self._closing:
            reason = Cancelled(
                f"the client closed its connection to `{self.addr}`", processed="maybe"
            )
        if self._refusal is None or not self.draining:
            self._refusal = reason
        else:
            # After a drain, new calls still certainly did not run.
            self._refusal = Unavailable(reason.message, processed="no")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(
                    type(reason)(reason.message, processed="maybe", code=reason.code)
                )
        self._waiting.clear()
        self.ended.set()
        self._writer.close()
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def abort(self, why: str) -> None:
        """Drops the connection at once: its waiting calls fail with
        ``Unavailable`` (``processed: maybe``) saying ``why``."""
        if self.ended.is_set():
            return
        self._task.cancel()
        transport = self._writer.transport
        transport.abort()
        self._end(Unavailable(f"connection to `{self.addr}` dropped: {why}", processed="maybe"))

    async def close(self) -> None:
        """Closes the connection.

        On plaintext, the sending side is shut down first and the host's
        answers to calls still in flight are awaited briefly: the host cancels
        them and answers each with ``cancelled``. Over TLS (which cannot
        half-close) the calls in flight fail with a local ``Cancelled``.
        """
        if self.ended.is_set():
            return
        self._closing = True
        if self._waiting and self._writer.can_write_eof():
            try:
                self._writer.write_eof()
                await asyncio.wait_for(asyncio.shield(self.ended.wait()), CLOSE_GRACE)
            except (TimeoutError, OSError):
                pass
        if not self.ended.is_set():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_GRACE)
        except (TimeoutError, OSError, ssl.SSLError):
            pass
