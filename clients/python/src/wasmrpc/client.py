"""The client: calls over one multiplexed connection per host, with failover.

A :class:`Client` keeps a connection to each host it was given, measures each
one's round-trip time with ``ping``, and sends every new call to the nearest
healthy host, hosts of the preferred region first. It reconnects lost hosts
with jittered exponential backoff, sends nothing new to a host that drains,
and retries a failed call on another host only when that cannot run the
function twice against the caller's wishes:

- a call that certainly did not run (``processed == "no"``: connection
  refused, host draining, connection lost before the call was written) is
  retried at once on another host, within its deadline;
- a call lost with its connection (``processed == "maybe"``) is retried,
  after a short jittered backoff, only when the function is idempotent (the
  call says so, :func:`connect` was told so, or the host's catalog marks it);
  otherwise it raises :class:`~wasmrpc.Unavailable` with ``processed ==
  "maybe"``.

Every other error (a handler error, a trap, bad arguments, the deadline) is
the call's answer and is raised as it is.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import random
import ssl
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._connection import Connection, split_addr
from .errors import CallError, InvalidArgs, Unavailable

__all__ = ["Client", "connect", "connect_region"]

#: Attempts per call, the first included.
MAX_ATTEMPTS = 4
#: Backoff before retrying a call that may have run: 25 ms doubling, at most
#: 250 ms, +-20% jitter.
RETRY_BASE = 0.025
RETRY_MAX = 0.25
#: Backoff between reconnection attempts to a host: 50 ms doubling, at most
#: 5 s, +-20% jitter.
RECONNECT_BASE = 0.05
RECONNECT_MAX = 5.0
#: How often the client looks at its hosts (reconnects that are due).
TICK = 0.05


def _jitter(seconds: float) -> float:
    return seconds * random.uniform(0.8, 1.2)


def _retryable(error: CallError, idempotent: bool) -> bool:
    """The retry rule: only a host unavailable or out of capacity is worth
    another attempt, always when the call did not run, when it may have run
    only for an idempotent function."""
    if error.code not in ("unavailable", "resource_exhausted"):
        return False
    if error.processed == "no":
        return True
    return error.processed == "maybe" and idempotent


class _Host:
    """What the client knows of one host."""

    def __init__(self, addr: str, preferred: bool, index: int) -> None:
        self.addr = addr
        self.preferred = preferred
        self.index = index
        self.conn: Connection | None = None
        #: Smoothed round-trip time, seconds.
        self.rtt: float | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.next_ping = 0.0
        self.connecting: asyncio.Task[None] | None = None
        self.pinging: asyncio.Task[None] | None = None
        self.last_error: CallError | None = None

    @property
    def usable(self) -> bool:
        return self.conn is not None and self.conn.usable

    def rank(self) -> tuple[bool, float, int]:
        return (not self.preferred, self.rtt if self.rtt is not None else float("inf"), self.index)


class Client:
    """A wasmrpc client over one or more hosts. Made by :func:`connect` or
    :func:`connect_region`; use it as an async context manager or call
    :meth:`close`.

    Any number of tasks may call through one client at once.
    """

    def __init__(
        self,
        hosts: Sequence[tuple[str, bool]],
        *,
        ssl_context: ssl.SSLContext | None,
        server_name: str | None,
        token: str | None,
        timeout: float,
        connect_timeout: float,
        idempotent: Iterable[str],
        ping_interval: float,
    ) -> None:
        if not hosts:
            raise ValueError("no host to connect to")
        self._hosts = [_Host(addr, preferred, i) for i, (addr, preferred) in enumerate(hosts)]
        self._ssl = ssl_context
        self._server_name = server_name
        self._token = token
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._idempotent = frozenset(idempotent)
        self._catalog_idempotent: frozenset[str] = frozenset()
        self._ping_interval = ping_interval
        self._changed = asyncio.Event()
        self._closed = False
        self._monitor: asyncio.Task[None] | None = None
        #: The host calls go to while it takes them (see :meth:`_rerank`).
        self._current: _Host | None = None

    # ---- connecting and watching hosts ----

    async def _start(self) -> None:
        """Connects to every host at once; returns when one is connected.

        Raises:
            CallError: when no host could be connected (the error of the
                most preferred host, or ``Unavailable`` naming them all).
        """
        for host in self._hosts:
            self._connect(host)
        while not any(h.usable for h in self._hosts):
            pending = [h.connecting for h in self._hosts if h.connecting is not None]
            if not pending:
                raise self._none_reachable()
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        first = min((h for h in self._hosts if h.usable), key=_Host.rank)
        assert first.conn is not None
        await self._load_catalog(first.conn)
        self._monitor = asyncio.get_running_loop().create_task(self._watch())

    def _none_reachable(self) -> CallError:
        errors = [h.last_error for h in self._hosts if h.last_error is not None]
        if len(self._hosts) == 1 and errors:
            return errors[0]
        if (
            errors
            and all(type(e) is type(errors[0]) for e in errors)
            and not isinstance(errors[0], Unavailable)
        ):
            return type(errors[0])("; ".join(e.message for e in errors), processed="no")
        why = "; ".join(e.message for e in errors) or "no host given"
        return Unavailable(f"no host could be reached: {why}", processed="no")

    def _pulse(self) -> None:
        """Wakes whoever waits for a host's state to change."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _connect(self, host: _Host) -> None:
        if host.connecting is None and not self._closed:
            host.connecting = asyncio.get_running_loop().create_task(self._dial(host))

    async def _dial(self, host: _Host) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            conn = await Connection.open(
                host.addr,
                ssl_context=self._ssl,
                server_name=self._server_name,
                token=self._token,
                timeout=self._connect_timeout,
            )
        except CallError as error:
            host.last_error = error
            host.failures += 1
            delay = min(RECONNECT_MAX, RECONNECT_BASE * 2 ** (host.failures - 1))
            host.retry_at = loop.time() + _jitter(delay)
        else:
            if self._closed:
                await conn.close()
                return
            host.conn = conn
            host.failures = 0
            host.last_error = None
            host.rtt = loop.time() - start
            host.next_ping = loop.time() + self._ping_interval
            conn.on_change = lambda c, host=host: self._on_change(host, c)
            if conn.ended.is_set():
                self._on_change(host, conn)
            if self._monitor is not None:
                loop.create_task(self._load_catalog(conn))
        finally:
            host.connecting = None
            self._pulse()

    def _on_change(self, host: _Host, conn: Connection) -> None:
        if conn.ended.is_set() and host.conn is conn:
            host.conn = None
            host.last_error = conn.refusal("no")
            host.retry_at = asyncio.get_running_loop().time() + _jitter(RECONNECT_BASE)
        self._pulse()

    async def _load_catalog(self, conn: Connection) -> None:
        """Learns which functions the host's catalog marks idempotent."""
        try:
            functions = await conn.list(self._connect_timeout)
        except CallError:
            return
        self._catalog_idempotent = frozenset(
            f["name"] for f in functions if isinstance(f, dict) and f.get("idempotent") is True
        )

    async def _watch(self) -> None:
        """Reconnects hosts when their backoff has passed, and pings the others."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            now = loop.time()
            for host in self._hosts:
                if host.conn is None:
                    if now >= host.retry_at:
                        self._connect(host)
                elif host.usable and host.pinging is None and now >= host.next_ping:
                    host.next_ping = now + self._ping_interval
                    host.pinging = loop.create_task(self._ping(host, host.conn))
            await asyncio.sleep(TICK)

    async def _ping(self, host: _Host, conn: Connection) -> None:
        """Measures the host's round-trip time; a host silent for three ping
        intervals is dropped (its calls fail as lost, and it is redialled)."""
        try:
            sample = await conn.ping(max(1.0, 3 * self._ping_interval))
        except CallError as error:
            if error.code == "deadline_exceeded":
                conn.abort("no answer to `ping`")
            return
        finally:
            host.pinging = None
        host.rtt = sample if host.rtt is None else 0.8 * host.rtt + 0.2 * sample
        self._rerank()

    def _rerank(self) -> None:
        """Moves calls off the current host only for a better one: of the
        preferred region when it is not, or nearer by more than a fifth and
        1 ms, so that noise between equally near hosts does not move calls
        back and forth."""
        usable = [h for h in self._hosts if h.usable]
        if not usable:
            return
        best = min(usable, key=_Host.rank)
        current = self._current
        if current is None or not current.usable:
            self._current = best
            return
        if best is current:
            return
        if best.preferred and not current.preferred:
            self._current = best
        elif best.preferred == current.preferred and best.rtt is not None:
            ours = current.rtt
            if ours is None or best.rtt + max(ours / 5, 0.001) < ours:
                self._current = best

    def _is_idempotent(self, function: str) -> bool:
        """Declared safe to run twice: by name or ``prefix.*`` in the
        client's list, or by a host's catalog."""
        if function in self._idempotent or function in self._catalog_idempotent:
            return True
        return any(
            pattern.endswith("*") and function.startswith(pattern[:-1])
            for pattern in self._idempotent
        )

    async def _pick(self, deadline: float, avoid: set[str]) -> tuple[_Host, Connection]:
        """The host a new attempt goes to: a usable one not in ``avoid`` if
        there is one, the nearest of the preferred region first.

        Raises:
            Unavailable: no host takes calls now (``processed: no``).
        """
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise Unavailable("the client is closed", processed="no")
            current = self._current
            if current is not None and current.usable and current.addr not in avoid:
                assert current.conn is not None
                return current, current.conn
            usable = [h for h in self._hosts if h.usable]
            fresh = [h for h in usable if h.addr not in avoid] or usable
            if fresh:
                host = min(fresh, key=_Host.rank)
                if not avoid:
                    self._current = host
                assert host.conn is not None
                return host, host.conn
            now = loop.time()
            for host in self._hosts:
                if host.conn is None and now >= host.retry_at:
                    self._connect(host)
            # A host being dialled may come up; one draining takes nothing
            # new; anything else has failed for now.
            if not any(h.connecting is not None for h in self._hosts):
                draining = [h.conn for h in self._hosts if h.conn is not None and h.conn.draining]
                if draining:
                    raise draining[0].refusal("no")
                raise self._none_reachable()
            left = deadline - now
            if left <= 0:
                raise Unavailable("no host took the call before its deadline", processed="no")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), min(left, TICK))
            except TimeoutError:
                pass

    # ---- the public API ----

    async def call(
        self,
        function: str,
        *args: Any,
        timeout: float | None = None,
        idempotent: bool | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Any:
        """Calls ``function`` with ``args`` and returns its result.

        Arguments and results map to WIT types as PROTOCOL.md §8 says:
        ``bytes`` for ``list<u8>``, dicts with kebab-case keys for records,
        ``{"case": payload}`` (or a bare string for a case without payload)
        for variants, strings for enums, ``None`` for an absent option,
        ``{"ok": v}``/``{"err": e}`` for nested results, lists of names for
        flags, lists for tuples and lists.

        Args:
            function: ``plugin.function`` or ``plugin.interface.function``.
            timeout: the call's deadline in seconds, sent to the host as
                ``deadline_ms``; the client's default when ``None``.
            idempotent: whether the function is safe to run twice, for
                retries after a lost connection; when ``None``, what
                :func:`connect` was told or the catalog says.
            metadata: string pairs passed to the host (and on to forwarded
                and nested calls), e.g. a ``traceparent``.

        Cancelling the task that awaits the call cancels it on the host.

        Raises:
            CallError: a subclass per error code, with ``processed``,
                ``region`` and ``detail``.
        """
        if metadata is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise InvalidArgs("metadata must map strings to strings", processed="no")
        loop = asyncio.get_running_loop()
        timeout = self._timeout if timeout is None else timeout
        deadline = loop.time() + max(0.0, timeout)
        if idempotent is None:
            idempotent = self._is_idempotent(function)
        arguments = list(args)
        avoid: set[str] = set()
        backoffs = 0
        attempt = 0
        last: CallError | None = None
        while True:
            try:
                host, conn = await self._pick(deadline, avoid)
            except CallError:
                # A retry that finds no host: the attempt before may have run.
                if last is not None and last.processed != "no":
                    raise last from None
                raise
            # A call that may have run, or one going back to a host that
            # failed it, waits a little first; one that certainly did not
            # run goes to another host at once.
            if last is not None and (last.processed != "no" or host.addr in avoid):
                backoff = _jitter(min(RETRY_MAX, RETRY_BASE * 2**backoffs))
                backoffs += 1
                if backoff >= deadline - loop.time():
                    raise last
                await asyncio.sleep(backoff)
            attempt += 1
            try:
                return await conn.call(function, arguments, deadline, metadata)
            except CallError as error:
                if (
                    attempt >= min(MAX_ATTEMPTS, len(self._hosts))
                    or not _retryable(error, idempotent)
                    or loop.time() >= deadline
                ):
                    raise
                last = error
                avoid.add(host.addr)

    async def list(self) -> list[dict[str, Any]]:
        """The catalog of a host: one dict per callable function, with
        ``name``, ``signature`` (WIT), ``regions`` and ``idempotent``.

        Raises:
            CallError: when no host answers.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        avoid: set[str] = set()
        while True:
            host, conn = await self._pick(deadline, avoid)
            try:
                functions = await conn.list(max(0.0, deadline - loop.time()))
            except CallError as error:
                if error.code != "unavailable" or len(avoid) >= len(self._hosts):
                    raise
                avoid.add(host.addr)
                continue
            return [
                {
                    "name": f.get("name"),
                    "signature": f.get("signature"),
                    "regions": list(f.get("regions", [])),
                    "idempotent": f.get("idempotent") is True,
                }
                for f in functions
                if isinstance(f, dict)
            ]

    def hosts(self) -> builtins.list[dict[str, Any]]:
        """What the client knows of each host: ``addr``, ``preferred``,
        ``connected``, ``draining``, ``region`` (from its hello), ``rtt``
        (smoothed round-trip time in seconds, or ``None``) and ``current``
        (new calls go to it now)."""
        return [
            {
                "addr": h.addr,
                "preferred": h.preferred,
                "connected": h.conn is not None and not h.conn.ended.is_set(),
                "draining": h.conn is not None and h.conn.draining,
                "region": h.conn.region if h.conn is not None else None,
                "rtt": h.rtt,
                "current": h is self._current and h.usable,
            }
            for h in self._hosts
        ]

    async def close(self) -> None:
        """Closes every connection. Calls still in flight fail with
        :class:`~wasmrpc.Cancelled` (``processed == "maybe"``): the host
        cancels them. Calls made afterwards fail with ``Unavailable``."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in [self._monitor] if t is not None]
        for host in self._hosts:
            tasks.extend(t for t in (host.connecting, host.pinging) if t is not None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(
            *(h.conn.close() for h in self._hosts if h.conn is not None), return_exceptions=True
        )
        self._pulse()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _ssl_context(ca: str | os.PathLike[str] | None) -> ssl.SSLContext | None:
    if ca is None:
        return None
    context = ssl.create_default_context(cafile=os.fspath(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


async def connect(
    addrs: str | Sequence[str],
    *,
    ca: str | os.PathLike[str] | None = None,
    token: str | None = None,
    server_name: str | None = None,
    timeout: float = 5.0,
    idempotent: Iterable[str] = (),
    connect_timeout: float = 5.0,
    ping_interval: float = 1.0,
) -> Client:
    """Connects to a host (``"127.0.0.1:7101"``) or several (a list of
    ``"host:port"``), and returns a :class:`Client` once one of them is
    connected; the others connect in the background.

    Args:
        addrs: the hosts, all equally preferred.
        ca: the cluster CA certificate (PEM file): connect with TLS 1.3,
            checking each host's certificate against it and the address
            dialled (or ``server_name``). Without it, plaintext, which hosts
            accept on loopback only.
        token: the bearer token sent in ``hello`` to hosts with an access
            file. Never sent in plaintext to a non-loopback address.
        server_name: the name to check hosts' certificates against instead
            of the address dialled.
        timeout: the default deadline of calls, in seconds.
        idempotent: functions safe to run more than once, by name or
            ``prefix.*``: calls to them lost with a connection are retried
            on another host.
        connect_timeout: time allowed for TCP connect, TLS and ``hello``.
        ping_interval: how often each host is pinged for its round-trip time.

    Raises:
        CallError: when no host could be connected: ``Unavailable`` when
            unreachable, ``Unauthenticated`` when TLS or the token was
            refused, ``InvalidArgs`` when a token would go in plaintext to a
            non-loopback address.
        ValueError: for an address without a port.
    """
    addrs = [addrs] if isinstance(addrs, str) else list(addrs)
    return await _open(
        [(a, True) for a in addrs],
        ca=ca,
        token=token,
        server_name=server_name,
        timeout=timeout,
        idempotent=idempotent,
        connect_timeout=connect_timeout,
        ping_interval=ping_interval,
    )


async def _open(
    hosts: Sequence[tuple[str, bool]],
    *,
    ca: str | os.PathLike[str] | None = None,
    token: str | None = None,
    server_name: str | None = None,
    timeout: float = 5.0,
    idempotent: Iterable[str] = (),
    connect_timeout: float = 5.0,
    ping_interval: float = 1.0,
) -> Client:
    """A client over ``hosts`` (address, preferred), connected to one of them."""
    for addr, _ in hosts:
        split_addr(addr)
    client = Client(
        hosts,
        ssl_context=_ssl_context(ca),
        server_name=server_name,
        token=token,
        timeout=timeout,
        connect_timeout=connect_timeout,
        idempotent=idempotent,
        ping_interval=ping_interval,
    )
    try:
        await client._start()
    except BaseException:
        await client.close()
        raise
    return client


async def connect_region(
    config: str | os.PathLike[str],
    region: str,
    *,
    ca: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Client:
    """Connects to the hosts of a ``regions.toml``: those of ``region`` are
    preferred, the other regions' hosts are the fallback.

    When the file has a ``[tls]`` table and ``ca`` is not given, its ``ca``
    (relative to the file) is trusted. Other options are :func:`connect`'s.

    Raises:
        ValueError: when the file does not list ``region``.
        CallError: as :func:`connect`.
    """
    path = Path(config)
    with path.open("rb") as f:
        topology = tomllib.load(f)
    regions = topology.get("region", [])
    names = [r.get("name") for r in regions]
    if region not in names:
        raise ValueError(
            f"region `{region}` is not in `{path}`; it has {', '.join(map(str, names)) or 'none'}"
        )
    preferred = [str(h) for r in regions if r.get("name") == region for h in r.get("hosts", [])]
    others = [str(h) for r in regions if r.get("name") != region for h in r.get("hosts", [])]
    if ca is None and isinstance(topology.get("tls"), dict) and "ca" in topology["tls"]:
        ca = path.parent / topology["tls"]["ca"]
    hosts = [(a, True) for a in preferred] + [(a, False) for a in others if a not in preferred]
    return await _open(hosts, ca=ca, **options)
