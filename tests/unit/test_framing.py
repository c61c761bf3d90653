"""The framing twins: every test runs on the compiled module and on the pure-Python one."""

from __future__ import annotations

import importlib
import os
import struct
from types import ModuleType

import pytest
from hypothesis import given, settings, strategies as st

from zmsg import _fastframe_py
from zmsg._framing import IMPLEMENTATION
from zmsg.errors import FrameError

compiled = importlib.import_module("zmsg._fastframe")
TWINS = [pytest.param(compiled, id="cython"), pytest.param(_fastframe_py, id="python")]


@pytest.fixture(params=TWINS)
def ff(request: pytest.FixtureRequest) -> ModuleType:
    return request.param


def test_compiled_extension_is_the_default_after_install() -> None:
    """A normal install builds and selects the Cython module (unless explicitly opted out)."""
    assert compiled.__file__.endswith((".so", ".pyd")), compiled.__file__
    if os.environ.get("ZMSG_NO_EXTENSIONS", "") in ("", "0"):
        assert IMPLEMENTATION == "cython"


def test_header_layout_is_the_documented_one(ff: ModuleType) -> None:
    header = ff.pack_header(1, 0x0102, 0x1122334455667788, 5000, 7, 300)
    assert header == struct.pack("<BBHIQIHH", 1, 1, 0x0102, 300, 0x1122334455667788, 5000, 7, 0)
    assert len(header) == ff.HEADER_SIZE == 24
    assert ff.unpack_header(header) == (1, 1, 0x0102, 300, 0x1122334455667788, 5000, 7)


def test_batch_of_records_round_trips(ff: ModuleType) -> None:
    buf = bytearray()
    ff.append_record(buf, 1, 0, 1, 100, b"sum", b"\x93\x01\x02\x03")
    ff.append_record(buf, 4, 0, 0, 0, b"user_created", b"")
    ff.append_record(buf, 2, 0, 2**64 - 1, 0, b"", b"x" * 1000)
    assert ff.parse_frames([bytes(buf)]) == [
        (1, 0, 1, 100, b"sum", b"\x93\x01\x02\x03"),
        (4, 0, 0, 0, b"user_created", b""),
        (2, 0, 2**64 - 1, 0, b"", b"x" * 1000),
    ]


def test_external_bodies_come_from_the_following_frames(ff: ModuleType) -> None:
    buf = bytearray()
    big = b"B" * 70000
    ff.append_external(buf, 1, 0, 9, 0, b"echo", len(big))
    ff.append_record(buf, 1, 0, 10, 0, b"echo", b"small")
    records = ff.parse_frames([b"identity", bytes(buf), big], 1)
    assert records[0][:5] == (1, ff.FLAG_EXTERNAL_BODY, 9, 0, b"echo") and bytes(records[0][5]) == big
    assert records[1] == (1, 0, 10, 0, b"echo", b"small")


def test_the_batch_frame_may_be_any_buffer_and_patterns_come_back_as_bytes(ff: ModuleType) -> None:
    """BatchBuilder.take hands over a bytearray, a zero-copy receive gives a zmq.Frame (an event
    batch after its topic frame): both twins parse them like bytes, and a record's pattern is
    bytes (a dict key for routing) whatever the input. A divergence here once made the pure
    twin's service drop every addressed event."""
    import zmq

    buf = bytearray()
    ff.append_record(buf, 4, 0, 1, 7, b"user_created", b"\x01")
    expected = [(4, 0, 1, 7, b"user_created", b"\x01")]
    for batch in (bytes(buf), bytearray(buf), memoryview(bytes(buf)), zmq.Frame(bytes(buf))):
        records = ff.parse_frames([b"\x00topic", batch], 1)
        assert [tuple(bytes(x) if isinstance(x, (bytearray, memoryview)) else x for x in r) for r in records] == expected
        assert type(records[0][4]) is bytes


def test_external_bodies_may_be_zeromq_frames(ff: ModuleType) -> None:
    """The transport receives external bodies as zmq.Frame (no copy): parsed and length-checked
    like bytes, handed on as they are, and decodable straight from the frame's buffer."""
    import msgspec
    import zmq

    body = msgspec.msgpack.encode(b"F" * 50000)
    buf = bytearray()
    ff.append_external(buf, 2, 0, 5, 0, b"", len(body))
    frame = zmq.Frame(body)
    records = ff.parse_frames([bytes(buf), frame])
    assert records[0][:5] == (2, ff.FLAG_EXTERNAL_BODY, 5, 0, b"") and records[0][5] is frame
    assert msgspec.msgpack.Decoder(bytes).decode(records[0][5]) == b"F" * 50000
    with pytest.raises(FrameError, match="external body is"):
        ff.parse_frames([bytes(buf), zmq.Frame(body[:-1])])


