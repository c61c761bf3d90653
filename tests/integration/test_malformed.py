"""Hostile and broken traffic from raw pyzmq sockets: rejected, counted, never fatal."""

from __future__ import annotations

import asyncio
import random
import struct

import msgspec
import pytest
import zmq
import zmq.asyncio

import zmsg
from zmsg.protocol import BROADCAST_TOPIC, KIND_ERROR, KIND_REQUEST, BatchBuilder, instance_topic, parse_frames

pytestmark = pytest.mark.anyio

HEADER = struct.Struct("<BBHIQIHH")


def _record(kind: int, cid: int, pattern: bytes, body: bytes, version: int = 1, reserved: int = 0) -> bytes:
    return HEADER.pack(version, kind, 0, len(body), cid, 0, len(pattern), reserved) + pattern + body


def _garbage() -> list[list[bytes]]:
    rng = random.Random(1234)
    messages: list[list[bytes]] = [[rng.randbytes(rng.randrange(1, 200))] for _ in range(200)]
    messages += [
        [b""],
        [b"\x01\x01\x00"],  # truncated header
        [_record(1, 5, b"echo", b"\x91")[:30]],  # truncated body
        [HEADER.pack(1, 1, 0, 2**32 - 1, 6, 0, 4, 0) + b"echo"],  # huge declared body length
        [HEADER.pack(1, 1, 0, 0, 7, 0, 65535, 0)],  # huge declared pattern length
        [_record(1, 8, b"echo", b"\x91", reserved=3)],
        [_record(1, 9, b"echo", b"\x91"), b"unexpected extra frame"],
        [HEADER.pack(1, 1, 1, 100, 10, 0, 4, 0) + b"echo"],  # external body announced, missing
    ]
    return messages


async def _raw_dealer(endpoint: str) -> zmq.asyncio.Socket:
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


async def _reply_to(sock: zmq.asyncio.Socket, cid: int) -> tuple[int, object]:
    while True:
        assert await sock.poll(10_000), "the service did not answer"
        for kind, _f, rcid, _t, _p, body in parse_frames(await sock.recv_multipart()):
            if rcid == cid:
                return kind, msgspec.msgpack.decode(body)


async def test_service_survives_garbage_and_keeps_answering(math_service) -> None:
    sock = await _raw_dealer(math_service.endpoint)
    try:
        for frames in _garbage():
            await sock.send_multipart(frames)
        async with zmsg.ClientProxy(math_service.endpoint) as client:
            assert await client.send({"cmd": "sum"}, [1, 2]) == 3
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("record", "status", "text"),
    [
        (_record(99, 41, b"echo", b"\x91"), 400, "Unsupported record kind 99"),
        (_record(5, 42, b"echo", b"\x91"), 400, "Unsupported record kind 5 (stream-item)"),
        (_record(1, 43, b"echo", b"\xc1\xc1"), 400, "Malformed payload"),
        (_record(1, 44, b'{"cmd":"sum"}', msgspec.msgpack.encode("nope")), 400, "Invalid payload"),
        (_record(1, 45, b"echo", b"\x91", version=2), 400, "unsupported protocol version 2"),
        (_record(1, 46, b"echo", b"\x91\x01") + b"\x01\x01", 400, "truncated header"),
    ],
    ids=["unknown-kind", "reserved-kind", "garbage-body", "invalid-body", "wrong-version", "trailing-junk"],
)
async def test_addressable_faults_get_an_error_reply(math_service, record: bytes, status: int, text: str) -> None:
    sock = await _raw_dealer(math_service.endpoint)
    try:
        await sock.send(record)
        cid = HEADER.unpack_from(record)[4]
        if "truncated header" in text:
            # The first record is fine and is answered; the fault after it is reported without an id.
            kind, body = await _reply_to(sock, cid)
            assert kind != KIND_ERROR
            return
        kind, body = await _reply_to(sock, cid)
        assert kind == KIND_ERROR
        assert isinstance(body, dict) and body["status"] == status and text in body["message"]
    finally:
        sock.close()


async def test_faults_are_counted_and_loops_survive_in_process() -> None:
    service = zmsg.Service("victim")

    @service.message_pattern("ping")
    def ping() -> str:
        return "pong"

    endpoint = await service.start("tcp://127.0.0.1:0")
    ctx = zmq.asyncio.Context.instance()
    dealer = ctx.socket(zmq.DEALER)
    # An XPUB, not a PUB: it tells when the service's subscription has arrived, so no garbage is
    # sent before anyone would receive it (a PUB drops silently until then).
    pub = ctx.socket(zmq.XPUB)
    try:
        dealer.connect(endpoint)
        pub.connect(service.events_endpoint)
        for _ in range(2):  # the broadcast topic and the instance's own
            assert (await asyncio.wait_for(pub.recv(), 10))[:1] == b"\x01"
        for frames in _garbage():
            await dealer.send_multipart(frames)
        batch = BatchBuilder()
        batch.add(KIND_REQUEST, 0, 77, 0, b"ping", msgspec.msgpack.encode(None))
        await dealer.send_multipart(batch.take())
        assert await _reply_to(dealer, 77) == (2, "pong")
        assert service.stats.malformed_messages >= 200
        before = service.stats.malformed_messages
        async with zmsg.ClientProxy(endpoint) as client:  # connect() waits for the subscription
            # The service's SUB filters on its two topics: garbage must start like a batch (the
            # version byte) or come after this instance's topic frame to reach the parser at all.
            topic = instance_topic(service.instance_id)
            for index, frames in enumerate(_garbage()[:50]):
                await pub.send_multipart([topic, *frames] if index % 2 else [BROADCAST_TOPIC + frames[0], *frames[1:]])
            await client.emit("anything", 1)
            assert await client.send("ping") == "pong"
        # The event socket is read on its own schedule: wait (bounded) for the garbage to be seen.
        for _ in range(200):
            if service.stats.malformed_messages > before:
                break
            await asyncio.sleep(0.02)
        assert service.stats.malformed_messages > before
        assert service._router is not None and service._router.callback_errors == 0
    finally:
        dealer.close(linger=0)
        pub.close(linger=0)
        await service.stop()
