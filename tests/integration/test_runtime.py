"""zmsg.run and zmsg.ShutdownSignals: an application runs its code the way `zmsg serve` does."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

SCRIPT = textwrap.dedent("""
    import asyncio, signal, sys
    import zmsg

    async def main() -> None:
        service = zmsg.Service("app")

        @service.message_pattern("ping")
        def ping(_: None) -> str:
            return "pong"

        await service.start("tcp://127.0.0.1:0")
        async with zmsg.ShutdownSignals(extra={signal.SIGHUP: lambda: print("reload", flush=True)}) as signals:
            async with zmsg.ClientProxy(service.endpoint) as client:
                print("ready", await client.send("ping"), flush=True)
            await signals.wait()
            print("draining after", signals.received.name, flush=True)
            if "--hang" in sys.argv:
                await asyncio.sleep(60)  # a drain that does not end: a second signal must exit at once
            await service.stop()
        print("stopped", flush=True)

    zmsg.run(main())
""")


@pytest.fixture
def start() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def factory(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, *args], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["ready", "pong"]
        return proc

    yield factory
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_first_signal_drains_and_extra_signals_get_their_callbacks(start: Callable[..., Any]) -> None:
    proc = start()
    assert proc.stdout is not None
    proc.send_signal(signal.SIGHUP)
    assert proc.stdout.readline().strip() == "reload"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert out.splitlines() == ["draining after SIGTERM", "stopped"]
    assert proc.returncode == 0


def test_a_second_signal_during_the_drain_exits_at_once_with_status_1(start: Callable[..., Any]) -> None:
    proc = start("--hang")
    assert proc.stdout is not None
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "draining after SIGINT"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 1