def test_parse_accepts_any_buffer(ff: ModuleType) -> None:
    buf = bytearray()
    ff.append_record(buf, 2, 0, 3, 0, b"p", b"body")
    assert ff.parse_frames([memoryview(bytes(buf))]) == [(2, 0, 3, 0, b"p", b"body")]
    assert ff.parse_frames([bytearray(buf)]) == [(2, 0, 3, 0, b"p", b"body")]


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([], "no batch frame"),
        ([b""], "empty batch"),
        ([b"\x01\x01"], "truncated header"),
        ([struct.pack("<BBHIQIHH", 9, 1, 0, 0, 5, 0, 0, 0)], "unsupported protocol version 9"),
        ([struct.pack("<BBHIQIHH", 1, 1, 0, 0, 5, 0, 0, 7)], "reserved header field"),
        ([struct.pack("<BBHIQIHH", 1, 1, 0, 0, 5, 0, 10, 0) + b"abc"], "pattern length 10"),
        ([struct.pack("<BBHIQIHH", 1, 1, 0, 2**32 - 1, 5, 0, 0, 0)], "body length 4294967295"),
        ([struct.pack("<BBHIQIHH", 1, 1, 1, 10, 5, 0, 0, 0)], "external body frame that is missing"),
        ([struct.pack("<BBHIQIHH", 1, 1, 1, 10, 5, 0, 0, 0), b"short"], "external body is 5 bytes"),
        ([struct.pack("<BBHIQIHH", 1, 1, 0, 0, 5, 0, 0, 0), b"extra"], "unexpected extra frame"),
    ],
)
def test_malformed_batches_are_rejected_with_a_clear_error(ff: ModuleType, frames: list[bytes], message: str) -> None:
    with pytest.raises(FrameError, match=message):
        ff.parse_frames(frames)


def test_records_before_a_fault_are_kept_and_the_faulty_id_reported(ff: ModuleType) -> None:
    buf = bytearray()
    ff.append_record(buf, 1, 0, 1, 0, b"ok", b"1")
    bad = struct.pack("<BBHIQIHH", 1, 1, 0, 50, 77, 0, 0, 0) + b"short"
    with pytest.raises(FrameError) as info:
        ff.parse_frames([bytes(buf) + bad])
    assert info.value.records == [(1, 0, 1, 0, b"ok", b"1")]
    assert info.value.correlation_id == 77


@pytest.mark.parametrize(
    "fields",
    [(256, 0, 0, 0, 0, 0), (0, 65536, 0, 0, 0, 0), (0, 0, 2**64, 0, 0, 0), (0, 0, -1, 0, 0, 0),
     (0, 0, 0, 2**32, 0, 0), (0, 0, 0, 0, 65536, 0), (0, 0, 0, 0, 0, 2**32)],
)
def test_out_of_range_header_fields_are_refused(ff: ModuleType, fields: tuple[int, ...]) -> None:
    with pytest.raises((ValueError, OverflowError)):
        ff.pack_header(*fields)


def test_pattern_longer_than_the_header_allows_is_refused(ff: ModuleType) -> None:
    with pytest.raises((ValueError, OverflowError)):
        ff.append_record(bytearray(), 1, 0, 1, 0, b"p" * 70000, b"")


records_strategy = st.lists(
    st.tuples(
        st.integers(0, 255),
        st.integers(0, 0xFFFF).map(lambda f: f & ~1),
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=300),
        st.binary(max_size=3000),
    ),
    min_size=1,
    max_size=20,
)


@given(records=records_strategy)
@settings(max_examples=200, deadline=None)
def test_property_round_trip_and_twins_agree(records: list[tuple[int, int, int, int, bytes, bytes]]) -> None:
    built = []
    for twin in (compiled, _fastframe_py):
        buf = bytearray()
        for kind, flags, cid, ttl, pattern, body in records:
            twin.append_record(buf, kind, flags, cid, ttl, pattern, body)
        built.append(bytes(buf))
        assert twin.parse_frames([bytes(buf)]) == records
    assert built[0] == built[1]


