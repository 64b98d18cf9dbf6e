"""Many calls over one connection, the host's in-flight limit, and
cancellation of a call by cancelling its asyncio task."""

from __future__ import annotations

import asyncio

import pytest
from conftest import eventually_async, run

import wasmrpc


def test_hundreds_of_calls_in_flight_share_one_connection(hosts):
    host = hosts.start(["math", "misbehave"])

    async def main():
        async with await wasmrpc.connect(host.addr) as client:
            # Answers come in completion order: a slow call does not hold up
            # the quick ones sent after it.
            slow = asyncio.create_task(client.call("misbehave.busy", 20_000, timeout=30))
            sums = await asyncio.gather(*(client.call("math.add", i, 1000 * i) for i in range(300)))
            assert sums == [1001 * i for i in range(300)]
            assert not slow.done()
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow

        total = host.metric("wasmrpc_connections_total", role="client")
        assert total == 1, host.metric_lines("connections")
        assert host.metric("wasmrpc_calls_total", function="math.add", code="ok") == 300

    run(main())


def test_calls_beyond_the_hosts_in_flight_limit_wait_for_a_slot(hosts):
    host = hosts.start(["misbehave"], args=["--max-in-flight", "4"])

    async def main():
        async with await wasmrpc.connect(host.addr) as client:
            # Twelve calls of 100 ms with 4 slots: all answered, in three waves.
            start = asyncio.get_running_loop().time()
            answers = await asyncio.gather(*(client.call("misbehave.busy", 100) for _ in range(12)))
            elapsed = asyncio.get_running_loop().time() - start
            assert answers == [100] * 12
            assert elapsed >= 0.3, elapsed
            # A call that cannot get a slot within its deadline never ran.
            busy = [asyncio.create_task(client.call("misbehave.busy", 1000)) for _ in range(4)]
            await asyncio.sleep(0.05)
            with pytest.raises(wasmrpc.DeadlineExceeded) as caught:
                await client.call("misbehave.busy", 1, timeout=0.2)
            assert (caught.value.processed, caught.value.region) == ("no", None)
            assert await asyncio.gather(*busy) == [1000] * 4
        assert host.metric("wasmrpc_calls_total", code="resource_exhausted") == 0
        assert host.metric("wasmrpc_connections_total", role="client") == 1

    run(main())


def test_cancelling_the_awaiting_task_cancels_the_call_on_the_host(hosts):
    host = hosts.start(["math", "misbehave"])

    def cancelled_on_host() -> float:
        return host.metric(
            "wasmrpc_calls_total", function="misbehave.spin", code="cancelled", processed="maybe"
        )

    async def main():
        async with await wasmrpc.connect(host.addr) as client:
            spin = asyncio.create_task(client.call("misbehave.spin", timeout=20))
            assert await eventually_async(
                lambda: host.metric("wasmrpc_instances_in_use", plugin="misbehave") == 1
            ), host.metric_lines("misbehave")
            spin.cancel()
            with pytest.raises(asyncio.CancelledError):
                await spin
            # The host got the `cancel`: it stopped the guest long before the
            # call's deadline, and counted the call as cancelled.
            assert await eventually_async(lambda: cancelled_on_host() == 1, timeout=3), (
                host.metric_lines("misbehave")
            )
            assert host.metric("wasmrpc_instances_in_use", plugin="misbehave") == 0
            # ... on the same connection, which keeps serving.
            assert await client.call("math.add", 2, 3) == 5
            assert host.metric("wasmrpc_connections_total", role="client") == 1
            assert host.metric("wasmrpc_connections_open", role="client") == 1

    run(main())
