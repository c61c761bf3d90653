"""The sans-io client core, driven with plain values and bytes: no socket, no loop, no clock."""

from __future__ import annotations

import pytest

from zmsg import codec
from zmsg.client_core import (
    EventStamper,
    Hello,
    LinkEvent,
    PeerLink,
    PeerState,
    call_timeout,
    check_one_service,
    check_size,
    client_options,
    pick_peer,
    read_hello,
    read_replies,
    reply_value,
    request_ttl_ms,
    retry_attempts,
    retry_delay,
)
from zmsg.errors import (
    AuthenticationFailed,
    MessageTooLarge,
    ProtocolError,
    RequestTimeout,
    RpcException,
    ServiceUnavailable,
)
from zmsg.protocol import KIND_ERROR, KIND_EVENT, KIND_REPLY, KIND_REQUEST, BatchBuilder, parse_frames


def _batch(*records: tuple[int, int, bytes]) -> list[bytes]:
    batch = BatchBuilder()
    for kind, cid, body in records:
        batch.add(kind, 0, cid, 0, b"", body)
    return batch.take()


def test_reply_and_error_records_become_a_value_or_the_exception() -> None:
    records, fault = read_replies(_batch((KIND_REPLY, 1, codec.encode({"a": 1})),
                                         (KIND_ERROR, 2, codec.encode({"status": 404, "message": "no"}))))
    assert fault is None
    kind, _flags, cid, _ttl, _pattern, body = records[0]
    assert reply_value(kind, cid, body) == {"a": 1}
    with pytest.raises(RpcException) as err:
        reply_value(KIND_ERROR, 2, records[1][5])
    assert err.value.error == {"status": 404, "message": "no"}


def test_undecodable_and_unexpected_records_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="undecodable reply"):
        reply_value(KIND_REPLY, 1, b"\xc1")
    with pytest.raises(ProtocolError, match="unexpected record kind 1"):
        reply_value(KIND_REQUEST, 1, b"")
    # an error object that is not even decodable is still one RpcException to catch
    with pytest.raises(RpcException) as err:
        reply_value(KIND_ERROR, 1, b"\xc1")
    assert err.value.status == 502


def test_a_malformed_message_keeps_the_records_before_the_fault_and_names_the_broken_request() -> None:
    frames = _batch((KIND_REPLY, 1, codec.encode(1)), (KIND_REPLY, 2, codec.encode(2)))
    whole = frames[0]
    cut = whole[: len(whole) - 1]  # the second record's body is one byte short
    records, fault = read_replies([cut])
    assert [r[2] for r in records] == [1]
    assert fault is not None and fault.correlation_id == 2


def test_request_ttl_rounds_up_and_never_overflows_the_header() -> None:
    assert request_ttl_ms(0.0001) == 1
    assert request_ttl_ms(2.5) == 2501
    assert request_ttl_ms(5e6) == 0  # "no deadline" rather than a wrong one
    batch = BatchBuilder()
    batch.add(KIND_REQUEST, 0, 1, request_ttl_ms(1e12), b"p", b"")
    assert parse_frames(batch.take(), 0)[0][3] == 0


def test_call_options() -> None:
    assert call_timeout(None, 3.0) == 3.0 and call_timeout(1, 3.0) == 1.0
    with pytest.raises(ValueError, match="positive"):
        call_timeout(0, 3.0)
    assert retry_attempts(None, False, 5) == 0  # never retried unless idempotent
    assert retry_attempts(None, True, 5) == 5 and retry_attempts(2, True, 5) == 2
    with pytest.raises(ValueError, match="idempotent"):
        retry_attempts(3, False, 0)
    assert retry_delay(1, 0.1, rand=1.0) == pytest.approx(0.2)
    assert retry_delay(30, 0.1, rand=1.0) == 2.0  # capped
    assert retry_delay(3, 0.1, rand=0.0) == 0.0  # full jitter reaches zero


def test_options_are_validated_with_the_name_in_the_message() -> None:
    assert client_options("P").timeout == 10.0
    with pytest.raises(ValueError, match=r"P: invalid flush_at=0"):
        client_options("P", flush_at=0)
    with pytest.raises(ValueError, match="timeout"):
        client_options("P", timeout="soon")


def test_size_limit() -> None:
    check_size(b"p", b"x" * 9, 10)
    with pytest.raises(MessageTooLarge, match="max_message_size=10"):
        check_size(b"p", b"x" * 10, 10)


