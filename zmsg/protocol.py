"""Sans-io core of the zmsg wire protocol: record kinds, batches, the in-flight table.

Theory of operation: peers exchange *records* (request, reply, error, event, ...) packed by
``zmsg._framing`` into batches, one batch per ZeroMQ message. This module knows what the kinds
mean and keeps the bookkeeping that makes correlation work (which request ids are awaited, and
until when), but it never touches a socket, a clock or an event loop: callers pass bytes and
``now`` in and get records and decisions out, so every rule here is testable with bytes alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from zmsg import _framing
from zmsg._framing import (
    FLAG_EXTERNAL_BODY,
    FLAG_METADATA,
    HEADER_SIZE,
    MAX_METADATA_LEN,
    VERSION,
    decode_metadata,
    encode_metadata,
    parse_frames,
)

__all__ = [
    "KIND_REQUEST",
    "KIND_REPLY",
    "KIND_ERROR",
    "KIND_EVENT",
    "KIND_STREAM_ITEM",
    "KIND_STREAM_END",
    "KIND_CANCEL",
    "KIND_HEARTBEAT",
    "KIND_CREDIT",
    "KIND_NAMES",
    "RESERVED_PREFIX",
    "HELLO_PATTERN",
    "HEALTH_PATTERN",
    "INFO_PATTERN",
    "SCHEMA_PATTERN",
    "EXTERNAL_BODY_THRESHOLD",
    "FLUSH_EXTERNAL_BYTES",
    "VERSION",
    "HEADER_SIZE",
    "FLAG_EXTERNAL_BODY",
    "FLAG_METADATA",
    "MAX_METADATA_LEN",
    "EMPTY_METADATA",
    "encode_metadata",
    "decode_metadata",
    "FLAG_BROADCAST_ONLY",
    "BROADCAST_TOPIC",
    "INSTANCE_ID_LEN",
    "instance_topic",
    "event_batch_start",
    "read_subscription",
    "FLAG_STREAM",
    "FLAG_SLOW_DOWN",
    "BatchBuilder",
    "InFlight",
    "parse_frames",
]

# Record kinds (header byte 1). A peer that receives a kind it does not implement answers with
# an error record. Streams (zmsg/stream_core.py) use stream-item, stream-end and credit.
KIND_REQUEST = 1
KIND_REPLY = 2
KIND_ERROR = 3
KIND_EVENT = 4
KIND_STREAM_ITEM = 5
KIND_STREAM_END = 6
KIND_CANCEL = 7
KIND_HEARTBEAT = 8
KIND_CREDIT = 9
KIND_NAMES = {
    KIND_REQUEST: "request",
    KIND_REPLY: "reply",
    KIND_ERROR: "error",
    KIND_EVENT: "event",
    KIND_STREAM_ITEM: "stream-item",
    KIND_STREAM_END: "stream-end",
    KIND_CANCEL: "cancel",
    KIND_HEARTBEAT: "heartbeat",
    KIND_CREDIT: "credit",
}

# Header flag bit 3 on a request: the caller reads a stream (``client.stream``); without it the
# caller wants one reply (``client.send``). Bits 0 and 1 belong to the framing layer, bit 2 is
# FLAG_BROADCAST_ONLY (events).
FLAG_STREAM = 0x0008
# Header flag bit 4 on a reply (service to client): when it was queued, this client's unsent
# replies at the service were over half its max_peer_buffer. A pipelining client keeps fewer
# requests out on seeing it, before the service starts refusing them (429 not_run) and the
# client moves them twice (see zmsg.client_core.SendWindow).
FLAG_SLOW_DOWN = 0x0010

# Patterns starting with this prefix are the service's own (handshake, health, info); user
# handlers may not register them.
RESERVED_PREFIX = "$zmsg."
HELLO_PATTERN = RESERVED_PREFIX + "hello"
# Answered by every service, like gRPC's health checking and reflection (see docs/cli.md).
HEALTH_PATTERN = RESERVED_PREFIX + "health"
INFO_PATTERN = RESERVED_PREFIX + "info"
SCHEMA_PATTERN = RESERVED_PREFIX + "schema"  # the AsyncAPI 3.0 document of the service (zmsg.contract)

# The metadata of a record that carries none: read-only, shared, so "no metadata" allocates nothing.
# A record with metadata sets FLAG_METADATA and its body starts with the section that
# ``encode_metadata(metadata, payload)`` builds and ``decode_metadata(body)`` splits off again
# (layout in zmsg/_fastframe_py.py and docs/protocol.md); a record without it is untouched.
EMPTY_METADATA: Mapping[str, str] = MappingProxyType({})

# Bodies at least this large travel as their own frame instead of being copied into the batch.
# Below it, a frame of its own costs more (a send and a receive per frame, a zmq.Frame object on
# the receiving side) than copying the body: 16 KiB bodies inline measured 1.4x-1.7x the
# requests/s of 16 KiB external ones at 8-512 in flight (benches/RESULTS.md, issue 15), while
# 48 KiB bodies inline cost the client more CPU at 8 in flight, hence 32 KiB.
EXTERNAL_BODY_THRESHOLD = 32 * 1024
# A batch carrying this many bytes of such bodies is sent at once instead of waiting for more
# records: large payloads gain from pipelining, not from batching (W4 and the sweep measured
# about 2x the MB/s for 64 KiB and 1 MiB bodies, see benches/RESULTS.md).
FLUSH_EXTERNAL_BYTES = 64 * 1024

# -- events with several instances of one service (docs/protocol.md, "Instances") -------------
# An event record with this flag runs only the handlers declared ``broadcast=True``: it is the
# copy an instance other than the one chosen for the event receives.
FLAG_BROADCAST_ONLY = 0x0004
# Every instance's SUB subscribes to two prefixes of frame 0: this one, which every batch starts
# with (its version byte), for events meant for all instances, and its own instance topic.
BROADCAST_TOPIC = bytes([VERSION])
_ADDRESSED = b"\x00"  # never a version byte: a frame 0 starting with it is a topic, not a batch
INSTANCE_ID_LEN = 16  # hex digits; fixed length, so no instance's topic is a prefix of another's


def instance_topic(instance_id: str) -> bytes:
    """The topic frame that addresses an event message to one instance (0x00 + its id)."""
    if len(instance_id) != INSTANCE_ID_LEN:
        raise ValueError(f"an instance id has {INSTANCE_ID_LEN} hex digits, not {instance_id!r}")
    return _ADDRESSED + instance_id.encode("ascii")


def event_batch_start(frames: list[Any]) -> int:
    """Index of the batch frame of an event message: 1 after a topic frame, else 0."""
    first = frames[0] if frames else b""
    return 1 if first[:1] == _ADDRESSED else 0


def read_subscription(message: bytes) -> tuple[bool, str | None] | None:
    """What an XPUB subscription message says: (joined, instance id or None for the broadcast
    topic or an everything subscription); None for a subscription zmsg does not use."""
    if not message or message[0] not in (0, 1):
        return None
    joined = message[0] == 1
    topic = message[1:]
    if topic in (b"", BROADCAST_TOPIC):
        return joined, None
    if len(topic) == 1 + INSTANCE_ID_LEN and topic[:1] == _ADDRESSED:
        return joined, topic[1:].decode("ascii", "replace")
    return None


@dataclass
class BatchBuilder:
    """Accumulates records into one ZeroMQ message (a batch frame plus external body frames)."""

    external_threshold: int = EXTERNAL_BODY_THRESHOLD
    buf: bytearray = field(default_factory=bytearray)
    externals: list[Any] = field(default_factory=list)
    count: int = 0
    external_bytes: int = 0  # total size of ``externals``: compare with FLUSH_EXTERNAL_BYTES

    def add(self, kind: int, flags: int, correlation_id: int, ttl_ms: int, pattern: bytes, body: Any) -> None:
        if len(body) >= self.external_threshold:
            _framing.append_external(self.buf, kind, flags, correlation_id, ttl_ms, pattern, len(body))
            self.externals.append(body)
            self.external_bytes += len(body)
        else:
            _framing.append_record(self.buf, kind, flags, correlation_id, ttl_ms, pattern, body)
        self.count += 1

    def take(self) -> list[Any]:
        """Return the frames of the batch built so far and start a new one.

        The batch frame is the ``bytearray`` itself, handed over (a new one is started): ZeroMQ
        copies it into its own message anyway, so a ``bytes`` copy first would be a wasted copy
        of every body in the batch.
        """
        frames: list[Any] = [self.buf]
        if self.externals:
            frames.extend(self.externals)
            self.externals = []
            self.external_bytes = 0
        self.buf = bytearray()
        self.count = 0
        return frames

    def __len__(self) -> int:
        return self.count


T = TypeVar("T")


class InFlight(Generic[T]):
    """Requests awaiting a reply, by correlation id, with their deadlines.

    Adding and resolving are O(1). Expiry is a sweep over what is in flight, run only when the
    earliest known deadline has passed, so no timer is created per request.
    """

    __slots__ = ("_entries", "_next_id", "_earliest", "late_replies")

    def __init__(self) -> None:
        self._entries: dict[int, tuple[T, float]] = {}
        self._next_id = 0
        self._earliest = float("inf")
        self.late_replies = 0

    def new_id(self) -> int:
        self._next_id = (self._next_id + 1) & 0xFFFFFFFFFFFFFFFF or 1
        return self._next_id

    @property
    def last_id(self) -> int:
        """The newest id handed out (0 before the first)."""
        return self._next_id

    def add(self, correlation_id: int, waiter: T, deadline: float) -> bool:
        """Track a request; returns True when its deadline is now the earliest known one."""
        self._entries[correlation_id] = (waiter, deadline)
        if deadline < self._earliest:
            self._earliest = deadline
            return True
        return False

    def resolve(self, correlation_id: int) -> T | None:
        """The waiter of a reply, or None (counted) when the id is unknown or already expired."""
        entry = self._entries.pop(correlation_id, None)
        if entry is None:
            self.late_replies += 1
            return None
        return entry[0]

    def items(self) -> list[tuple[int, T]]:
        """A snapshot of what is in flight (for rare scans such as a lost connection)."""
        return [(cid, entry[0]) for cid, entry in self._entries.items()]

    def discard(self, correlation_id: int) -> T | None:
        entry = self._entries.pop(correlation_id, None)
        return None if entry is None else entry[0]

    def expire(self, now: float) -> list[tuple[int, T]]:
        """Remove and return every request whose deadline is at or before ``now``."""
        if now < self._earliest:
            return []
        expired: list[tuple[int, T]] = []
        earliest = float("inf")
        for cid, (waiter, deadline) in self._entries.items():
            if deadline <= now:
                expired.append((cid, waiter))
            elif deadline < earliest:
                earliest = deadline
        for cid, _ in expired:
            del self._entries[cid]
        self._earliest = earliest
        return expired

    @property
    def earliest_deadline(self) -> float:
        return self._earliest

    def drain(self) -> Iterator[tuple[int, T]]:
        """Remove and yield everything in flight (used when the connection is closed)."""
        entries, self._entries = self._entries, {}
        self._earliest = float("inf")
        for cid, (waiter, _deadline) in entries.items():
            yield cid, waiter

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, correlation_id: int) -> bool:
        return correlation_id in self._entries
