"""Running zmsg code the way ``zmsg serve`` does: on uvloop when installed, stopped by signals.

``zmsg.run(main())`` is ``asyncio.run`` on uvloop (when installed and wanted).
``ShutdownSignals`` is the signal handling of ``zmsg serve`` and ``Service.serve``, for an
application that runs its own services or clients: the first SIGINT/SIGTERM asks for a graceful
stop (the caller drains), a second one exits at once with status 1, and extra signals (SIGHUP
to reload, say) can be given their own callbacks. Handlers are removed only on leaving the
block, so a second signal during the drain still reaches them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Self, TypeVar

T = TypeVar("T")

__all__ = ["run", "loop_factory", "uvloop_available", "ShutdownSignals", "STOP_SIGNALS"]

log = logging.getLogger("zmsg.runtime")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(use_uvloop: bool = True) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if use_uvloop and uvloop_available():
        import uvloop

        return uvloop.new_event_loop
    return None


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """``asyncio.run(main)`` on uvloop when it is installed and wanted."""
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        return runner.run(main)


class ShutdownSignals:
    """``async with ShutdownSignals() as signals: ... await signals.wait()``: the first stop
    signal ends ``wait()``; a second one exits the process at once (status 1).

    Outside the main thread (where the loop cannot take signals) it installs nothing and
    ``wait()`` waits for ``stop()`` or cancellation only.
    """

    def __init__(self, extra: Mapping[int, Callable[[], None]] | None = None) -> None:
        self._extra = dict(extra or {})
        self._stop = asyncio.Event()
        self._installed: list[int] = []
        self.received: signal.Signals | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_stop_signal(self, signum: int) -> None:
        if self._stop.is_set():
            log.warning("second signal: exiting at once")
            sys.stdout.flush()
            os._exit(1)
        self.received = signal.Signals(signum)
        log.info("signal %s: draining", self.received.name)
        self._stop.set()

    def _on_extra(self, signum: int) -> None:
        try:
            self._extra[signum]()
        except Exception:
            log.exception("handling signal %s failed", signal.Signals(signum).name)

    async def __aenter__(self) -> Self:
        self._loop = loop = asyncio.get_running_loop()
        handlers: list[tuple[int, Callable[[int], None]]] = [(s, self._on_stop_signal) for s in STOP_SIGNALS]
        handlers += [(s, self._on_extra) for s in self._extra]
        for signum, handler in handlers:
            try:
                loop.add_signal_handler(signum, handler, signum)
                self._installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._loop is not None
        for signum in self._installed:
            self._loop.remove_signal_handler(signum)
        self._installed = []

    def stop(self) -> None:
        """Ask for the stop a signal would ask for (from code, e.g. a test or an admin call)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait(self) -> None:
        await self._stop.wait()
