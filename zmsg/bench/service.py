"""The service ``zmsg bench`` measures: ``zmsg serve zmsg.bench.service:service``.

It serves exactly the patterns the workloads use; a service measured with
``zmsg bench --endpoint`` must serve the same ones (simplest: serve this module there):

- ``{"cmd": "sum"}``: list[int] -> int (W1, W2)
- ``{"cmd": "echo"}``: bytes -> the same bytes (W4, sweep)
- event ``user_created``: decoded into ``UserCreated`` and counted (W3)
- ``{"cmd": "stream"}``: n -> a stream of the items 0..n-1 (W5, W6)
- ``{"cmd": "bench_stats"}``: -> ``{"user_created": count, "framing": "cython" | "python"}``,
  how the emitter learns how many events arrived (so losses are measured, not assumed)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zmsg import _framing
from zmsg.bench.workloads import (
    ECHO_PATTERN,
    EVENT_PATTERN,
    STATS_PATTERN,
    STREAM_PATTERN,
    SUM_PATTERN,
    UserCreated,
)
from zmsg.service import Service

__all__ = ["service"]

service = Service("bench")
_seen = {"user_created": 0}


@service.message_pattern(SUM_PATTERN)
def total(data: list[int]) -> int:
    return sum(data)


@service.message_pattern(ECHO_PATTERN)
def echo(data: bytes) -> bytes:
    return data


@service.message_pattern(STREAM_PATTERN)
def stream(n: int) -> Iterator[int]:
    yield from range(n)


@service.event_pattern(EVENT_PATTERN)
def count_user(event: UserCreated) -> None:
    _seen["user_created"] += 1


@service.message_pattern(STATS_PATTERN)
def stats() -> dict[str, Any]:
    return {"user_created": _seen["user_created"], "framing": _framing.IMPLEMENTATION}
