"""Registering handlers: what a Service accepts at decoration time and what it refuses."""

from __future__ import annotations

import msgspec
import pytest

import zmsg


def test_a_message_pattern_has_exactly_one_responder() -> None:
    service = zmsg.Service("s")

    @service.message_pattern({"cmd": "sum"})
    def first(data: list[int]) -> int:
        return sum(data)

    with pytest.raises(ValueError, match="already has a message handler"):

        @service.message_pattern({"cmd": "sum"})
        def second(data: list[int]) -> int:
            return 0


def test_an_event_pattern_may_have_many_handlers() -> None:
    service = zmsg.Service("s")
    for _ in range(3):
        service.event_pattern("e")(lambda data: None)
    assert service.event_patterns == ["e"]


def test_reserved_patterns_are_refused() -> None:
    service = zmsg.Service("s")
    with pytest.raises(ValueError, match="reserved"):
        service.message_pattern("$zmsg.health")(lambda: None)


def test_handlers_take_one_payload_plus_an_optional_context() -> None:
    service = zmsg.Service("s")
    with pytest.raises(TypeError, match="one payload"):

        @service.message_pattern("two")
        def two(a: int, b: int) -> int:
            return a + b

    @service.message_pattern("ok")
    def ok(ctx: zmsg.Context, data: int, flag: bool = False) -> int:
        return data

    assert service.message_patterns == ["ok"]


class Payload(msgspec.Struct):
    x: int


def test_include_binds_marked_controller_methods() -> None:
    class Controller:
        @zmsg.message_pattern({"cmd": "x"})
        def get(self, p: Payload) -> int:
            return p.x

        @zmsg.event_pattern("happened")
        async def on_event(self, p: Payload) -> None:
            return None

        def not_a_handler(self) -> None:
            return None

    service = zmsg.Service("s")
    service.include(Controller())
    assert service.message_patterns == ['{"cmd":"x"}']
    assert service.event_patterns == ["happened"]
    with pytest.raises(ValueError, match="no @message_pattern"):
        service.include(object())


def test_patterns_must_be_str_or_dict() -> None:
    with pytest.raises(TypeError):
        zmsg.message_pattern(42)  # type: ignore[arg-type]


def test_service_needs_a_name() -> None:
    with pytest.raises(ValueError):
        zmsg.Service("")


@pytest.mark.parametrize("endpoint", ["127.0.0.1:5555", "tcp://127.0.0.1", "tcp://127.0.0.1:99999", "udp://x:1"])
def test_malformed_endpoints_are_refused_clearly(endpoint: str) -> None:
    with pytest.raises(zmsg.EndpointError, match="malformed endpoint"):
        zmsg.ClientProxy(endpoint)


def test_unresolvable_annotations_are_reported_at_registration() -> None:
    service = zmsg.Service("s")
    with pytest.raises(TypeError, match="cannot resolve the type hints"):

        @service.message_pattern("x")
        def handler(data: NoSuchType) -> None:  # type: ignore[name-defined] # noqa: F821
            return None


def test_event_sequences_detect_gaps_and_can_be_restored() -> None:
    service = zmsg.Service("seq")
    seen: list[tuple[int, str]] = []

    @service.event_pattern("e")
    def on_event(data: int, ctx: zmsg.Context) -> None:
        seen.append((ctx.correlation_id, ctx.peer))

    for seq in (1, 2, 5, 4, 6):
        service._dispatch_event(b"e", b"\x01", seq, 0xABC)
    # 3 and 4 went missing; 4 then arrived late, so only 3 stays counted
    assert service.stats.events_missed == 1 and service.event_gaps == {0xABC: 1}
    assert service.stats.events_out_of_order == 1
    assert seen[0] == (1, "00000abc")
    restarted = zmsg.Service("seq")
    restarted.restore_event_sequences(service.event_sequences)
    restarted._dispatch_event(b"e", b"\x01", 9, 0xABC)
    assert restarted.stats.events_missed == 2  # 7 and 8 never reached either process


def test_late_arrivals_inside_a_gap_are_no_longer_counted_missed() -> None:
    service = zmsg.Service("late")
    for seq in (1, 2, 10, 11):
        service._dispatch_event(b"e", b"\x01", seq, 7)
    assert service.stats.events_missed == 7  # 3..9
    for seq in (3, 9, 5):  # still buffered on the old connection, handled now
        service._dispatch_event(b"e", b"\x01", seq, 7)
    assert service.stats.events_missed == 4 and service.event_gaps == {7: 4}
    assert service._gaps.gaps[7] == [[4, 4], [6, 8]]
    service._dispatch_event(b"e", b"\x01", 2, 7)  # not in a gap: out of order, not "found"
    assert service.stats.events_missed == 4


def test_broadcast_event_handlers_are_declared_on_the_service_and_module_level() -> None:
    service = zmsg.Service("s")

    @service.event_pattern("cache_flush", broadcast=True)
    def flush(data: object) -> None: ...

    @service.event_pattern("user_created")
    def welcome(data: object) -> None: ...

    class Controller:
        @zmsg.event_pattern({"evt": "moved"}, broadcast=True)
        def moved(self, data: object) -> None: ...

        @zmsg.event_pattern({"evt": "moved"})
        def once(self, data: object) -> None: ...

    service.include(Controller())
    assert service.broadcast_patterns == ['cache_flush', '{"evt":"moved"}']
    assert service.event_patterns == ['cache_flush', 'user_created', '{"evt":"moved"}']
