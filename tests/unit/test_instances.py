"""The sans-io rules for several instances of one service: topics and subscription messages."""

from __future__ import annotations

import pytest

from zmsg.protocol import (
    BROADCAST_TOPIC,
    INSTANCE_ID_LEN,
    BatchBuilder,
    event_batch_start,
    instance_topic,
    read_subscription,
)

ID = "0123456789abcdef"


def test_an_instance_topic_is_never_a_batch_nor_a_prefix_of_another() -> None:
    topic = instance_topic(ID)
    assert topic == b"\x00" + ID.encode() and len(topic) == 1 + INSTANCE_ID_LEN
    batch = BatchBuilder()
    batch.add(4, 0, 1, 7, b"e", b"\xc0")
    frames = batch.take()
    assert frames[0].startswith(BROADCAST_TOPIC)  # every batch starts with the version byte
    assert event_batch_start(frames) == 0
    assert event_batch_start([topic, *frames]) == 1
    with pytest.raises(ValueError):
        instance_topic("abc")


@pytest.mark.parametrize(("message", "expected"), [
    (b"\x01", (True, None)),  # an older service's everything subscription
    (b"\x01\x01", (True, None)),
    (b"\x00\x01", (False, None)),
    (b"\x01\x00" + ID.encode(), (True, ID)),
    (b"\x00\x00" + ID.encode(), (False, ID)),
    (b"\x01\x00abc", None),  # not one of zmsg's topics
    (b"\x02", None),
    (b"", None),
])
def test_subscription_messages_say_who_joined_or_left(message: bytes, expected: object) -> None:
    assert read_subscription(message) == expected
