"""Sans-io protocol core: batches, the in-flight table and deadlines, with bytes and numbers only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from zmsg import _fastframe, _fastframe_py, _framing, protocol
from zmsg.protocol import (
    EMPTY_METADATA,
    FLAG_EXTERNAL_BODY,
    FLAG_METADATA,
    KIND_EVENT,
    KIND_REPLY,
    KIND_REQUEST,
    BatchBuilder,
    InFlight,
)


@pytest.fixture(autouse=True, params=[_fastframe, _fastframe_py], ids=["cython", "python"])
def twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Every protocol test runs on both framing twins."""
    module: ModuleType = request.param
    for name in ("append_record", "append_external", "parse_frames", "encode_metadata", "decode_metadata"):
        monkeypatch.setattr(_framing, name, getattr(module, name))
    for name in ("parse_frames", "encode_metadata", "decode_metadata"):
        monkeypatch.setattr(protocol, name, getattr(module, name))
    yield module


def test_batch_builder_packs_many_records_into_one_message() -> None:
    batch = BatchBuilder()
    for cid in range(1, 33):
        batch.add(KIND_REQUEST, 0, cid, 1000, b"sum", b"\x91\x01")
    assert len(batch) == 32
    frames = batch.take()
    assert len(frames) == 1
    records = protocol.parse_frames(frames)
    assert [r[2] for r in records] == list(range(1, 33))
    assert len(batch) == 0 and batch.take() == [b""]


def test_large_bodies_travel_as_their_own_frames() -> None:
    batch = BatchBuilder(external_threshold=1024)
    big = bytes(range(256)) * 8
    batch.add(KIND_REPLY, 0, 1, 0, b"", big)
    batch.add(KIND_REPLY, 0, 2, 0, b"", b"small")
    frames = batch.take()
    assert len(frames) == 2 and frames[1] is big  # not copied into the batch
    records = protocol.parse_frames(frames)
    assert records[0][1] & FLAG_EXTERNAL_BODY and records[0][5] == big
    assert records[1][5] == b"small"


@pytest.mark.parametrize("size", [10, 5000])
def test_a_record_with_metadata_carries_its_section_at_the_start_of_its_body(size: int) -> None:
    """Inline or external, the section is the first bytes of the body; other records are untouched."""
    batch = BatchBuilder(external_threshold=1024)
    payload = b"p" * size
    batch.add(KIND_REQUEST, FLAG_METADATA, 7, 100, b"echo", protocol.encode_metadata({"trace": "abc"}, payload))
    batch.add(KIND_EVENT, 0, 1, 9, b"tick", b"\xc0")
    records = protocol.parse_frames(batch.take())
    kind, flags, cid, _ttl, pattern, body = records[0]
    assert (kind, cid, pattern) == (KIND_REQUEST, 7, b"echo") and flags & FLAG_METADATA
    metadata, rest = protocol.decode_metadata(body)
    assert metadata == {"trace": "abc"} and bytes(rest) == payload
    assert records[1] == (KIND_EVENT, 0, 1, 9, b"tick", b"\xc0")


def test_empty_metadata_is_shared_and_read_only() -> None:
    assert len(EMPTY_METADATA) == 0
    with pytest.raises(TypeError):
        EMPTY_METADATA["k"] = "v"  # type: ignore[index]


def test_inflight_resolves_each_id_once_and_counts_late_replies() -> None:
    table: InFlight[str] = InFlight()
    a, b = table.new_id(), table.new_id()
    assert a != b
    table.add(a, "A", deadline=10.0)
    table.add(b, "B", deadline=20.0)
    assert table.resolve(b) == "B"
    assert table.resolve(b) is None
    assert table.resolve(12345) is None
    assert table.late_replies == 2
    assert len(table) == 1 and a in table


def test_inflight_expiry_uses_the_injected_clock() -> None:
    table: InFlight[str] = InFlight()
    assert table.add(1, "one", deadline=5.0) is True  # earliest so far: caller arms its timer
    assert table.add(2, "two", deadline=9.0) is False
    assert table.add(3, "three", deadline=7.0) is False
    assert table.earliest_deadline == 5.0
    assert table.expire(4.9) == []
    assert table.expire(7.0) == [(1, "one"), (3, "three")]
    assert table.earliest_deadline == 9.0
    # A reply for an expired request is dropped and counted, never given to another request.
    assert table.resolve(1) is None and table.late_replies == 1
    assert table.resolve(2) == "two"
    assert table.earliest_deadline == 9.0 and table.expire(100.0) == []


def test_inflight_ids_wrap_without_ever_using_zero() -> None:
    table: InFlight[str] = InFlight()
    table._next_id = 2**64 - 2
    assert table.new_id() == 2**64 - 1
    assert table.new_id() == 1


def test_drain_returns_everything_in_flight() -> None:
    table: InFlight[int] = InFlight()
    for cid in (1, 2, 3):
        table.add(cid, cid * 10, deadline=1.0)
    assert sorted(table.drain()) == [(1, 10), (2, 20), (3, 30)]
    assert len(table) == 0 and table.earliest_deadline == float("inf")


@pytest.mark.parametrize("module", ["zmsg.protocol", "zmsg._framing", "zmsg.codec", "zmsg.errors", "zmsg.endpoints",
                                    "zmsg.defaults", "zmsg.event_sequence", "zmsg.client_core", "zmsg.config"])
def test_lower_layers_import_neither_zmq_nor_asyncio(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('zmq', 'asyncio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{module} pulled in {out.strip()}"
