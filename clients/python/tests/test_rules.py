"""The retry rule and host ranking, without sockets; and the nearest host by
measured round-trip time, with a slow link in front of one real host."""

from __future__ import annotations

import asyncio

from conftest import eventually_async, run

import wasmrpc
from wasmrpc.client import _Host, _retryable

CODES = [
    "not_found",
    "invalid_args",
    "handler_error",
    "trap",
    "deadline_exceeded",
    "cancelled",
    "unavailable",
    "resource_exhausted",
    "loop_detected",
    "unauthenticated",
    "permission_denied",
    "protocol_error",
    "internal",
]


def test_only_transient_failures_are_retried_and_only_when_it_is_safe():
    def error(code: str, processed: str) -> wasmrpc.CallError:
        return wasmrpc.CallError("m", processed=processed, code=code)

    for code in CODES:
        transient = code in ("unavailable", "resource_exhausted")
        for idempotent in (False, True):
            assert _retryable(error(code, "no"), idempotent) is transient, code
            assert _retryable(error(code, "maybe"), idempotent) is (transient and idempotent), code
            assert _retryable(error(code, "yes"), idempotent) is False, code


def test_hosts_rank_preferred_region_first_then_by_round_trip_time():
    near_slow = _Host("a:1", preferred=True, index=0)
    near_fast = _Host("b:1", preferred=True, index=1)
    far_fastest = _Host("c:1", preferred=False, index=2)
    unmeasured = _Host("d:1", preferred=True, index=3)
    near_slow.rtt, near_fast.rtt, far_fastest.rtt = 0.050, 0.002, 0.0001
    ranked = sorted([far_fastest, unmeasured, near_slow, near_fast], key=_Host.rank)
    assert [h.addr for h in ranked] == ["b:1", "a:1", "d:1", "c:1"]


async def slow_link(target: str, delay: float) -> tuple[asyncio.Server, str]:
    """A TCP relay to `target` that holds every chunk for `delay` seconds each way."""
    host, port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        host_r, host_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(client_r, host_w), pipe(host_r, client_w))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_new_calls_go_to_the_host_with_the_shortest_round_trip(hosts):
    far = hosts.start(["math"])
    near = hosts.start(["math"])

    def adds(host) -> float:
        return host.metric("wasmrpc_calls_total", function="math.add", code="ok")

    async def main():
        server, relayed = await slow_link(far.addr, 0.1)
        async with server:
            # Listed first, but 200 ms further away.
            async with await wasmrpc.connect([relayed, near.addr], ping_interval=0.1) as client:
                assert await eventually_async(lambda: all(h["rtt"] for h in client.hosts()))
                rtts = {h["addr"]: h["rtt"] for h in client.hosts()}
                assert rtts[relayed] > rtts[near.addr], rtts
                assert [await client.call("math.add", i, i) for i in range(20)] == [
                    2 * i for i in range(20)
                ]
                assert (adds(near), adds(far)) == (20, 0)
                # Without the near host, calls take the far one.
                near.kill()
                # A call sent before the client reads the close would be lost
                # with it (`maybe`): wait until it has noticed.
                assert await eventually_async(
                    lambda: (
                        not next(h for h in client.hosts() if h["addr"] == near.addr)["connected"]
                    )
                )
                assert [await client.call("math.add", i, 1) for i in range(5)] == [
                    i + 1 for i in range(5)
                ]
                assert adds(far) == 5

    run(main())
