"""The sans-io stream rules on plain values and bytes: credit records, a stream's states and window."""

from __future__ import annotations

import sys

import msgspec
import pytest

from zmsg import codec
from zmsg.errors import ProtocolError, ReplyValidationError, RequestTimeout, RpcException, ServiceUnavailable
from zmsg.protocol import (
    FLAG_STREAM,
    KIND_CREDIT,
    KIND_ERROR,
    KIND_EVENT,
    KIND_NAMES,
    KIND_REPLY,
    KIND_REQUEST,
    KIND_STREAM_END,
    KIND_STREAM_ITEM,
    BatchBuilder,
    parse_frames,
)
from zmsg.stream_core import (
    END,
    MAX_CREDIT,
    ClientStream,
    StreamState,
    add_credit,
    credit_body,
    open_stream,
    read_credit,
)

ITEM = codec.encode


def _items(stream: ClientStream) -> list[object]:
    out = []
    while stream.ready:
        value = stream.next_item()
        if value is END:
            break
        out.append(value)
    return out


def test_the_kinds_are_fixed_numbers() -> None:
    assert (KIND_STREAM_ITEM, KIND_STREAM_END, KIND_CREDIT) == (5, 6, 9)
    assert KIND_NAMES[KIND_CREDIT] == "credit"
    assert FLAG_STREAM == 0x0008  # bit 3; bit 2 is FLAG_BROADCAST_ONLY (events)


def test_opening_a_stream_is_a_flagged_request_then_its_first_credit() -> None:
    batch = BatchBuilder()
    open_stream(batch, 7, 1500, b"count", ITEM(3), 256)
    add_credit(batch, 7, 128)
    records = parse_frames(batch.take())
    assert [(k, f, cid, ttl, p) for k, f, cid, ttl, p, _b in records] == [
        (KIND_REQUEST, FLAG_STREAM, 7, 1500, b"count"), (KIND_CREDIT, 0, 7, 0, b""), (KIND_CREDIT, 0, 7, 0, b"")]
    assert [read_credit(records[1][5]), read_credit(records[2][5])] == [256, 128]
    assert records[1][5] == b"\xcd\x01\x00"  # MessagePack uint16 256: what another language sends


@pytest.mark.parametrize("body", [ITEM(0), ITEM(-1), ITEM(MAX_CREDIT + 1), ITEM(1.5), ITEM("3"), ITEM(True),
                                  ITEM(None), b"", b"\xc1"])
def test_a_credit_that_is_not_a_positive_u32_is_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_credit(body)


def test_credit_round_trips_over_its_range() -> None:
    for count in (1, 127, 128, 65535, 65536, MAX_CREDIT):
        assert read_credit(credit_body(count)) == count


def test_items_then_end() -> None:
    stream = ClientStream(1, b"p", 8)
    assert not stream.ready
    for i in range(3):
        stream.on_record(KIND_STREAM_ITEM, ITEM(i), i + 1)
    assert stream.buffered == 3
    stream.on_record(KIND_STREAM_END, b"")
    assert stream.state is StreamState.ENDED
    assert _items(stream) == [0, 1, 2]
    assert stream.next_item() is END
    assert stream.close() is False  # over at the service: no cancel


def test_a_plain_reply_is_the_only_item() -> None:
    stream = ClientStream(1, b"p", 8)
    stream.on_record(KIND_REPLY, ITEM(42))
    assert _items(stream) == [42]
    assert stream.state is StreamState.ENDED


def test_an_error_comes_after_the_items_already_received() -> None:
    stream = ClientStream(1, b"p", 8)
    stream.on_record(KIND_STREAM_ITEM, ITEM("a"), 1)
    stream.on_record(KIND_ERROR, ITEM({"status": 409, "message": "no"}))
    assert stream.next_item() == "a"
    with pytest.raises(RpcException) as caught:
        stream.next_item()
    assert caught.value.error == {"status": 409, "message": "no"}
    assert stream.close() is False


def test_credit_is_granted_every_half_window_consumed() -> None:
    stream = ClientStream(1, b"p", 8)
    grants = []
    for i in range(20):
        stream.on_record(KIND_STREAM_ITEM, ITEM(i), i + 1)
        assert stream.next_item() == i
        grants.append(stream.credit_due())
    assert grants == [0, 0, 0, 4] * 5
    assert ClientStream(1, b"p", 1)._half == 1  # a window of one still moves


def test_items_beyond_the_credit_fail_the_stream_and_it_is_cancelled() -> None:
    stream = ClientStream(1, b"p", 4)
    assert [stream.on_record(KIND_STREAM_ITEM, ITEM(i), i + 1) for i in range(6)] == [True] * 4 + [False] * 2
    assert stream.ready
    with pytest.raises(ProtocolError, match="more items"):
        stream.next_item()
    assert stream.close() is True  # the service is still streaming: tell it to stop
    assert stream.state is StreamState.CANCELLED