@given(data=st.binary(max_size=400))
@settings(max_examples=500, deadline=None)
def test_property_garbage_never_crashes_and_twins_agree(data: bytes) -> None:
    outcomes = []
    for twin in (compiled, _fastframe_py):
        try:
            outcomes.append(("ok", twin.parse_frames([data])))
        except FrameError as exc:
            outcomes.append(("error", str(exc), exc.records, exc.correlation_id))
    assert outcomes[0] == outcomes[1]


# -- metadata sections -------------------------------------------------------------------------


def test_metadata_section_layout_is_the_documented_one(ff: ModuleType) -> None:
    body = ff.encode_metadata({"authorization": "Bearer x", "é": "ü"}, b"\xc0")
    entries = b"\x0dauthorization" + struct.pack("<H", 8) + b"Bearer x"
    entries += b"\x02\xc3\xa9" + struct.pack("<H", 2) + "ü".encode()
    assert body == struct.pack("<H", len(entries)) + entries + b"\xc0"
    metadata, payload = ff.decode_metadata(body)
    assert metadata == {"authorization": "Bearer x", "é": "ü"}
    assert bytes(payload) == b"\xc0"
    assert ff.FLAG_METADATA == 0x0002 and ff.MAX_METADATA_LEN == 65535


def test_metadata_decodes_from_any_buffer_without_copying_the_payload(ff: ModuleType) -> None:
    body = bytearray(ff.encode_metadata({"k": ""}, b"payload"))
    metadata, payload = ff.decode_metadata(body)
    assert metadata == {"k": ""}
    assert isinstance(payload, memoryview) and payload.obj is body
    assert ff.decode_metadata(ff.encode_metadata({}, memoryview(b"xy"))) == ({}, b"xy")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "truncated metadata section"),
        (b"\x05\x00abc", "metadata section length 5 exceeds"),
        (b"\x01\x00\x00", "empty metadata key"),
        (b"\x03\x00\x05abc", "truncated metadata entry"),
        (b"\x05\x00\x01a\x05\x00x", "truncated metadata entry"),
        (b"\x04\x00\x01\xff\x00\x00", "not valid UTF-8"),
        (b"\x08\x00\x01a\x00\x00\x01a\x00\x00", "duplicate metadata key 'a'"),
    ],
)
def test_malformed_metadata_sections_are_rejected(ff: ModuleType, body: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        ff.decode_metadata(body)


@pytest.mark.parametrize(
    ("metadata", "error", "message"),
    [
        ({1: "a"}, TypeError, "must be str"),
        ({"a": 1}, TypeError, "must be str"),
        ({"": "a"}, ValueError, "keys are 1 to 255 bytes"),
        ({"k" * 256: "a"}, ValueError, "keys are 1 to 255 bytes"),
        ({"k": "v" * 65533}, ValueError, "over the limit of 65535"),
        ({f"k{i}": "v" * 1000 for i in range(70)}, ValueError, "over the limit of 65535"),
    ],
)
def test_metadata_the_wire_cannot_carry_is_refused(ff: ModuleType, metadata: dict[object, object], error: type,
                                                   message: str) -> None:
    with pytest.raises(error, match=message):
        ff.encode_metadata(metadata, b"")


def test_the_largest_metadata_section_fits(ff: ModuleType) -> None:
    metadata = {"k": "v" * (65535 - 4)}
    assert ff.decode_metadata(ff.encode_metadata(metadata))[0] == metadata


metadata_strategy = st.dictionaries(
    st.text(min_size=1, max_size=20).filter(lambda k: len(k.encode()) <= 255),  # st.text has no surrogates
    st.text(max_size=200),
    max_size=12,
)


@given(metadata=metadata_strategy, payload=st.binary(max_size=500))
@settings(max_examples=300, deadline=None)
def test_property_metadata_round_trips_and_twins_agree(metadata: dict[str, str], payload: bytes) -> None:
    built = [twin.encode_metadata(metadata, payload) for twin in (compiled, _fastframe_py)]
    assert built[0] == built[1]
    for twin in (compiled, _fastframe_py):
        decoded, rest = twin.decode_metadata(built[0])
        assert decoded == metadata and list(decoded) == list(metadata)
        assert bytes(rest) == payload


@given(data=st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_property_garbage_metadata_never_crashes_and_twins_agree(data: bytes) -> None:
    outcomes = []
    for twin in (compiled, _fastframe_py):
        try:
            metadata, rest = twin.decode_metadata(data)
            outcomes.append(("ok", metadata, bytes(rest)))
        except FrameError as exc:
            outcomes.append(("error", str(exc)))
    assert outcomes[0] == outcomes[1]
