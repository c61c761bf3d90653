"""The benchmark workloads W1-W6, fixed so results compare across versions and machines.

Both sides of a run (zmsg and the raw pyzmq baseline) take their payloads, counts and metric
definitions from here, so a ratio always compares the same work. A ``Job`` is one workload run
by one client process; a result is a plain dict of measured numbers (JSON-ready).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

__all__ = [
    "WORKLOADS",
    "Workload",
    "Job",
    "UserCreated",
    "SUM_PATTERN",
    "ECHO_PATTERN",
    "STATS_PATTERN",
    "EVENT_PATTERN",
    "STREAM_PATTERN",
    "stream_split",
    "SUM_PAYLOAD",
    "SUM_RESULT",
    "DEFAULT_IN_FLIGHT",
    "DEFAULT_PAYLOAD_SIZE",
    "event_payloads",
    "echo_payload",
    "percentile",
    "latency_summary",
    "make_result",
]

# The patterns the bench service serves (and an --endpoint service must serve).
SUM_PATTERN: dict[str, str] = {"cmd": "sum"}
ECHO_PATTERN: dict[str, str] = {"cmd": "echo"}
STATS_PATTERN: dict[str, str] = {"cmd": "bench_stats"}
EVENT_PATTERN = "user_created"
STREAM_PATTERN: dict[str, str] = {"cmd": "stream"}  # n -> the items 0..n-1, one small int each

SUM_PAYLOAD: list[int] = list(range(1, 11))
SUM_RESULT = sum(SUM_PAYLOAD)
DEFAULT_IN_FLIGHT = 64
DEFAULT_PAYLOAD_SIZE = 64 * 1024
# Distinct event payloads cycled by the emitter: realistic (not one cached object) and cheap to index.
EVENT_POOL_SIZE = 1024


class UserCreated(msgspec.Struct):
    """The W3 event body, decoded (and so validated) by the handler on the service side."""

    userId: str  # noqa: N815 - the wire name the issue fixes
    email: str


@dataclass(frozen=True)
class Workload:
    """What one workload measures and how its headline ratio reads."""

    key: str
    title: str
    count: int
    warmup: int
    metric: str  # the headline metric in a result dict
    unit: str
    higher_is_better: bool
    target: float  # the ratio target (zmsg/raw), >= when higher is better, <= otherwise
    in_flight: int | None  # None: strictly sequential


WORKLOADS: dict[str, Workload] = {
    "W1": Workload("W1", "latency", 20_000, 2_000, "p50_us", "us", False, 1.3, None),
    "W2": Workload("W2", "throughput", 200_000, 2_000, "rate", "replies/s", True, 3.0, DEFAULT_IN_FLIGHT),
    "W3": Workload("W3", "events", 500_000, 2_000, "rate", "events/s", True, 2.0, None),
    "W4": Workload("W4", "bulk", 20_000, 500, "mb_per_s", "MB/s", True, 0.9, DEFAULT_IN_FLIGHT),
    # Streams: items/s received from one stream, and from 64 concurrent streams (count = all items).
    "W5": Workload("W5", "stream", 1_000_000, 10_000, "rate", "items/s", True, 2.0, None),
    "W6": Workload("W6", "streams", 1_000_000, 10_000, "rate", "items/s", True, 2.0, DEFAULT_IN_FLIGHT),
}


@dataclass
class Job:
    """One workload for one client process. ``op`` is "sum", "echo" or "events"."""

    workload: str
    op: str
    count: int
    warmup: int
    in_flight: int = 1
    payload_size: int = 0
    duration: float | None = None  # when set, run for this many seconds instead of ``count``
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stream_split(count: int, streams: int) -> list[int]:
    """How many items each of ``streams`` concurrent streams carries: ``count`` in all."""
    streams = max(1, min(streams, count))
    return [count // streams + (1 if i < count % streams else 0) for i in range(streams)]


def event_payloads() -> list[dict[str, str]]:
    """The W3 bodies: a 36-character id (a UUID's text form) and the fixed e-mail address."""
    return [{"userId": str(uuid.UUID(int=i + 1)), "email": "user123@example.com"} for i in range(EVENT_POOL_SIZE)]


def echo_payload(size: int) -> bytes:
    """A payload of ``size`` bytes for the echo workloads (not all zeros, so nothing is special-cased)."""
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def latency_summary(latencies_ns: list[int]) -> dict[str, float]:
    """p50, p99 and mean of per-request latencies, in microseconds."""
    if not latencies_ns:
        return {}
    values = sorted(latencies_ns)
    return {
        "p50_us": percentile(values, 50) / 1000,
        "p99_us": percentile(values, 99) / 1000,
        "mean_us": sum(values) / len(values) / 1000,
    }


def make_result(job: Job, completed: int, elapsed_s: float, latencies_ns: list[int] | None = None,
                **extra: Any) -> dict[str, Any]:
    """The measured numbers of one job. MB/s counts each payload once (10**6 bytes per MB)."""
    rate = completed / elapsed_s if elapsed_s > 0 else 0.0
    result: dict[str, Any] = {"count": completed, "elapsed_s": elapsed_s, "rate": rate}
    if job.payload_size:
        result["payload_size"] = job.payload_size
        result["mb_per_s"] = rate * job.payload_size / 1e6
    if job.in_flight:
        result["in_flight"] = job.in_flight
    if latencies_ns:
        result.update(latency_summary(latencies_ns))
    result.update(extra)
    if "cpu_s" in extra and completed:
        result["client_cpu_us_per_op"] = extra["cpu_s"] / completed * 1e6
    return result
