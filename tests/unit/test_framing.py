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
