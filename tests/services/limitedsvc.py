"""A service with tight limits: one handler at a time, 1 MiB messages, a slow event handler."""

from __future__ import annotations

import asyncio
import time

import zmsg

# event_hwm=2: the service queues little, so a slow handler pushes back on the emitter quickly.
service = zmsg.Service("limited", max_concurrency=1, max_message_size=1024 * 1024, event_hwm=2)

started: list[float] = []
running = 0
peak = 0
attempts: dict[str, int] = {}
events_seen = 0


@service.message_pattern("hold")
async def hold(seconds: float) -> float:
    global running, peak
    started.append(seconds)
    running += 1
    peak = max(peak, running)
    try:
        await asyncio.sleep(seconds)
    finally:
        running -= 1
    return seconds


@service.message_pattern("started")
def list_started() -> dict[str, object]:
    return {"started": started, "peak": peak}


@service.message_pattern("flaky_once")
async def flaky_once(key: str) -> int:
    """Slow on the first attempt for a key (the caller times out), fast afterwards."""
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] == 1:
        await asyncio.sleep(30)
    return attempts[key]


@service.message_pattern("attempts")
def count_attempts(key: str) -> int:
    return attempts.get(key, 0)


@service.message_pattern("size")
def size(blob: bytes) -> int:
    return len(blob)


@service.event_pattern("tick")
def slow_tick(data: bytes) -> None:
    global events_seen
    time.sleep(0.0002)
    events_seen += 1


@service.message_pattern("ticks")
def ticks() -> dict[str, object]:
    return {"seen": events_seen, "missed": service.stats.events_missed}
