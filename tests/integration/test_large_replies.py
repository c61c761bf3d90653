"""Replies whose bodies travel as frames of their own, and broken ones, seen by both clients.

A raw ROUTER stands in for the service (it answers the handshake, then replies as each test's
pattern says), so the frames on the wire are exactly the ones under test: a whole large reply,
one announcing a body frame that never comes, one whose body frame has the wrong length, and a
message carrying a late reply before the large one. Both clients must return the value or fail
that one call at once with ``ProtocolError``, never wait out the timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import zmq

import zmsg
from zmsg.protocol import EXTERNAL_BODY_THRESHOLD, HELLO_PATTERN, KIND_REPLY, KIND_REQUEST, BatchBuilder, parse_frames

BIG = b"x" * (EXTERNAL_BODY_THRESHOLD + 1000)
ENCODED_BIG = msgspec.msgpack.encode(BIG)
TIMEOUT = 10.0  # a failure that waited for it would take this long: the tests require far less


def _reply_frames(mode: str, cid: int) -> list[Any]:
    batch = BatchBuilder()
    if mode == "after_late":
        batch.add(KIND_REPLY, 0, cid + 1_000_000, 0, b"", msgspec.msgpack.encode("late"))  # inline
    batch.add(KIND_REPLY, 0, cid, 0, b"", ENCODED_BIG)
    frames = batch.take()
    assert len(frames) == 2, "the body must travel as its own frame"
    if mode == "missing":
        return frames[:1]
    if mode == "short":
        return [frames[0], ENCODED_BIG[:-1]]
    return frames


class _ScriptedService:
    """Answers the handshake like a zmsg service, then each request as its pattern names."""

    def __init__(self) -> None:
        self.router = zmq.Context.instance().socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.router.bind_to_random_port('tcp://127.0.0.1')}"
        # Clients wait for this socket's subscription to their event publisher when connecting.
        self.events = zmq.Context.instance().socket(zmq.SUB)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.setsockopt(zmq.SUBSCRIBE, b"")
        self.events_endpoint = f"tcp://127.0.0.1:{self.events.bind_to_random_port('tcp://127.0.0.1')}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="scripted-service", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        hello = msgspec.msgpack.encode({"service": "scripted", "version": "0", "protocol": 1,
                                        "events": self.events_endpoint, "max_message_size": 1 << 24})
        router = self.router
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(self.events, zmq.POLLIN)  # polling it lets libzmq send its subscription
        while not self._stop.is_set():
            if router not in dict(poller.poll(50)):
                continue
            frames = router.recv_multipart()
            for kind, _flags, cid, _ttl, pattern, _body in parse_frames(frames, 1):
                if kind != KIND_REQUEST:
                    continue
                if pattern == HELLO_PATTERN.encode():
                    batch = BatchBuilder()
                    batch.add(KIND_REPLY, 0, cid, 0, b"", hello)
                    router.send_multipart([frames[0], *batch.take()])
                else:
                    router.send_multipart([frames[0], *_reply_frames(pattern.decode(), cid)])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.router.close()
        self.events.close()


@pytest.fixture
def scripted() -> Iterator[_ScriptedService]:
    service = _ScriptedService()
    try:
        yield service
    finally:
        service.close()


@pytest.mark.parametrize("mode", ["whole", "after_late"])
def test_sync_client_reads_a_body_frame(scripted: _ScriptedService, mode: str) -> None:
    with zmsg.SyncClientProxy(scripted.endpoint, timeout=TIMEOUT) as client:
        assert client.send(mode) == BIG
        assert client.send(mode) == BIG  # nothing of the first message was left unread
        assert client.late_replies == (2 if mode == "after_late" else 0)


@pytest.mark.parametrize(("mode", "match"), [("missing", "external body frame that is missing"),
                                             ("short", "external body is")])
def test_sync_client_fails_a_broken_body_frame_at_once(scripted: _ScriptedService, mode: str, match: str) -> None:
    with zmsg.SyncClientProxy(scripted.endpoint, timeout=TIMEOUT) as client:
        started = time.monotonic()
        with pytest.raises(zmsg.ProtocolError, match=match):
            client.send(mode)
        assert time.monotonic() - started < TIMEOUT / 2
        assert client.send("whole") == BIG  # the connection and the next call are unharmed


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["whole", "after_late"])
async def test_async_client_reads_a_body_frame(scripted: _ScriptedService, mode: str) -> None:
    async with zmsg.ClientProxy(scripted.endpoint, timeout=TIMEOUT) as client:
        assert await client.send(mode) == BIG
        assert await client.send(mode) == BIG
        assert client.late_replies == (2 if mode == "after_late" else 0)


@pytest.mark.anyio
@pytest.mark.parametrize(("mode", "match"), [("missing", "external body frame that is missing"),
                                             ("short", "external body is")])
async def test_async_client_fails_a_broken_body_frame_at_once(scripted: _ScriptedService, mode: str, match: str) -> None:
    async with zmsg.ClientProxy(scripted.endpoint, timeout=TIMEOUT) as client:
        started = time.monotonic()
        with pytest.raises(zmsg.ProtocolError, match=match):
            await client.send(mode)
        assert time.monotonic() - started < TIMEOUT / 2
        assert await client.send("whole") == BIG
