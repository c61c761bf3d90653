"""Shared fixtures: both event loops, loop-error tracking, and services in real subprocesses.

Every async test runs twice, on asyncio and on uvloop (anyio's pytest plugin runs the
coroutine; ``anyio_backend`` picks the loop). A test fails if anything reaches the loop's
exception handler, so an error swallowed by a callback cannot hide. Services started by
``serve_process`` are real ``zmsg serve`` processes on ephemeral ports, always reaped.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SERVICES_DIR = Path(__file__).parent / "services"
_ENDPOINT_LINE = re.compile(r"serving '(?P<name>[^']*)' on (?P<endpoint>\S+) \(events on (?P<events>\S+)\)")


@pytest.fixture(params=[pytest.param(False, id="asyncio"), pytest.param(True, id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": request.param})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every async (anyio) test also gets the loop-error check below.
    for item in items:
        if (item.get_closest_marker("anyio") and isinstance(item, pytest.Function)
                and inspect.iscoroutinefunction(item.obj) and "_fail_on_loop_errors" not in item.fixturenames):
            item.fixturenames.append("_fail_on_loop_errors")


@pytest.fixture
async def _fail_on_loop_errors() -> AsyncIterator[None]:
    """Record whatever reaches the loop's exception handler and fail the test on it."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield
    loop.set_exception_handler(previous)
    assert not seen, f"the event loop's exception handler was called: {seen}"


def free_port() -> int:
    """A loopback TCP port nothing listens on now, for a test that binds (or leaves) it later."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_endpoint() -> str:
    """``tcp://127.0.0.1:PORT`` on a ``free_port()``."""
    return f"tcp://127.0.0.1:{free_port()}"


class ServedProcess:
    """A ``zmsg serve`` subprocess and the endpoints it printed."""

    def __init__(self, proc: subprocess.Popen[str], endpoint: str, events_endpoint: str, seen: list[str]) -> None:
        self.proc = proc
        self.endpoint = endpoint
        self.events_endpoint = events_endpoint
        self.pid = proc.pid
        # Drain the pipe continuously: a service blocked on a full stdout pipe would look hung.
        self._lines = seen
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def output(self) -> str:
        """Everything the process wrote (only once it has exited)."""
        assert self.proc.poll() is not None
        self._reader.join(10)
        return "".join(self._lines)


def start_serve(target: str, *args: str, cwd: Path = SERVICES_DIR, env: dict[str, str] | None = None,
                timeout: float = 30.0, python: tuple[str, ...] = ("-m", "zmsg")) -> ServedProcess:
    """Start ``zmsg serve TARGET`` and wait for the line naming its bound endpoint
    (``python``: how the interpreter runs the command, e.g. ``("-c", CODE)`` to set limits first)."""
    proc_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, *python, "serve", target, "--bind", "tcp://127.0.0.1:0", *args],
        cwd=cwd, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = _ENDPOINT_LINE.search(line)
        if match:
            return ServedProcess(proc, match["endpoint"], match["events"], seen)
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"zmsg serve {target} did not report its endpoint; output:\n{''.join(seen)}")


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServedProcess]]:
    """Factory fixture: start services in subprocesses; all are terminated and reaped after."""
    started: list[ServedProcess] = []

    def factory(target: str = "mathsvc:service", *args: str, **kwargs: Any) -> ServedProcess:
        served = start_serve(target, *args, **kwargs)
        started.append(served)
        return served

    yield factory
    for served in started:
        served.terminate()
        served._reader.join(10)
        if served.proc.stdout:
            served.proc.stdout.close()


@pytest.fixture
def math_service(serve_process: Callable[..., ServedProcess]) -> ServedProcess:
    return serve_process("mathsvc:service")


@pytest.fixture(scope="module")
def pipeline_service() -> Iterator[ServedProcess]:
    """tests/services/pipelinesvc.py in one ``zmsg serve`` process shared by a module's tests."""
    served = start_serve("pipelinesvc:service")
    try:
        yield served
    finally:
        served.terminate()
        served._reader.join(10)
        if served.proc.stdout:
            served.proc.stdout.close()
