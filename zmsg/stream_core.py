"""Sans-io stream rules: what a stream is on the wire, its credit window, and one stream's life.

Theory of operation: a stream is a request record with ``FLAG_STREAM`` (``open_stream``),
followed in the same batch by a credit record granting the service a *window* of items. The
service answers with stream-item records, at most as many as it was granted, and ends the
stream with exactly one terminal record: stream-end (the generator returned), an error (it
raised), or a plain reply (the handler is not a generator: its one value is the stream's only
item). The caller grants more credit as its code consumes items, half a window at a time
(``ClientStream.credit_due``), so items sent and not yet consumed never exceed the window: a
consumer that reads slowly keeps the service's generator suspended instead of making either
side buffer without bound. A caller that leaves early sends a cancel record; the service then
closes the generator (its ``finally`` runs) and sends nothing more.

``ClientStream`` is one stream as a caller sees it, driven by both clients (the asyncio one
wakes its consumer from the reader; the blocking one reads its own socket): records in,
values, exceptions and credit decisions out. It never touches a socket, a loop or a clock;
timeouts and lost connections are reported to it by the driver (``fail``). The service uses
``read_credit`` for the records it receives. Unit tests drive it all with plain values.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any

import msgspec

from zmsg import codec
from zmsg.client_core import reply_value
from zmsg.errors import PayloadError, ProtocolError
from zmsg.protocol import (
    FLAG_STREAM,
    KIND_CREDIT,
    KIND_ERROR,
    KIND_NAMES,
    KIND_REPLY,
    KIND_REQUEST,
    KIND_STREAM_END,
    KIND_STREAM_ITEM,
    BatchBuilder,
)

__all__ = [
    "MAX_CREDIT",
    "END",
    "StreamState",
    "ClientStream",
    "credit_body",
    "read_credit",
    "open_stream",
    "add_credit",
    "credit_message",
]

MAX_CREDIT = 0xFFFFFFFF
"""The largest grant one credit record may carry (and the largest window)."""


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Any = _End()
"""What ``ClientStream.next_item`` returns once the stream has ended normally."""


def credit_body(count: int) -> bytes:
    """The body of a credit record: the number of further items granted, a MessagePack uint."""
    return codec.encode(count)


def read_credit(body: Any) -> int:
    """The grant a credit record carries; ``ProtocolError`` unless it is an int in 1..MAX_CREDIT."""
    try:
        value = codec.decode(body)
    except PayloadError:
        raise ProtocolError("credit record body is not MessagePack") from None
    if type(value) is not int or not 1 <= value <= MAX_CREDIT:
        raise ProtocolError(f"credit record must carry an integer 1..{MAX_CREDIT}, not {value!r:.40}")
    return value


def open_stream(batch: BatchBuilder, cid: int, ttl_ms: int, route: bytes, body: bytes, window: int,
                flags: int = 0) -> None:
    """Add what opens a stream to ``batch``: the request, then the first grant of credit."""
    batch.add(KIND_REQUEST, flags | FLAG_STREAM, cid, ttl_ms, route, body)
    batch.add(KIND_CREDIT, 0, cid, 0, b"", credit_body(window))


def add_credit(batch: BatchBuilder, cid: int, count: int) -> None:
    batch.add(KIND_CREDIT, 0, cid, 0, b"", credit_body(count))


def credit_message(cid: int, count: int) -> list[Any]:
    """The frames of a message carrying only a grant of credit (drivers without a shared batch)."""
    batch = BatchBuilder()
    add_credit(batch, cid, count)
    return batch.take()


class StreamState(enum.Enum):
    """Where a stream stands, as far as the caller knows."""

    OPEN = "open"
    """The service may still send items (it has not ended the stream, nor been told to stop)."""
    ENDED = "ended"
    """The service ended it: stream-end, or a plain handler's single reply."""
    FAILED = "failed"
    """The service raised (an error record) or can no longer answer (connection lost, closed)."""
    CANCELLED = "cancelled"
    """The caller left while it was open; the service was told to stop (a cancel record)."""


