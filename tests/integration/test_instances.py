"""Events with several instances, service side: topics filter at the emitter, flags pick handlers.

A raw pyzmq XPUB plays the emitter (docs/protocol.md, "Instances") so that the service's half of
the rule is tested on its own, over real sockets.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import zmq
import zmq.asyncio

import zmsg
from zmsg.protocol import FLAG_BROADCAST_ONLY, KIND_EVENT, BatchBuilder, instance_topic, read_subscription

pytestmark = pytest.mark.anyio


def _event(seq: int, flags: int = 0, pattern: bytes = b"user_created") -> list[bytes]:
    batch = BatchBuilder()
    batch.add(KIND_EVENT, flags, seq, 0x1234, pattern, msgspec.msgpack.encode(seq))
    return batch.take()


async def test_addressed_events_reach_one_instance_and_flags_pick_the_handlers() -> None:
    ran: list[tuple[str, int]] = []
    service = zmsg.Service("notify")

    @service.event_pattern("user_created")
    def welcome(seq: int) -> None:
        ran.append(("once", seq))

    @service.event_pattern("user_created", broadcast=True)
    def forget(seq: int) -> None:
        ran.append(("everywhere", seq))

    endpoint = await service.start("tcp://127.0.0.1:0")
    pub = zmq.asyncio.Context.instance().socket(zmq.XPUB)
    pub.setsockopt(zmq.XPUB_VERBOSER, 1)
    pub.setsockopt(zmq.LINGER, 0)
    try:
        async with zmsg.ClientProxy(endpoint) as client:
            hello = await client.send("$zmsg.hello")
        assert hello["instance"] == service.instance_id and len(hello["instance"]) == 16
        assert hello["broadcast"] == ["user_created"]
        pub.connect(service.events_endpoint)
        seen = set()
        while len(seen) < 2:  # the broadcast topic and this instance's topic
            assert await pub.poll(5000), "no subscription from the service"
            seen.add(read_subscription(await pub.recv()))
        assert seen == {(True, None), (True, service.instance_id)}

        mine, other = instance_topic(service.instance_id), instance_topic("f" * 16)
        await pub.send_multipart([other, *_event(1)])  # another instance's: filtered out by ZeroMQ
        await pub.send_multipart([mine, *_event(2)])  # chosen: every handler
        await pub.send_multipart([mine, *_event(3, FLAG_BROADCAST_ONLY)])  # a copy: broadcast handlers only
        await pub.send_multipart(_event(4))  # broadcast form (an emitter that does not address)
        for _ in range(500):
            if len(ran) >= 5:
                break
            await asyncio.sleep(0.01)
        assert sorted(ran) == [("everywhere", 2), ("everywhere", 3), ("everywhere", 4), ("once", 2), ("once", 4)]
        assert service.stats.events == 3 and service.stats.events_missed == 0
    finally:
        pub.close(linger=0)
        await service.stop()
