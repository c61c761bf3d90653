"""msgspec encode/decode through zmsg.codec, with the bench workloads' payloads."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from zmsg import codec
from zmsg.bench.workloads import SUM_PAYLOAD, UserCreated, echo_payload, event_payloads

EVENT = event_payloads()[0]
PAYLOADS = {"sum": SUM_PAYLOAD, "event": EVENT, "bulk64k": echo_payload(64 * 1024)}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_encode(benchmark: BenchmarkFixture, name: str) -> None:
    benchmark(codec.encode, PAYLOADS[name])


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_decode_untyped(benchmark: BenchmarkFixture, name: str) -> None:
    body = codec.encode(PAYLOADS[name])
    assert benchmark(codec.decode, body) == PAYLOADS[name]


def test_decode_typed_event(benchmark: BenchmarkFixture) -> None:
    decoder = codec.typed_decoder(UserCreated)
    body = codec.encode(EVENT)
    assert benchmark(codec.decode_with, decoder, body).userId == EVENT["userId"]


def test_encode_pattern_dict(benchmark: BenchmarkFixture) -> None:
    benchmark(codec.encode_pattern, {"cmd": "sum"})


def test_encode_pattern_str(benchmark: BenchmarkFixture) -> None:
    benchmark(codec.encode_pattern, "user_created")
