"""Load generator of the bench's Python group.

Drives `math.add` through the wasmrpc Python client and the bench's gRPC
`Add` through grpcio (`grpc.aio`), each over one connection, at 1 call in
flight and at `--in-flight` calls in flight (that many asyncio tasks sharing
the one client or channel), and prints the figures as one JSON object on
standard output. Progress goes to standard error.

Each load starts with a warm-up of every system, then `--rounds` rounds in
which the systems take turns, each measured for `--seconds / --rounds`
seconds a round: a machine whose speed drifts during the run treats both
alike. Every answer is checked (a + b), and `2 + 3 = 5` once before
anything is measured. A system that fails is reported with its error and
left out of the remaining rounds; the other one is still measured.

CPU time comes from the kernel's per-thread accounting
(`/proc/<pid>/task/*/schedstat`), of this process (the caller: the event
loop, the client library and, for grpcio, its C core's threads) and of the
server process whose pid is given.

Run by `cargo run --release --manifest-path bench/Cargo.toml -- all --only
python`, which starts the servers, prepares the virtual environment and the
gRPC stubs, and passes their addresses here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

# A call of one system for a lane (0..in_flight): resolves once the answer
# was checked, raises otherwise.
Call = Callable[[int], Awaitable[None]]


def args_of(lane: int) -> tuple[int, int]:
    """The (a, b) a lane adds, as the Rust side's loads do."""
    return 1_000_000 + lane, 2


def cpu_ns(pid: int) -> int | None:
    """Nanoseconds on a CPU of every live thread of `pid`, or None."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            # A thread that exited between listing and reading.
            continue
    return total


@dataclass
class Figures:
    """One system under one load, summed over the rounds."""

    latencies_ns: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    caller_cpu_ns: int = 0
    server_cpu_ns: int | None = 0

    def summary(self) -> dict[str, float | int | None]:
        calls = len(self.latencies_ns)
        ordered = sorted(self.latencies_ns)

        def quantile_us(q: float) -> float:
            if not ordered:
                return 0.0
            index = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
            return ordered[index] / 1_000

        def per_call_us(ns: int | None) -> float | None:
            return None if ns is None or calls == 0 else ns / 1_000 / calls

        return {
            "calls": calls,
            "elapsed_s": self.elapsed_s,
            "p50_us": quantile_us(0.5),
            "p99_us": quantile_us(0.99),
            "p999_us": quantile_us(0.999),
            "calls_per_sec": calls / self.elapsed_s if self.elapsed_s > 0 else 0.0,
            "caller_cpu_us": per_call_us(self.caller_cpu_ns),
            "server_cpu_us": per_call_us(self.server_cpu_ns),
        }


@dataclass
class System:
    """A system under test: its call, its server's pid, its figures per load."""

    name: str
    call: Call | None
    server_pid: int
    error: str | None = None
    figures: dict[int, Figures] = field(default_factory=dict)


