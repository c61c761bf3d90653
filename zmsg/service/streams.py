"""Streams at the service: a generator handler run under its caller's credit.

Theory of operation: a stream request (``FLAG_STREAM``) for a generator handler becomes one
task that pulls items from the generator and hands each to the service, which appends it to the
caller's pending batch as a stream-item record numbered 1, 2, 3... (batched like replies: a batch
goes when the reader is idle, at the end of the loop iteration, or at once past
``STREAM_FLUSH_AT`` items). While that caller is not reading (messages wait in its backlog at
the ROUTER) its streams pause, so they never push the backlog to where messages are dropped.
Each item spends one credit; with none left the task waits, with the generator suspended at its
``yield``, until the caller's next credit record (``Streams.credit``) arrives. So a slow
consumer costs the service one suspended generator and at most a window of items, never an
unbounded buffer. The end of the generator sends stream-end; an exception, the error record
the service's usual error mapping gives; a cancel record (the caller left), task cancellation,
and the generator is closed so its ``finally`` runs.

``Streams.start`` takes the handler call as a zero-argument callable and accepts what it
returns either directly (an async or plain generator) or as an awaitable of it, so the same
runner serves a bare handler and one wrapped in a middleware chain.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, Protocol

from zmsg.errors import ProtocolError
from zmsg.stream_core import read_credit

__all__ = ["Streams", "StreamSink", "STREAM_FLUSH_AT"]

log = logging.getLogger("zmsg.service")

STREAM_FLUSH_AT = 256
"""Stream items queued for one caller that make its batch go at once (the reader may be busy)."""
_ITEMS_PER_TURN = 256  # items one stream sends before letting the loop run something else
_BACKLOG_PAUSE = 0.005  # seconds a stream waits while its caller's messages are not being read


class StreamSink(Protocol):
    """What the runner needs of the service: where items, ends and failures go."""

    def _stream_item(self, identity: bytes, cid: int, seq: int, value: Any) -> None: ...

    def _stream_backlogged(self, identity: bytes) -> bool: ...

    def _stream_end(self, identity: bytes, cid: int) -> None: ...

    def _stream_failed(self, identity: bytes, cid: int, handler: Any, exc: BaseException, ctx: Any) -> None: ...

    def _stream_stopped_here(self, identity: bytes, cid: int) -> None: ...

    def _track_task(self, task: asyncio.Task[Any]) -> None: ...


class _Stream:
    """One running stream: its credit, and the waiter of a generator suspended for lack of it."""

    __slots__ = ("credit", "waiter", "task", "cancelled_by_caller")

    def __init__(self) -> None:
        self.credit = 0
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[Any] | None = None
        self.cancelled_by_caller = False

    def grant(self, count: int) -> None:
        self.credit += count
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_credit(self) -> None:
        while self.credit <= 0:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None


class Streams:
    """The streams running in one service, by (caller identity, correlation id)."""

    __slots__ = ("_sink", "_running", "stale_credits", "malformed_credits", "draining")

    def __init__(self, sink: StreamSink) -> None:
        self._sink = sink
        self._running: dict[tuple[bytes, int], _Stream] = {}
        self.stale_credits = 0
        """Credit for a stream not running here (it ended meanwhile, or was refused): dropped."""
        self.malformed_credits = 0
        self.draining = False
        """The service is stopping: a stream that runs out of credit ends (503) instead of waiting."""

    def __len__(self) -> int:
        return len(self._running)

    def start(self, identity: bytes, cid: int, handler: Any, call: Callable[[], Any], ctx: Any) -> None:
        """Run the stream whose items ``call()`` produces, for the caller ``(identity, cid)``."""
        key = (identity, cid)
        if key in self._running:  # a second request with a live stream's id: refuse the newcomer
            raise ProtocolError(f"stream {cid} is already running for this caller")
        stream = self._running[key] = _Stream()
        task = asyncio.ensure_future(self._run(identity, cid, stream, handler, call, ctx))
        stream.task = task
        self._sink._track_task(task)

    def credit(self, identity: bytes, cid: int, body: Any) -> str | None:
        """Apply a credit record; returns an error message for the caller when it is malformed."""
        stream = self._running.get((identity, cid))
        try:
            count = read_credit(body)
        except ProtocolError as exc:
            self.malformed_credits += 1
            if stream is None:
                return None
            self.cancel(identity, cid)  # a caller that cannot count cannot be streamed to
            return f"Malformed credit: {exc}"
        if stream is None:
            self.stale_credits += 1
        else:
            stream.grant(count)
        return None

    def drain(self) -> None:
        """Stop streams waiting for credit now (they wait on their caller, not on work); those
        producing keep going until their credit runs out or the service's grace ends."""
        self.draining = True
        for stream in self._running.values():
            if stream.waiter is not None and stream.task is not None:
                stream.task.cancel()

    def cancel_peer(self, identity: bytes) -> None:
        """A caller went away (its messages are unroutable): close every stream it had."""
        for key in [key for key in self._running if key[0] == identity]:
            self.cancel(*key)

    def cancel(self, identity: bytes, cid: int) -> bool:
        """The caller left: close its generator (its ``finally`` runs). False: no such stream."""
        stream = self._running.pop((identity, cid), None)
        if stream is None:
            return False
        stream.cancelled_by_caller = True
        if stream.task is not None:
            stream.task.cancel()
        return True

    async def _run(self, identity: bytes, cid: int, stream: _Stream, handler: Any, call: Callable[[], Any],
                   ctx: Any) -> None:
        sink = self._sink
        source: Any = None
        try:
            source = call()
            if inspect.isawaitable(source):  # a middleware chain around the generator function
                source = await source
            is_async = hasattr(source, "__anext__")
            if not is_async:
                source = iter(source)
            step = source.__anext__ if is_async else source.__next__
            exhausted: type[Exception] = StopAsyncIteration if is_async else StopIteration
            sent = 0
            while True:
                if stream.credit <= 0:
                    if self.draining:
                        raise asyncio.CancelledError
                    await stream.wait_credit()
                while sink._stream_backlogged(identity):
                    await asyncio.sleep(_BACKLOG_PAUSE)
                try:
                    item = await step() if is_async else step()  # a plain generator runs inline
                except exhausted:
                    break
                stream.credit -= 1
                sent += 1
                sink._stream_item(identity, cid, sent, item)
                if not sent % _ITEMS_PER_TURN:
                    await asyncio.sleep(0)
            self._running.pop((identity, cid), None)
            sink._stream_end(identity, cid)
        except asyncio.CancelledError:
            if not stream.cancelled_by_caller:  # cancelled here (shutdown): tell the caller
                sink._stream_stopped_here(identity, cid)
            raise
        except Exception as exc:
            if self._running.pop((identity, cid), None) is not None:
                sink._stream_failed(identity, cid, handler, exc, ctx)
        finally:
            self._running.pop((identity, cid), None)
            await _close(source, handler)


async def _close(source: Any, handler: Any) -> None:
    """Close a generator left suspended (its ``finally`` runs now, not whenever it is collected)."""
    try:
        if hasattr(source, "aclose"):
            await source.aclose()
        elif hasattr(source, "close"):
            source.close()
    except Exception:
        log.exception("closing the stream of handler %s failed", getattr(handler, "name", handler))
