"""Header pack/unpack and batch building/parsing, compiled twin against pure-Python twin."""

from __future__ import annotations

from types import ModuleType

from pytest_benchmark.fixture import BenchmarkFixture

PATTERN = b'{"cmd":"sum"}'
BODY = b"\x9a\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a"  # msgpack of [1..10]
BATCH = 32  # the client's flush size: a full batch of requests


def test_pack_header(benchmark: BenchmarkFixture, ff: ModuleType) -> None:
    benchmark(ff.pack_header, 1, 0, 123456, 10001, len(PATTERN), len(BODY))


def test_unpack_header(benchmark: BenchmarkFixture, ff: ModuleType) -> None:
    header = ff.pack_header(1, 0, 123456, 10001, len(PATTERN), len(BODY))
    benchmark(ff.unpack_header, header)


def test_build_batch_of_32(benchmark: BenchmarkFixture, ff: ModuleType) -> None:
    append = ff.append_record

    def build() -> bytes:
        buf = bytearray()
        for cid in range(1, BATCH + 1):
            append(buf, 1, 0, cid, 10001, PATTERN, BODY)
        return bytes(buf)

    assert len(benchmark(build)) == BATCH * (ff.HEADER_SIZE + len(PATTERN) + len(BODY))


def test_parse_batch_of_32(benchmark: BenchmarkFixture, ff: ModuleType) -> None:
    buf = bytearray()
    for cid in range(1, BATCH + 1):
        ff.append_record(buf, 1, 0, cid, 10001, PATTERN, BODY)
    frames = [b"identity", bytes(buf)]
    assert len(benchmark(ff.parse_frames, frames, 1)) == BATCH


def test_parse_batch_with_external_body(benchmark: BenchmarkFixture, ff: ModuleType) -> None:
    big = bytes(64 * 1024)
    buf = bytearray()
    ff.append_external(buf, 1, 0, 1, 0, b'{"cmd":"echo"}', len(big))
    frames = [bytes(buf), big]
    assert len(benchmark(ff.parse_frames, frames, 0)) == 1