async def closed_loop(call: Call, in_flight: int, seconds: float) -> tuple[list[int], float]:
    """`in_flight` tasks, each making its next call as soon as its previous
    one returned, starting calls for `seconds`. The latency of every call
    and the wall time until the last one returned."""
    latencies: list[int] = []
    clock = time.perf_counter_ns
    began = clock()
    deadline = began + int(seconds * 1e9)

    async def lane(index: int) -> None:
        while clock() < deadline:
            start = clock()
            await call(index)
            latencies.append(clock() - start)

    tasks = [asyncio.create_task(lane(i)) for i in range(in_flight)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return latencies, (clock() - began) / 1e9


async def measure(system: System, call: Call, in_flight: int, seconds: float) -> None:
    """Adds one round of `system` (its `call`) at `in_flight` to its figures."""
    figures = system.figures.setdefault(in_flight, Figures())
    me = os.getpid()
    caller, server = cpu_ns(me), cpu_ns(system.server_pid)
    latencies, elapsed = await closed_loop(call, in_flight, seconds)
    caller_after, server_after = cpu_ns(me), cpu_ns(system.server_pid)
    figures.latencies_ns.extend(latencies)
    figures.elapsed_s += elapsed
    figures.caller_cpu_ns += (caller_after or 0) - (caller or 0)
    if server is None or server_after is None or figures.server_cpu_ns is None:
        figures.server_cpu_ns = None
    else:
        figures.server_cpu_ns += server_after - server


def failure(error: BaseException) -> str:
    """An error on one line, with its type."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def wasmrpc_system(addr: str, pid: int) -> tuple[System, Callable[[], Awaitable[None]]]:
    """`math.add` through the wasmrpc Python client, and how to close it."""
    import wasmrpc

    client = await wasmrpc.connect(addr)
    check = await client.call("math.add", 2, 3)
    if check != 5:
        raise AssertionError(f"math.add(2, 3) returned {check!r}, not 5")

    async def call(lane: int) -> None:
        a, b = args_of(lane)
        total = await client.call("math.add", a, b)
        if total != a + b:
            raise AssertionError(f"math.add({a}, {b}) returned {total!r}")

    return System("wasmrpc-python", call, pid), client.close


async def grpcio_system(addr: str, pid: int) -> tuple[System, Callable[[], Awaitable[None]]]:
    """gRPC `Add` through `grpc.aio` on one channel, and how to close it."""
    import bench_pb2
    import bench_pb2_grpc
    import grpc

    channel = grpc.aio.insecure_channel(addr)
    await asyncio.wait_for(channel.channel_ready(), timeout=10)
    stub = bench_pb2_grpc.BenchStub(channel)
    check = await stub.Add(bench_pb2.AddRequest(a=2, b=3))
    if check.sum != 5:
        raise AssertionError(f"Add(2, 3) returned {check.sum!r}, not 5")
    request = bench_pb2.AddRequest

    async def call(lane: int) -> None:
        a, b = args_of(lane)
        reply = await stub.Add(request(a=a, b=b))
        if reply.sum != a + b:
            raise AssertionError(f"Add({a}, {b}) returned {reply.sum!r}")

    return System("grpcio", call, pid), channel.close


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


async def main(options: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, options.stubs)
    makers = [
        ("wasmrpc-python", wasmrpc_system, options.wasmrpc, options.wasmrpc_pid),
        ("grpcio", grpcio_system, options.grpc, options.grpc_pid),
    ]
    systems: list[System] = []
    closers = []
    for name, make, addr, pid in makers:
        try:
            system, close = await make(addr, pid)
            systems.append(system)
            closers.append(close)
        except Exception as error:  # noqa: BLE001 - reported; the other system goes on
            traceback.print_exc()
            systems.append(System(name, call=None, server_pid=pid, error=failure(error)))

    loads = [1] if options.in_flight == 1 else [1, options.in_flight]
    per_round = options.seconds / options.rounds
    for in_flight in loads:
        for system in systems:
            if system.error is None and system.call is not None:
                print(f"load.py: warming up {system.name}, {in_flight} in flight", file=sys.stderr)
                try:
                    await closed_loop(system.call, in_flight, options.warmup_seconds)
                except Exception as error:  # noqa: BLE001 - reported in the figures
                    traceback.print_exc()
                    system.error = f"warm-up: {failure(error)}"
        print(f"load.py: measuring {in_flight} in flight, {options.rounds} rounds", file=sys.stderr)
        for _ in range(options.rounds):
            for system in systems:
                if system.error is None and system.call is not None:
                    try:
                        await measure(system, system.call, in_flight, per_round)
                    except Exception as error:  # noqa: BLE001 - reported in the figures
                        traceback.print_exc()
                        system.error = failure(error)

    for close in closers:
        try:
            await close()
        except Exception:  # noqa: BLE001 - closing is not measured
            traceback.print_exc()

    return {
        "python": platform.python_version(),
        "event_loop": type(asyncio.get_running_loop()).__name__,
        "packages": {p: version(p) for p in ("wasmrpc", "grpcio", "protobuf")},
        "systems": [
            {
                "name": s.name,
                "error": s.error,
                "loads": [{"in_flight": n, **f.summary()} for n, f in sorted(s.figures.items())],
            }
            for s in systems
        ],
    }


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasmrpc", required=True, help="host:port of a wasmrpc host serving math")
    parser.add_argument("--wasmrpc-pid", type=int, required=True, help="that host's pid")
    parser.add_argument("--grpc", required=True, help="host:port of the bench's gRPC server")
    parser.add_argument("--grpc-pid", type=int, required=True, help="that server's pid")
    parser.add_argument("--stubs", required=True, help="the folder of bench_pb2*.py")
    parser.add_argument(
        "--in-flight", type=int, default=64, help="calls in flight on one connection"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="measured seconds per system and load"
    )
    parser.add_argument(
        "--warmup-seconds", type=float, default=1.0, help="warm-up per system and load"
    )
    parser.add_argument(
        "--rounds", type=int, default=10, help="rounds the measured time is split into"
    )
    options = parser.parse_args()
    if options.in_flight < 1 or options.rounds < 1 or options.seconds <= 0:
        parser.error("--in-flight and --rounds must be at least 1, --seconds above 0")
    return options


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse()))))