def test_hello_is_read_checked_and_lowers_the_size_limit() -> None:
    hello = read_hello("tcp://h:1", {"service": "math", "events": "tcp://0.0.0.0:9", "max_message_size": 1000})
    assert (hello.service, hello.events) == ("math", "tcp://0.0.0.0:9")
    assert hello.limit(64 * 1024 * 1024) == 1000 and hello.limit(10) == 10
    with pytest.raises(ProtocolError, match="did not answer the zmsg handshake"):
        read_hello("tcp://h:1", {"service": "math"})
    with pytest.raises(ProtocolError):
        read_hello("tcp://h:1", [1, 2])
    assert read_hello("e", {"events": "x", "max_message_size": True}).max_message_size is None


def test_one_proxy_is_one_service() -> None:
    a = Hello("tcp://a:1", "math", "x", None, {})
    b = Hello("tcp://b:1", "math", "x", None, {})
    c = Hello("tcp://c:1", "users", "x", None, {})
    assert check_one_service([a, b]) == "math"
    with pytest.raises(ProtocolError, match="tcp://c:1 is 'users'"):
        check_one_service([a, c])


def test_events_are_numbered_per_emitter_in_the_id_and_ttl_fields() -> None:
    stamper = EventStamper(emitter_id=0xABC)
    batch = BatchBuilder()
    for _ in range(3):
        stamper.stamp(batch, b"e", b"\x01")
    records = parse_frames(batch.take(), 0)
    assert [(r[0], r[2], r[3]) for r in records] == [(KIND_EVENT, s, 0xABC) for s in (1, 2, 3)]
    assert 0 < EventStamper().emitter_id < 2**32


def test_peer_states_and_what_each_transition_fails() -> None:
    link = PeerLink("tcp://a:1")
    assert link.state is PeerState.CONNECTING and link.hello_stale
    assert link.on_event(LinkEvent.CONNECT_FAILED) is None
    assert link.state is PeerState.DOWN
    assert link.on_event(LinkEvent.CONNECTED) is None and link.state is PeerState.UP
    link.hello_stale = False
    lost = link.on_event(LinkEvent.DISCONNECTED)
    assert isinstance(lost, ServiceUnavailable) and link.state is PeerState.DOWN and link.hello_stale
    assert link.disconnects == 1
    link.on_event(LinkEvent.DISCONNECTED)  # ZeroMQ may report the same loss twice
    assert link.disconnects == 1
    refused = link.on_event(LinkEvent.AUTH_FAILED)
    assert isinstance(refused, AuthenticationFailed) and link.failure is refused and link.state is PeerState.REFUSED
    link.on_event(LinkEvent.CONNECTED)
    assert link.failure is None


def test_requests_go_to_connected_peers_then_to_unknown_ones_then_anywhere() -> None:
    links = [PeerLink(f"tcp://h:{i}") for i in range(3)]
    picks = []
    last = 0
    for _ in range(3):
        last = pick_peer(links, last)
        picks.append(last)
    assert sorted(picks) == [0, 1, 2]  # all unknown: plain round-robin
    links[0].on_event(LinkEvent.CONNECTED)
    links[1].on_event(LinkEvent.CONNECT_FAILED)
    assert {pick_peer(links, i) for i in range(3)} == {0}
    links[0].on_event(LinkEvent.DISCONNECTED)
    assert {pick_peer(links, i) for i in range(3)} == {2}  # the one not known to be down
    links[2].on_event(LinkEvent.CONNECT_FAILED)
    assert pick_peer(links, 0) == 1  # every one down: round-robin, ZeroMQ queues until one is back


# -- metadata, typed replies, client middleware -----------------------------------------------


