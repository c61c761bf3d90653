"""Dispatch of records through a ``Service`` with no sockets: the pure-Python cost per record.

The service is never started; its reader callbacks are called with the frames a ROUTER or SUB
would deliver, and the reply batches they produce are discarded instead of being sent.
"""

from __future__ import annotations

import msgspec
from pytest_benchmark.fixture import BenchmarkFixture

from zmsg import codec
from zmsg._framing import append_record
from zmsg.bench.workloads import SUM_PAYLOAD, UserCreated, event_payloads
from zmsg.protocol import KIND_EVENT, KIND_REQUEST
from zmsg.service import Service

IDENTITY = b"\x00k\x8bEg"


def _service() -> Service:
    service = Service("bench")

    @service.message_pattern({"cmd": "sum"})
    def total(data: list[int]) -> int:
        return sum(data)

    @service.event_pattern("user_created")
    def created(event: UserCreated) -> None:
        pass

    return service


def _batch(kind: int, pattern: bytes, body: bytes, n: int) -> bytes:
    buf = bytearray()
    for cid in range(1, n + 1):
        append_record(buf, kind, 0, cid if kind == KIND_REQUEST else 0, 10001 if kind == KIND_REQUEST else 0,
                      pattern, body)
    return bytes(buf)


def _request_bench(benchmark: BenchmarkFixture, n: int) -> None:
    service = _service()
    frames = [IDENTITY, _batch(KIND_REQUEST, codec.encode_pattern({"cmd": "sum"}), codec.encode(SUM_PAYLOAD), n)]
    on_message = service._on_request_message
    pending = service._pending

    def dispatch() -> None:
        on_message(frames)
        pending.clear()

    benchmark(dispatch)
    assert service.stats.replies > 0 and service.stats.errors_sent == 0


def test_dispatch_one_request(benchmark: BenchmarkFixture) -> None:
    """One request record: parse, decode, call the handler, encode the reply into a batch."""
    _request_bench(benchmark, 1)


def test_dispatch_batch_of_32_requests(benchmark: BenchmarkFixture) -> None:
    """A full client batch; divide by 32 for the per-record cost inside a batch."""
    _request_bench(benchmark, 32)


def test_dispatch_one_event(benchmark: BenchmarkFixture) -> None:
    service = _service()
    body = msgspec.msgpack.encode(event_payloads()[0])
    frames = [_batch(KIND_EVENT, b"user_created", body, 1)]
    benchmark(service._on_event_message, frames)
    assert service.stats.event_handler_errors == 0


def test_dispatch_batch_of_32_events(benchmark: BenchmarkFixture) -> None:
    service = _service()
    body = msgspec.msgpack.encode(event_payloads()[0])
    frames = [_batch(KIND_EVENT, b"user_created", body, 32)]
    benchmark(service._on_event_message, frames)
    assert service.stats.event_handler_errors == 0


def test_dispatch_batch_of_32_requests_with_metadata(benchmark: BenchmarkFixture) -> None:
    """The same batch, each record with a two-entry metadata section (what metadata costs)."""
    from zmsg.protocol import FLAG_METADATA, encode_metadata

    service = _service()
    body = encode_metadata({"authorization": "Bearer 0123456789abcdef", "traceparent": "00-abc-def-01"},
                           codec.encode(SUM_PAYLOAD))
    buf = bytearray()
    for cid in range(1, 33):
        append_record(buf, KIND_REQUEST, FLAG_METADATA, cid, 10001, codec.encode_pattern({"cmd": "sum"}), body)
    frames = [IDENTITY, bytes(buf)]
    pending = service._pending

    def dispatch() -> None:
        service._on_request_message(frames)
        pending.clear()

    benchmark(dispatch)
    assert service.stats.replies > 0 and service.stats.errors_sent == 0
