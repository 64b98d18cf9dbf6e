"""Fixtures: real `wasmrpc host` processes on loopback.

The `wasmrpc` binary and the folder of built example plugins come from the
environment (the Rust test `tests/e2e/python.rs` builds both and sets them):

- ``WASMRPC_BIN``: the `wasmrpc` binary;
- ``WASMRPC_GUESTS``: the folder holding `<name>.wasm` of every example plugin.

Every host a test starts is killed (SIGKILL) and reaped when the test ends;
hosts also get SIGKILL if the pytest process dies first.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 60.0


def _env_path(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: run these tests with "
            "`cargo test -p wasmrpc-tests --test e2e python::`, "
            "or set WASMRPC_BIN and WASMRPC_GUESTS yourself",
            pytrace=False,
        )
    return Path(value)


def wasmrpc_bin() -> Path:
    return _env_path("WASMRPC_BIN")


def install_guest(name: str, folder: Path) -> None:
    """Copies example plugin `name` (and its sidecar `<name>.toml`) into `folder`."""
    wasm = _env_path("WASMRPC_GUESTS") / f"{name}.wasm"
    assert wasm.is_file(), f"plugin `{name}` was not built at {wasm}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(wasm, folder / f"{name}.wasm")
    sidecar = REPO / "guest-examples" / name / f"{name}.toml"
    if sidecar.is_file():
        shutil.copy(sidecar, folder / f"{name}.toml")


def free_addr() -> str:
    """A free loopback address below the ephemeral port range, for a host to bind later."""
    for _ in range(1000):
        port = random.randrange(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return f"127.0.0.1:{port}"
    raise RuntimeError("no free port between 20000 and 32000")


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG = 1: the host gets SIGKILL when pytest dies.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Host:
    """A running `wasmrpc host` process."""

    def __init__(self, argv: list[str], log_path: Path, admin: bool, cwd: Path | None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "RUST_LOG": "info"},
            cwd=cwd,
            preexec_fn=_die_with_parent,
        )
        lines: list[str] = []
        ready = threading.Event()
        wanted = 2 if admin else 1

        def pump() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                lines.append(raw.decode(errors="replace"))
                if len(lines) >= wanted:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(START_TIMEOUT) or len(lines) < wanted:
            self.kill()
            raise RuntimeError(f"host did not start: {lines}\nlog:\n{self.log()}")
        match = re.search(r"listening on (\S+)", lines[0])
        assert match, lines[0]
        self.addr: str = match.group(1)
        self.admin: str | None = None
        if admin:
            match = re.search(r"admin listener on http://([^/\s]+)", lines[1])
            assert match, lines[1]
            self.admin = match.group(1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count_log(self, needle: str) -> int:
        return self.log().count(needle)

    def metrics_text(self) -> str:
        assert self.admin, "started without an admin listener"
        with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=10) as r:
            return r.read().decode()

    def metric_lines(self, word: str) -> str:
        """The samples of `/metrics` that mention `word`, for failure messages."""
        lines = self.metrics_text().splitlines()
        return "\n".join(line for line in lines if word in line and not line.startswith("#"))

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of metric `name` whose labels include `labels`."""
        total = 0.0
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
            if not match or match.group(1) != name:
                continue
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(match.group(4))
        return total

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """SIGSTOP, then waits until every thread of the host is stopped."""
        self.signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.proc.pid}/task")

        def stopped() -> bool:
            states = [
                (t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()
            ]
            return all(state in ("T", "t") for state in states)

        assert eventually(stopped), "the host did not stop"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()


class Hosts:
    """Starts hosts for one test and stops them all at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.started: list[Host] = []
        self._n = 0

    def start(
        self,
        plugins: list[str] | None = None,
        *,
        region: str = "test",
        listen: str = "127.0.0.1:0",
        config: Path | None = None,
        args: list[str] | None = None,
        admin: bool = True,
        cwd: Path | None = None,
    ) -> Host:
        """Starts a host of `region`: alone on `listen` with copies of
        `plugins`, or (with `config`) as a host of that topology."""
        self._n += 1
        work = self.tmp / f"host{self._n}"
        work.mkdir()
        argv = [str(wasmrpc_bin()), "host", "--region", region, "--listen", listen]
        argv += ["--config", str(config) if config else str(work / "no-regions.toml")]
        if plugins is not None:
            folder = work / "plugins"
            folder.mkdir()
            for name in plugins:
                install_guest(name, folder)
            argv += ["--plugins", str(folder)]
        if admin:
            argv += ["--admin", "127.0.0.1:0"]
        argv += args or []
        host = Host(argv, work / "host.log", admin, cwd)
        self.started.append(host)
        return host

    def cluster(self, regions: dict[str, tuple[int, list[str]]], *, routes: str = "") -> Path:
        """Writes a `regions.toml`: region -> (number of hosts, plugins); returns its path.
        The hosts' addresses are `region_hosts(path, region)`."""
        self._n += 1
        folder = self.tmp / f"cluster{self._n}"
        text = ""
        for name, (count, plugins) in regions.items():
            for plugin in plugins:
                install_guest(plugin, folder / "plugins" / name)
            (folder / "plugins" / name).mkdir(parents=True, exist_ok=True)
            addrs = ", ".join(f'"{free_addr()}"' for _ in range(count))
            text += (
                f'[[region]]\nname = "{name}"\nhosts = [{addrs}]\nplugins = "plugins/{name}"\n\n'
            )
        text += routes
        path = folder / "regions.toml"
        path.write_text(text)
        return path

    def stop_all(self) -> None:
        for host in self.started:
            host.kill()


def region_hosts(config: Path, region: str) -> list[str]:
    import tomllib

    topology = tomllib.loads(config.read_text())
    return [h for r in topology["region"] if r["name"] == region for h in r["hosts"]]


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    h = Hosts(tmp_path)
    try:
        yield h
    finally:
        h.stop_all()


def run(coro: Any) -> Any:
    """Runs a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


def eventually(check: Callable[[], bool], timeout: float = 5.0, step: float = 0.05) -> bool:
    """Polls `check` until it holds or `timeout` passes; returns whether it held."""
    end = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


async def eventually_async(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """`eventually` for use inside a coroutine (polls without blocking the loop)."""
    end = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(check):
            return True
        if time.monotonic() >= end:
            return False
        await asyncio.sleep(0.05)