@pytest.mark.parametrize("kind", [KIND_CREDIT, KIND_EVENT, KIND_REQUEST, 200])
def test_a_record_of_another_kind_fails_the_stream(kind: int) -> None:
    stream = ClientStream(1, b"p", 4)
    assert stream.on_record(kind, b"") is False
    with pytest.raises(ProtocolError, match="unexpected record kind"):
        stream.next_item()
    assert stream.close() is True


def test_an_undecodable_item_raises_a_protocol_error() -> None:
    stream = ClientStream(1, b"p", 4)
    stream.on_record(KIND_STREAM_ITEM, b"\xc1", 1)
    with pytest.raises(ProtocolError, match="undecodable"):
        stream.next_item()


def test_items_are_decoded_into_the_response_type() -> None:
    stream = ClientStream(1, b"p", 4, msgspec.msgpack.Decoder(int))
    stream.on_record(KIND_STREAM_ITEM, ITEM(3), 1)
    stream.on_record(KIND_STREAM_ITEM, ITEM("x"), 2)
    assert stream.next_item() == 3
    with pytest.raises(ReplyValidationError, match="Expected `int`"):
        stream.next_item()


def test_a_local_timeout_keeps_the_stream_open_at_the_service() -> None:
    stream = ClientStream(1, b"p", 4)
    stream.fail(RequestTimeout("slow"), service_gone=False)
    assert stream.ready
    with pytest.raises(RequestTimeout):
        stream.next_item()
    assert stream.close() is True


def test_a_lost_service_delivers_what_arrived_then_raises() -> None:
    stream = ClientStream(1, b"p", 4)
    stream.on_record(KIND_STREAM_ITEM, ITEM(1), 1)
    stream.fail(ServiceUnavailable("gone"), service_gone=True)
    assert stream.next_item() == 1
    with pytest.raises(ServiceUnavailable):
        stream.next_item()
    assert stream.close() is False
    assert stream.credit_due() == 0


def test_records_after_the_end_are_dropped_and_counted() -> None:
    stream = ClientStream(1, b"p", 4)
    assert stream.on_record(KIND_STREAM_END, b"") is True
    assert stream.on_record(KIND_STREAM_ITEM, ITEM(1)) is False
    stream.close()
    assert stream.on_record(KIND_STREAM_ITEM, ITEM(2)) is False
    assert stream.unexpected == 2
    assert stream.next_item() is END


def test_an_item_out_of_sequence_means_items_were_lost() -> None:
    stream = ClientStream(1, b"p", 8)
    assert stream.on_record(KIND_STREAM_ITEM, ITEM(0), 1) is True
    assert stream.on_record(KIND_STREAM_ITEM, ITEM(3), 4) is False  # 2 and 3 never came
    with pytest.raises(ProtocolError, match="lost items: item 4 arrived after 1"):
        stream.next_item()
    assert stream.close() is True


def test_the_sequence_wraps_at_32_bits() -> None:
    stream = ClientStream(1, b"p", 8)
    stream._seq = MAX_CREDIT - 1
    assert stream.on_record(KIND_STREAM_ITEM, ITEM(0), MAX_CREDIT) is True
    assert stream.on_record(KIND_STREAM_ITEM, ITEM(1), 0) is True


def test_the_window_is_bounded() -> None:
    with pytest.raises(ValueError):
        ClientStream(1, b"p", 0)
    with pytest.raises(ValueError):
        ClientStream(1, b"p", MAX_CREDIT + 1)


def test_the_stream_core_imports_neither_zmq_nor_asyncio() -> None:
    import subprocess

    code = "import sys, zmsg.stream_core; print('zmq' in sys.modules, 'asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_take_gives_the_item_and_the_credit_a_driver_sends_with_it() -> None:
    from zmsg.protocol import KIND_CREDIT, parse_frames
    from zmsg.stream_core import credit_message, read_credit

    stream = ClientStream(5, b"p", window=4)
    for seq in (1, 2):
        stream.on_record(KIND_STREAM_ITEM, codec.encode(seq), seq)
    assert stream.take() == (1, 0)
    assert stream.take() == (2, 2)  # half the window consumed: grant it
    stream.on_record(KIND_STREAM_END, b"", 0)
    assert stream.take() == (END, 0)
    [(kind, _flags, cid, _ttl, _pattern, body)] = parse_frames(credit_message(5, 2), 0)
    assert (kind, cid, read_credit(body)) == (KIND_CREDIT, 5, 2)
