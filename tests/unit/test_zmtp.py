"""ZMTP 3.1 (NULL) codec, sans I/O: greeting, commands, frames, and the reader's buffering.

The byte layouts are checked against RFC 23/37 directly (and, in the integration tests, against
libzmq itself): a frame header is one flags byte (MORE 0x01, LONG 0x02, COMMAND 0x04) and a
size of one byte, or eight big-endian bytes when LONG.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from zmsg.zmtp import (
    GREETING_SIZE,
    LARGE_FRAME,
    LARGE_READ_START,
    READ_SIZE,
    Reader,
    ZmtpError,
    command,
    greeting,
    message_chunks,
    parse_command,
    parse_greeting,
    parse_properties,
    ping_command,
    pong_command,
    ready_command,
)


def _peer_greeting(mechanism: bytes = b"NULL", major: int = 3, minor: int = 1) -> bytes:
    return b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([major, minor]) + mechanism.ljust(20, b"\x00") + b"\x01" + b"\x00" * 31


def _wire(frames: list[bytes]) -> bytes:
    return b"".join(bytes(chunk) for chunk in message_chunks(frames))


def _messages(items: list[tuple[Any, ...]]) -> list[list[bytes]]:
    return [[bytes(f) for f in item[1]] for item in items if item[0] == "message"]


def test_greeting_layout() -> None:
    g = greeting()
    assert len(g) == GREETING_SIZE == 64
    assert g[0] == 0xFF and g[9] == 0x7F and g[10:12] == b"\x03\x01"
    assert g[12:32] == b"NULL" + b"\x00" * 16
    assert g[32] == 0  # as-server: no (a client)
    assert parse_greeting(g) == (3, 1)


@pytest.mark.parametrize(("data", "match"), [
    (b"GET / HTTP/1.1\r\n" + b"\x00" * 48, "does not speak ZMTP"),
    (_peer_greeting(major=2), "ZMTP 2"),
    (_peer_greeting(b"PLAIN"), "PLAIN"),
    (b"\xff" * 10, "need 64"),
])
def test_bad_greetings_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(ZmtpError, match=match):
        parse_greeting(data)


def test_a_curve_service_is_an_auth_failure() -> None:
    with pytest.raises(ZmtpError, match="CURVE") as info:
        parse_greeting(_peer_greeting(b"CURVE"))
    assert info.value.auth


def test_frame_headers_short_and_long() -> None:
    assert _wire([b"ab"]) == b"\x00\x02ab"
    assert _wire([b"a", b"b"]) == b"\x01\x01a\x00\x01b"
    big = b"x" * 300
    assert _wire([big]) == b"\x02" + struct.pack(">Q", 300) + big
    assert _wire([big, b""]) == b"\x03" + struct.pack(">Q", 300) + big + b"\x00\x00"
    # memoryviews of any item size are measured in bytes
    assert _wire([memoryview(b"abcd").cast("I")]) == b"\x00\x04abcd"


def test_commands() -> None:
    ready = ready_command(b"DEALER", {b"Identity": b""})
    assert ready[0] == 0x04  # a short command frame
    name, data = parse_command(ready[2:])
    assert name == b"READY"
    assert parse_properties(data) == {b"socket-type": b"DEALER", b"identity": b""}
    ping = ping_command(30.0, b"ctx")
    assert parse_command(ping[2:]) == (b"PING", b"\x01\x2cctx")  # TTL in tenths of a second
    assert parse_command(ping_command(1e9)[2:])[1][:2] == b"\xff\xff"  # clamped, never wrapped
    assert parse_command(pong_command(b"ctx")[2:]) == (b"PONG", b"ctx")
    long_command = command(b"X", b"y" * 300)
    assert long_command[0] == 0x06 and len(long_command) == 9 + 1 + 1 + 300


@pytest.mark.parametrize("data", [b"\x0bSocket", b"\x02ab\x00\x00\x00\x09xy"])
def test_truncated_properties_are_refused(data: bytes) -> None:
    with pytest.raises(ZmtpError):
        parse_properties(data)


def test_reader_greeting_then_commands_and_messages() -> None:
    reader = Reader()
    stream = _peer_greeting() + ready_command(b"ROUTER") + _wire([b"h", b"body"]) + ping_command(3, b"c")
    items = reader.feed(stream)
    assert items[0][:2] == ("command", b"READY")
    assert parse_properties(items[0][2])[b"socket-type"] == b"ROUTER"
    assert _messages(items) == [[b"h", b"body"]]
    assert items[2] == ("command", b"PING", b"\x00\x1ec")


def test_reader_refuses_a_non_zmtp_peer_early() -> None:
    with pytest.raises(ZmtpError, match="does not speak ZMTP"):
        Reader().feed(b"HTTP/1.1 400 Bad Request\r\n")


@pytest.mark.parametrize(("frame", "match"), [
    (b"\x08\x00", "reserved"),
    (b"\x05\x02ab", "MORE"),
])
def test_reader_refuses_malformed_frames(frame: bytes, match: str) -> None:
    reader = Reader()
    reader.feed(_peer_greeting())
    with pytest.raises(ZmtpError, match=match):
        reader.feed(frame)


def test_a_command_between_two_frames_of_a_message_is_handled_and_the_message_goes_on() -> None:
    # libzmq's heartbeat timer sends its PING between any two frames it writes (seen at 64 x
    # 16 KiB with external bodies: a reply of 65 frames interrupted by the service's PING).
    reader = Reader()
    reader.feed(_peer_greeting())
    big = b"b" * (LARGE_FRAME + 5)
    big_more = b"\x03" + struct.pack(">Q", len(big)) + big  # a long frame, MORE set
    items = reader.feed(b"\x01\x01a" + ping_command(1, b"p1") + big_more + pong_command(b"x") + b"\x00\x01z")
    assert items[0] == ("command", b"PING", b"\x00\x0ap1")
    assert items[1] == ("command", b"PONG", b"x")
    assert _messages(items) == [[b"a", big, b"z"]]


def test_max_message_size_is_checked_before_the_body_arrives() -> None:
    reader = Reader(max_message_size=1000)
    reader.feed(_peer_greeting())
    assert _messages(reader.feed(_wire([b"x" * 600, b"y" * 400]))) == [[b"x" * 600, b"y" * 400]]
    with pytest.raises(ZmtpError, match="1000"):
        reader.feed(b"\x02" + struct.pack(">Q", 1001))  # the header alone is enough


def test_an_absurd_size_is_refused_without_a_limit() -> None:
    reader = Reader()
    reader.feed(_peer_greeting())
    with pytest.raises(ZmtpError, match="more than"):
        reader.feed(b"\x02" + struct.pack(">Q", 1 << 62))


def test_large_frames_come_out_uncopied_in_their_own_buffer() -> None:
    reader = Reader()
    reader.feed(_peer_greeting())
    big = bytes(range(256)) * (LARGE_FRAME // 256 * 3)
    items = reader.feed(_wire([b"head", big]) + _wire([b"next"]))
    frames = items[0][1]
    assert type(frames[0]) is bytes and type(frames[1]) is bytearray
    assert frames[1] == big
    assert _messages(items) == [[b"head", big], [b"next"]]


def test_the_reader_hands_out_the_large_frame_itself_to_fill() -> None:
    # What a BufferedProtocol transport does: write where buffer() says, report received(n).
    reader = Reader()
    reader.received(_fill(reader, _peer_greeting()))
    size = 5 * LARGE_FRAME
    header = b"\x02" + struct.pack(">Q", size)
    reader.received(_fill(reader, header + b"a" * 100))
    target = reader.buffer()
    assert len(target) == size - 100  # the frame's own buffer, exactly what is still missing
    target[:] = b"b" * (size - 100)
    items = reader.received(size - 100)
    assert _messages(items) == [[b"a" * 100 + b"b" * (size - 100)]]


def test_after_a_large_frame_the_next_read_starts_short() -> None:
    # So that little of the next large body lands in the shared buffer (and is copied out).
    reader = Reader()
    reader.feed(_peer_greeting())
    assert len(reader.buffer()) == READ_SIZE
    reader.feed(_wire([b"h", b"x" * LARGE_FRAME]))
    assert len(reader.buffer()) == LARGE_READ_START < READ_SIZE
    reader.feed(_wire([b"small"]))
    assert len(reader.buffer()) == READ_SIZE


def _fill(reader: Reader, data: bytes) -> int:
    target = reader.buffer()
    target[:len(data)] = data
    return len(data)


def test_a_small_read_buffer_is_compacted_not_grown() -> None:
    reader = Reader()
    reader.feed(_peer_greeting())
    frame = _wire([b"z" * 1000])
    for _ in range(2000):  # 2 MB through a 256 KiB buffer, frames straddling its end
        assert _messages(reader.feed(frame[:7])) == []
        assert _messages(reader.feed(frame[7:])) == [[b"z" * 1000]]
        assert len(reader.buffer()) >= LARGE_FRAME


# Large frames from a short random pattern: hypothesis draws kilobytes of entropy badly.
large_frames = st.tuples(st.binary(min_size=1, max_size=8), st.integers(LARGE_FRAME, LARGE_FRAME + 600)).map(
    lambda t: (t[0] * (t[1] // len(t[0]) + 1))[:t[1]])
frame_data = st.one_of(st.binary(max_size=300), large_frames)


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(st.lists(frame_data, min_size=1, max_size=4), min_size=1, max_size=5),
       cuts=st.lists(st.integers(min_value=1, max_value=70_000), max_size=12))
def test_any_messages_cut_anywhere_round_trip(messages: list[list[bytes]], cuts: list[int]) -> None:
    stream = _peer_greeting() + ready_command(b"ROUTER") + b"".join(_wire(m) for m in messages)
    reader = Reader()
    out: list[tuple[Any, ...]] = []
    pos = 0
    for cut in cuts:
        out += reader.feed(stream[pos:pos + cut])
        pos += cut
    out += reader.feed(stream[pos:])
    assert out[0][:2] == ("command", b"READY")
    assert _messages(out) == messages
