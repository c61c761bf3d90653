"""The sans-io rules for several instances of one service: topics and subscription messages."""

from __future__ import annotations

import pytest

from zmsg.client_core import EventRouter, Hello, hello_instance, instance_endpoints
from zmsg.protocol import (
    BROADCAST_TOPIC,
    FLAG_BROADCAST_ONLY,
    INSTANCE_ID_LEN,
    BatchBuilder,
    event_batch_start,
    instance_topic,
    parse_frames,
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

A, B, C = "a" * 16, "b" * 16, "c" * 16


def _records(frames: list[bytes]) -> list[tuple[int, int, bytes]]:
    """(flags, sequence, pattern) of an addressed message's records."""
    return [(flags, seq, pattern) for _k, flags, seq, _e, pattern, _b in parse_frames(frames, event_batch_start(frames))]


def test_each_event_goes_to_one_subscribed_instance_round_robin_per_pattern() -> None:
    router = EventRouter(emitter_id=7)
    router.set_instances([("tcp://h:1", A, frozenset()), ("tcp://h:2", B, frozenset()), ("tcp://h:3", C, frozenset())])
    up = {A, C}  # B is away: never chosen, nothing queued for it
    chosen = []
    for route in (b"x", b"y", b"x", b"y", b"x"):
        grown = router.route(route, b"\xc0", up)
        assert grown is not None and len(grown) == 1
        chosen.append((route, grown[0].instance_id))
    assert chosen == [(b"x", A), (b"y", A), (b"x", C), (b"y", C), (b"x", A)]
    a = router.routes["tcp://h:1"]
    frames = a.take()
    assert frames[0] == instance_topic(A)
    assert _records(frames) == [(0, 1, b"x"), (0, 2, b"y"), (0, 3, b"x")]  # numbered per instance
    assert router.route(b"x", b"\xc0", set()) is None  # nobody subscribed: the caller waits, then fails


def test_broadcast_copies_go_to_every_instance_that_declared_them() -> None:
    router = EventRouter(emitter_id=7)
    router.set_instances([("tcp://h:1", A, frozenset({b"flush"})), ("tcp://h:2", B, frozenset({b"flush"}))])
    grown = router.route(b"flush", b"\xc0", {A, B})
    assert grown is not None and {r.instance_id for r in grown} == {A, B}
    flags = {r.instance_id: _records(r.take())[0][0] for r in grown}
    assert sorted(flags.values()) == [0, FLAG_BROADCAST_ONLY]  # one runs every handler, the other the broadcast ones
    assert router.route(b"flush", b"\xc0", {A}) is None  # B would miss its broadcast handler: wait for it


def test_a_restarted_instance_keeps_its_endpoints_sequence_under_a_new_id() -> None:
    router = EventRouter(emitter_id=7)
    router.set_instances([("tcp://h:1", A, frozenset())])
    router.route(b"x", b"\xc0", {A})
    router.set_instances([("tcp://h:1", B, frozenset())])
    grown = router.route(b"x", b"\xc0", {B})
    assert grown is not None
    frames = grown[0].take()
    assert frames[0] == instance_topic(B) and [seq for _f, seq, _p in _records(frames)] == [1, 2]


def test_a_hello_names_its_instance_and_the_endpoints_of_its_siblings() -> None:
    info = {"service": "s", "events": "tcp://0.0.0.0:9", "instance": A, "broadcast": ["flush"],
            "instances": ["tcp://0.0.0.0:5555", "tcp://0.0.0.0:6000", 42, "bogus"]}
    hello = Hello("tcp://10.0.0.5:5555", "s", info["events"], None, info)
    assert instance_endpoints(hello) == ["tcp://10.0.0.5:5555", "tcp://10.0.0.5:6000"]  # our host, their ports
    assert hello_instance(hello) == (A, frozenset({b"flush"}))
    older = Hello("tcp://h:1", "s", "tcp://h:2", None, {"service": "s", "events": "tcp://h:2"})
    assert hello_instance(older) is None and instance_endpoints(older) == []


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("tcp://users.default.svc:5555", ("users.default.svc", 5555)),
    ("tcp://localhost:1", ("localhost", 1)),
    ("tcp://10.0.0.1:5555", None),
    ("tcp://[::1]:5555", None),
    ("tcp://*:5555", None),
    ("ipc:///tmp/x", None),
])
def test_which_endpoints_name_hosts_to_resolve(endpoint: str, expected: object) -> None:
    from zmsg.client_core import name_to_resolve

    assert name_to_resolve(endpoint) == expected


def test_a_name_with_several_addresses_becomes_one_endpoint_each() -> None:
    from zmsg.client_core import resolved_endpoints

    assert resolved_endpoints(5555, ["10.0.0.1", "10.0.0.2", "10.0.0.1", "fd00::3"]) == [
        "tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555", "tcp://[fd00::3]:5555"]


def test_an_events_own_flags_travel_with_every_copy() -> None:
    from zmsg.protocol import FLAG_METADATA

    router = EventRouter(emitter_id=7)
    router.set_instances([("tcp://h:1", A, frozenset({b"flush"})), ("tcp://h:2", B, frozenset({b"flush"}))])
    grown = router.route(b"flush", b"\xc0", {A, B}, FLAG_METADATA)
    assert grown is not None
    flags = sorted(_records(r.take())[0][0] for r in grown)
    assert flags == [FLAG_METADATA, FLAG_METADATA | FLAG_BROADCAST_ONLY]