class ClientStream:
    """One stream's receiving side: items queue here until the caller's code takes them.

    Records from the service go to ``on_record``; the driver takes values with ``next_item``
    when ``ready`` (otherwise it waits for the next message, up to the per-item timeout),
    sends what ``credit_due`` says after each item, and calls ``close`` when the caller is
    done, for whatever reason: it says whether the service must be sent a cancel record.
    """

    __slots__ = ("correlation_id", "route", "window", "state", "unexpected", "_bodies", "_error", "_credit",
                 "_consumed", "_half", "_decoder", "_seq")

    def __init__(self, correlation_id: int, route: bytes, window: int,
                 decoder: msgspec.msgpack.Decoder[Any] | None = None) -> None:
        if not 1 <= window <= MAX_CREDIT:
            raise ValueError(f"stream window must be 1..{MAX_CREDIT}, not {window!r}")
        self.correlation_id = correlation_id
        self.route = route
        self.window = window
        self.state = StreamState.OPEN
        self.unexpected = 0
        """Records that arrived for this stream after it was over (dropped)."""
        self._bodies: deque[Any] = deque()
        self._error: BaseException | None = None
        self._credit = window  # items the service may still send
        self._consumed = 0  # items taken since the last grant
        self._half = max(1, window // 2)
        self._decoder = decoder
        self._seq = 0  # the last item's sequence number (its record's ttl field)

    # -- records in ------------------------------------------------------------------------

    def on_record(self, kind: int, body: Any, seq: int = 0) -> bool:
        """Apply one record the service sent for this stream; False when it was rejected (the
        driver counts those): a record after the stream was over, an item beyond the credit
        granted, a kind a stream cannot carry, an item out of sequence (``seq``: the record's ttl
        field, 1, 2, 3... modulo 2**32; the last three fail the stream: items were lost)."""
        if self.state is not StreamState.OPEN or self._error is not None:
            self.unexpected += 1  # e.g. items already in flight when we cancelled: dropped
            return False
        if kind == KIND_STREAM_ITEM:
            if self._credit <= 0:
                self._bodies.clear()
                self._error = ProtocolError(
                    f"the service sent more items of stream {codec.pattern_repr(self.route)!r} than it was "
                    f"granted (window {self.window})")
                return False
            expected = (self._seq + 1) & MAX_CREDIT
            if seq != expected:
                self._bodies.clear()
                self._error = ProtocolError(
                    f"stream {codec.pattern_repr(self.route)!r} lost items: item {seq} arrived after {self._seq}")
                return False
            self._seq = expected
            self._credit -= 1
            self._bodies.append(body)
        elif kind == KIND_STREAM_END:
            self.state = StreamState.ENDED
        elif kind == KIND_REPLY:  # a plain handler: its reply is the only item
            self._bodies.append(body)
            self.state = StreamState.ENDED
        elif kind == KIND_ERROR:
            self._error = codec.rpc_exception(body)
            self.state = StreamState.FAILED
        else:
            self._bodies.clear()
            self._error = ProtocolError(
                f"unexpected record kind {kind} ({KIND_NAMES.get(kind, 'unknown')}) in stream "
                f"{self.correlation_id}")
            return False
        return True

    def fail(self, error: BaseException, *, service_gone: bool) -> None:
        """The driver ends the stream with ``error`` once the items received are taken.

        ``service_gone``: the service can no longer send (connection lost, proxy closed), so
        the stream is over there too; otherwise (a timeout, a fault found here) it is still open
        at the service and ``close`` will ask for a cancel record. A stream already over keeps
        its own outcome.
        """
        if self.state is not StreamState.OPEN or self._error is not None:
            return
        self._error = error
        if service_gone:
            self.state = StreamState.FAILED
        else:
            self._bodies.clear()  # a local fault: nothing after it is trustworthy

    # -- values out ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """``next_item`` would not need to wait for the service."""
        return bool(self._bodies) or self._error is not None or self.state is not StreamState.OPEN

    def next_item(self) -> Any:
        """The next value, ``END`` when the stream is over, or raise what ended it.

        Items received before an error are yielded first, then the error is raised. Call only
        when ``ready``.
        """
        if self._bodies:
            body = self._bodies.popleft()
            self._consumed += 1
            return self._decode(body)
        if self._error is not None:
            raise self._error
        if self.state is StreamState.OPEN:
            raise RuntimeError("next_item() called on a stream that is not ready")
        return END

    def take(self) -> tuple[Any, int]:
        """``next_item`` and then, unless the stream is over, ``credit_due``: what a driver does
        for every item (it then sends the credit, if any)."""
        value = self.next_item()
        return value, (0 if value is END else self.credit_due())

    def _decode(self, body: Any) -> Any:
        # An item is decoded exactly as a reply is (typed by ``response_type``, same errors).
        return reply_value(KIND_REPLY, self.correlation_id, body, self._decoder)

    def credit_due(self) -> int:
        """Items to grant the service now (0: none yet): what was consumed, once it reaches half a
        window, so a credit record goes out every ``window // 2`` items, never per item."""
        if self._consumed < self._half or self.state is not StreamState.OPEN or self._error is not None:
            return 0
        granted, self._consumed = self._consumed, 0
        self._credit += granted
        return granted

    def close(self) -> bool:
        """The caller is done with the stream; True when the service must be told to stop."""
        self._bodies.clear()
        if self.state is StreamState.OPEN:
            self.state = StreamState.CANCELLED
            return True
        return False

    @property
    def buffered(self) -> int:
        """Items received and not yet taken (at most ``window``)."""
        return len(self._bodies)