def test_call_metadata_wins_over_the_proxy_defaults_which_stay_untouched() -> None:
    from zmsg.client_core import merge_metadata

    defaults = {"tenant": "t1", "authorization": "Bearer default"}
    assert merge_metadata(defaults, {"authorization": "Bearer call"}) == {"tenant": "t1", "authorization": "Bearer call"}
    assert defaults == {"tenant": "t1", "authorization": "Bearer default"}
    merged = merge_metadata(defaults, None)
    assert merged == defaults and merged is not defaults  # a middleware may add to it
    assert merge_metadata(None, None) is None and merge_metadata({}, {}) is None
    with pytest.raises(TypeError, match="must be str"):
        merge_metadata(None, {"k": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="mapping"):
        merge_metadata(None, [("k", "v")])  # type: ignore[arg-type]


def test_a_record_has_a_metadata_section_only_when_there_is_metadata() -> None:
    from zmsg.client_core import with_metadata
    from zmsg.protocol import FLAG_METADATA, decode_metadata

    assert with_metadata(b"\xc0", None) == (0, b"\xc0")
    assert with_metadata(b"\xc0", {}) == (0, b"\xc0")
    flags, body = with_metadata(b"\xc0", {"k": "v"})
    assert flags == FLAG_METADATA
    metadata, payload = decode_metadata(body)
    assert metadata == {"k": "v"} and bytes(payload) == b"\xc0"


def test_typed_reply_decoders_are_built_once_per_type_and_name_the_bad_field() -> None:
    import msgspec

    from zmsg.client_core import reply_decoder
    from zmsg.errors import ReplyValidationError

    class Invoice(msgspec.Struct):
        id: int
        total: float

    decoder = reply_decoder(Invoice)
    assert reply_decoder(Invoice) is decoder and reply_decoder(list[int]) is reply_decoder(list[int])
    assert reply_decoder(None) is None
    assert reply_value(KIND_REPLY, 1, codec.encode({"id": 1, "total": 2.5}), decoder) == Invoice(1, 2.5)
    with pytest.raises(ReplyValidationError, match=r"Invoice.*\$\.total"):
        reply_value(KIND_REPLY, 1, codec.encode({"id": 1, "total": "x"}), decoder)
    with pytest.raises(ProtocolError, match="undecodable reply"):
        reply_value(KIND_REPLY, 1, b"\xc1", decoder)
    with pytest.raises(RpcException):  # an error record is not decoded as the reply type
        reply_value(KIND_ERROR, 1, codec.encode("no"), decoder)
    with pytest.raises(TypeError, match="response_type"):
        reply_decoder(object())


def test_metadata_is_a_declared_client_option_checked_against_the_wire_limits() -> None:
    assert client_options("X", metadata={"k": "v"}).metadata == {"k": "v"}
    assert client_options("X").metadata is None
    with pytest.raises(ValueError, match="invalid metadata"):
        client_options("X", metadata={"k": 1})
    with pytest.raises(ValueError, match="invalid metadata: .*keys are 1 to 255 bytes"):
        client_options("X", metadata={"": "v"})


def test_sync_client_middleware_chain_runs_outermost_first() -> None:
    from zmsg.client_core import Call
    from zmsg.pipeline import check_sync_middleware, run_chain_sync

    order: list[str] = []

    def outer(call: Call, call_next: object) -> object:
        order.append("outer")
        call.metadata["trace"] = "t"
        return ["outer", *call_next()]  # type: ignore[operator]

    def inner(call: Call, call_next: object) -> object:
        order.append(f"inner {call.metadata}")
        return call_next()  # type: ignore[operator]

    call = Call("request", "p", 1, None)
    assert run_chain_sync((outer, inner), call, lambda: ["sent"]) == ["outer", "sent"]
    assert order == ["outer", "inner {'trace': 't'}"]
    assert run_chain_sync((), call, lambda: "direct") == "direct"

    async def not_sync(call: Call, call_next: object) -> None:
        return None

    with pytest.raises(TypeError, match="plain function"):
        check_sync_middleware(not_sync)


def test_only_a_refusal_the_service_did_not_run_is_sent_again() -> None:
    from zmsg.client_core import not_run, resend_after

    refused = RpcException(codec.refusal_object(429, "Too many unread replies"))
    assert not_run(refused)
    # A handler's own 429 (a rate limit, say) may have had effects: it is an answer.
    assert not not_run(RpcException({"status": 429, "message": "slow down"}))
    assert not not_run(RpcException({"status": 429, "not_run": "yes"}))
    assert not not_run(RpcException("not_run"))
    assert not not_run(RequestTimeout("late"))
    assert resend_after(RpcException({"status": 429}), 1, 10.0) is None
    # Short, doubling, jittered waits, capped; never past the call's remaining time.
    assert resend_after(refused, 1, 10.0, rand=1.0) == pytest.approx(0.002)
    assert resend_after(refused, 3, 10.0, rand=1.0) == pytest.approx(0.008)
    assert resend_after(refused, 30, 10.0, rand=1.0) == pytest.approx(0.05)
    assert resend_after(refused, 1, 10.0, rand=0.0) == 0.0
    assert resend_after(refused, 30, 0.04, rand=1.0) is None
    assert resend_after(refused, 1, 0.0005, rand=0.0) is None
    assert resend_after(refused, 1, 0.011, rand=0.0) == 0.0
    assert resend_after(refused, 1, 0.009, rand=0.0) is None  # too little time for an answer


def test_a_batch_goes_at_once_when_full_large_or_a_quarter_of_a_small_window() -> None:
    from zmsg.client_core import LARGE_MESSAGE, SMALL_WINDOW, send_batch_now
    from zmsg.protocol import FLUSH_EXTERNAL_BYTES

    small = 2 * 1024
    assert send_batch_now(1, 64, 0, 1, 32)  # a sequential caller: nothing to batch with
    assert send_batch_now(1, LARGE_MESSAGE, 0, 1, 32)
    assert send_batch_now(32, small, 0, 64, 32)  # full
    assert send_batch_now(1, 64, FLUSH_EXTERNAL_BYTES, 64, 32)  # large bodies pipeline, not batch
    assert not send_batch_now(1, small, 0, 8, 32) and send_batch_now(2, small, 0, 8, 32)  # a quarter of 8
    assert not send_batch_now(3, small, 0, 16, 32) and send_batch_now(4, small, 0, 16, 32)
    # past libzmq's 8 KiB batch, half the window: fewer, larger messages
    assert not send_batch_now(2, LARGE_MESSAGE, 0, 8, 32) and not send_batch_now(3, 3 * LARGE_MESSAGE, 0, 8, 32)
    assert send_batch_now(4, 4 * LARGE_MESSAGE, 0, 8, 32)
    assert not send_batch_now(16, small, 0, SMALL_WINDOW + 1, 32)  # larger windows batch to flush_at
    assert not send_batch_now(16, 16 * LARGE_MESSAGE, 0, SMALL_WINDOW + 1, 32)
    assert not send_batch_now(31, small, 0, 64, 32)


def test_a_call_is_encoded_once_for_every_client() -> None:
    from zmsg.client_core import encode_call
    from zmsg.protocol import FLAG_METADATA

    assert encode_call({"b": 1, "a": 2}, [1], None, 100) == (b'{"a":2,"b":1}', 0, codec.encode([1]))
    assert encode_call(b"raw", None, None, 100) == (b"raw", 0, b"\xc0")  # route bytes pass through
    route, flags, body = encode_call("p", 1, {"k": "v"}, 100)
    assert route == b"p" and flags == FLAG_METADATA and body.endswith(codec.encode(1))
    with pytest.raises(MessageTooLarge):
        encode_call("p", b"x" * 200, None, 100)


def test_a_refusal_halves_the_send_window_once_per_round_trip() -> None:
    from zmsg.client_core import SendWindow

    window = SendWindow(1000)
    window.replied(5000)
    assert window.limit == 1000 and window.cuts == 0  # never refused: the ceiling, untouched
    window.cut(300, in_flight=511, last_id=512)
    assert window.limit == 256 and window.cuts == 1  # half of what was out, not of the ceiling
    window.cut(301, in_flight=500, last_id=520)
    window.cut(512, in_flight=500, last_id=520)
    assert window.limit == 256 and window.cuts == 1  # sent before the cut: the same event
    window.cut(513, in_flight=255, last_id=600)
    assert window.limit == 128 and window.cuts == 2  # sent after it: the limit was still too high
    for cid in range(601, 620):
        window.cut(cid, in_flight=0, last_id=cid)
    assert window.limit == 1  # never below one request


def test_refusals_are_ordered_by_correlation_ids_across_their_wrap() -> None:
    from zmsg.client_core import SendWindow

    top = (1 << 64) - 1
    window = SendWindow(100)
    window.cut(top - 5, in_flight=63, last_id=top)
    assert window.limit == 32
    window.cut(top, in_flight=63, last_id=2)  # at the cut: the same event
    assert window.limit == 32
    window.cut(1, in_flight=31, last_id=3)  # after the wrap, sent after the cut
    assert window.limit == 16


def test_the_send_window_closes_half_the_gap_per_window_of_replies_then_probes_up_to_the_ceiling() -> None:
    from zmsg.client_core import SendWindow

    window = SendWindow(200)
    window.cut(1, in_flight=127, last_id=128)
    assert window.limit == 64
    window.replied(63)
    assert window.limit == 64  # not yet a window's worth
    seen = []
    while window.limit < 200:
        window.replied(window.limit)
        seen.append(window.limit)
    assert seen[:7] == [96, 112, 120, 124, 126, 127, 128]  # back towards where refusals began
    assert seen[7:15] == [129, 130, 131, 132, 133, 134, 135, 136]  # past it, one at a time,
    assert seen[15:] == [138, 142, 150, 166, 198, 200]  # then in doubling steps, capped
    window.replied(10_000)
    assert window.limit == 200


def test_the_send_window_grows_only_while_callers_are_held_by_it() -> None:
    from zmsg.client_core import SendWindow

    window = SendWindow(1000)
    window.cut(1, in_flight=99, last_id=100)
    window.replied(10_000, limited=False)  # fewer out than allowed: nothing learned
    assert window.limit == 50
    window.replied(50, limited=True)
    assert window.limit == 75
