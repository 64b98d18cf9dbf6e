"""Failover between hosts: the preferred region first, reconnection, a host
killed under load, a host drained under load.

The `ledger` plugin logs a line for every execution (`recorded ENTRY in
REGION`, `located ENTRY in REGION`), so the hosts' logs show how many times
each call ran. `ledger.locate` is idempotent (its sidecar says so, and the
catalog carries it); `ledger.record` is not.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter

from conftest import eventually_async, region_hosts, run

import wasmrpc

WORK_MS = 20


async def load(client, stop: asyncio.Event, workers: int = 12):
    """Calls `ledger.locate` and `ledger.record` alternately from `workers`
    tasks until `stop`; returns (function, entry, outcome) per call, the
    outcome being the answer or the error."""
    results = []

    async def worker(w: int):
        n = 0
        while not stop.is_set():
            function = "locate" if n % 2 == 0 else "record"
            entry = f"{function[0]}{w}x{n}"
            n += 1
            try:
                answer = await client.call(f"ledger.{function}", entry, WORK_MS, timeout=5)
            except wasmrpc.CallError as error:
                answer = error
            results.append((function, entry, answer))

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return results


def executions(hosts) -> Counter:
    """How many times each (function, entry) ran, by the hosts' logs."""
    counts: Counter = Counter()
    for host in hosts:
        for verb, entry in re.findall(r"(recorded|located) (\S+) in r ", host.log()):
            counts[("record" if verb == "recorded" else "locate", entry)] += 1
    return counts


def current(client, pair):
    """The host of `pair` the client sends new calls to now."""
    (addr,) = [h["addr"] for h in client.hosts() if h["current"]]
    return next(h for h in pair if h.addr == addr)


def test_calls_prefer_their_region_and_fall_back_while_it_is_down(hosts):
    config = hosts.cluster({"near": (1, ["ledger"]), "far": (1, ["ledger"])})
    near_addr = region_hosts(config, "near")[0]
    near = hosts.start(region="near", listen=near_addr, config=config)
    hosts.start(region="far", listen=region_hosts(config, "far")[0], config=config)

    async def main():
        async with await wasmrpc.connect_region(config, "near", ping_interval=0.2) as client:
            assert await eventually_async(lambda: all(h["connected"] for h in client.hosts()))
            for i in range(20):
                assert await client.call("ledger.locate", f"n{i}", 0) == "near"
            near.kill()
            # The lost connection is noticed; every call goes to the fallback.
            for i in range(20):
                assert await client.call("ledger.locate", f"f{i}", 0) == "far"
            # The preferred host comes back: the client reconnects and uses it again.
            hosts.start(region="near", listen=near_addr, config=config)

            async def back():
                return await client.call("ledger.locate", "b", 0) == "near"

            for _ in range(100):
                if await back():
                    break
                await asyncio.sleep(0.05)
            assert await back()

    run(main())


def test_killing_a_host_under_load_fails_no_idempotent_call_and_runs_none_twice(hosts):
    config = hosts.cluster({"r": (2, ["ledger"])})
    pair = [
        hosts.start(region="r", listen=addr, config=config) for addr in region_hosts(config, "r")
    ]

    async def main():
        async with await wasmrpc.connect_region(config, "r") as client:
            assert await eventually_async(lambda: all(h["connected"] for h in client.hosts()))
            stop = asyncio.Event()
            running = asyncio.create_task(load(client, stop))
            await asyncio.sleep(1.0)
            victim = current(client, pair)
            victim.kill()  # SIGKILL: calls in flight on it are lost
            await asyncio.sleep(1.0)
            stop.set()
            return await running

    results = run(main())
    ran = executions(pair)
    lost_records = 0
    for function, entry, answer in results:
        if function == "locate":
            assert answer == "r", f"idempotent {entry} failed: {answer!r}"
            assert ran[(function, entry)] >= 1
            continue
        runs = ran[(function, entry)]
        if answer == "r":
            assert runs == 1, f"{entry} answered but ran {runs} times"
        else:
            assert isinstance(answer, wasmrpc.Unavailable), repr(answer)
            assert answer.processed in ("maybe", "no"), repr(answer)
            assert runs <= (1 if answer.processed == "maybe" else 0), f"{entry} ran {runs} times"
            lost_records += answer.processed == "maybe"
    # The kill did catch calls in flight, and the load went on on the survivor.
    assert lost_records >= 1, results
    assert sum(1 for f, _, a in results if f == "record" and a == "r") > 20


def test_draining_a_host_under_load_fails_no_call(hosts):
    config = hosts.cluster({"r": (2, ["ledger"])})
    pair = [
        hosts.start(region="r", listen=addr, config=config) for addr in region_hosts(config, "r")
    ]

    async def main():
        async with await wasmrpc.connect_region(config, "r") as client:
            assert await eventually_async(lambda: all(h["connected"] for h in client.hosts()))
            stop = asyncio.Event()
            running = asyncio.create_task(load(client, stop))
            await asyncio.sleep(1.0)
            victim = current(client, pair)
            before = victim.log().count("ledger")
            victim.signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            stop.set()
            results = await running
            assert victim.proc.wait(10) == 0
            return results, victim, before

    results, victim, before = run(main())
    failures = [(f, e, a) for f, e, a in results if a != "r"]
    assert failures == []
    ran = executions(pair)
    for function, entry, _ in results:
        assert ran[(function, entry)] == 1, entry
    # The drained host had been taking calls, and the load moved on.
    assert before > 10
    survivor = next(h for h in pair if h is not victim)
    assert survivor.log().count("ledger") > 20


def test_calls_waiting_for_a_slot_on_a_host_that_dies_run_once_on_another(hosts):
    # Two calls in flight per connection: the other four wait in the client.
    config = hosts.cluster({"r": (2, ["ledger"])})
    pair = [
        hosts.start(region="r", listen=addr, config=config, args=["--max-in-flight", "2"])
        for addr in region_hosts(config, "r")
    ]

    def running(host) -> float:
        return host.metric("wasmrpc_instances_in_use", plugin="ledger")

    async def main():
        async with await wasmrpc.connect_region(config, "r") as client:
            assert await eventually_async(lambda: all(h["connected"] for h in client.hosts()))
            calls = [
                asyncio.create_task(client.call("ledger.record", f"q{i}", 1000, timeout=10))
                for i in range(6)
            ]
            assert await eventually_async(lambda: any(running(h) == 2 for h in pair))
            victim = next(h for h in pair if running(h) == 2)
            victim.kill()
            return await asyncio.gather(*calls, return_exceptions=True), victim

    answers, victim = run(main())
    ran = executions(pair)
    lost = [a for a in answers if isinstance(a, wasmrpc.CallError)]
    # The two that were running are lost with the connection: maybe, not retried.
    assert [(type(e), e.processed) for e in lost] == [(wasmrpc.Unavailable, "maybe")] * 2
    # The four never written anywhere ran exactly once, on the survivor.
    assert answers.count("r") == 4
    for i, answer in enumerate(answers):
        assert ran[("record", f"q{i}")] == (1 if answer == "r" else 0), (i, answer)
    assert victim.log().count("recorded q") == 0
