"""The zmsg side of the workloads, as a user would write it: ``ClientProxy.send`` and ``emit``.

Throughput runs ``in_flight`` caller coroutines, each awaiting its own ``send()`` in turn (no
gather of pre-built requests), so every request pays the full per-call cost a real caller pays.
Events are emitted from one coroutine; how many arrived is asked of the service afterwards.
Streams run ``in_flight`` ``async for`` loops at once over ``client.stream``, each checking its
items' order, as a caller would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from zmsg.bench.workloads import (
    ECHO_PATTERN,
    EVENT_PATTERN,
    STATS_PATTERN,
    STREAM_PATTERN,
    SUM_PATTERN,
    SUM_PAYLOAD,
    SUM_RESULT,
    Job,
    echo_payload,
    event_payloads,
    make_result,
    stream_split,
)
from zmsg.client import ClientProxy

__all__ = ["run_job", "run_sync_job"]

Progress = Callable[[int, int], None]
_REPORT_EVERY_NS = 250_000_000


def _work(job: Job) -> tuple[Any, Any, Any]:
    if job.op == "sum":
        return SUM_PATTERN, SUM_PAYLOAD, SUM_RESULT
    payload = echo_payload(job.payload_size)
    return ECHO_PATTERN, payload, len(payload)


async def _requests(client: ClientProxy, job: Job, count: int, progress: Progress | None) -> dict[str, Any]:
    pattern, payload, expect = _work(job)
    is_sum = job.op == "sum"
    latencies: list[int] = []
    record = latencies.append
    state = {"left": count if job.duration is None else 1 << 62}
    perf = time.perf_counter_ns
    send = client.send

    async def caller() -> None:
        while state["left"] > 0:
            state["left"] -= 1
            t0 = perf()
            reply = await send(pattern, payload)
            record(perf() - t0)
            if (reply if is_sum else len(reply)) != expect:
                raise RuntimeError(f"service answered {reply!r:.40}, expected {expect!r}")

    loop = asyncio.get_running_loop()
    stopper = None
    if job.duration is not None:
        stopper = loop.call_later(job.duration, state.__setitem__, "left", 0)
    reporter = _reporter(lambda: len(latencies), count if job.duration is None else 0, progress)
    cpu0 = time.process_time()  # every thread of this process, ZeroMQ I/O included
    start = perf()
    try:
        await asyncio.gather(*(caller() for _ in range(max(1, job.in_flight))))
    finally:
        elapsed = (perf() - start) / 1e9
        reporter.cancel()
        if stopper is not None:
            stopper.cancel()
    return make_result(job, len(latencies), elapsed, latencies, cpu_s=time.process_time() - cpu0)


def _reporter(done: Callable[[], int], total: int, progress: Progress | None) -> asyncio.Task[None]:
    async def report() -> None:
        while progress is not None:
            await asyncio.sleep(_REPORT_EVERY_NS / 1e9)
            progress(done(), total)

    return asyncio.ensure_future(report())


async def _streams(client: ClientProxy, job: Job, count: int, progress: Progress | None) -> dict[str, Any]:
    parts = stream_split(count, job.in_flight)
    done = [0] * len(parts)

    async def one(index: int, n: int) -> None:
        expect = 0
        async for item in client.stream(STREAM_PATTERN, n):
            if item != expect:
                raise RuntimeError(f"stream {index} out of order at item {expect}: {item!r:.40}")
            expect += 1
            if not expect & 4095:
                done[index] = expect
        done[index] = expect

    reporter = _reporter(lambda: sum(done), count, progress)
    perf = time.perf_counter_ns
    cpu0 = time.process_time()
    start = perf()
    try:
        await asyncio.gather(*(one(i, n) for i, n in enumerate(parts)))
    finally:
        elapsed = (perf() - start) / 1e9
        reporter.cancel()
    return make_result(job, sum(done), elapsed, None, streams=len(parts), cpu_s=time.process_time() - cpu0)


async def _events(client: ClientProxy, job: Job, count: int, progress: Progress | None) -> dict[str, Any]:
    payloads = event_payloads()
    mask = len(payloads) - 1
    emit = client.emit
    before = (await client.send(STATS_PATTERN))["user_created"]
    perf = time.perf_counter_ns
    cpu0 = time.process_time()  # every thread of this process, ZeroMQ I/O included
    start = perf()
    end = start + int(job.duration * 1e9) if job.duration is not None else 0
    last_report = start
    target = count if job.duration is None else 1 << 62
    emitted = 0
    while emitted < target:
        await emit(EVENT_PATTERN, payloads[emitted & mask])
        emitted += 1
        if not emitted & 1023:
            now = perf()
            if end and now >= end:
                target = emitted
            if progress is not None and now - last_report > _REPORT_EVERY_NS:
                last_report = now
                progress(emitted, count if job.duration is None else 0)
    emitted_at = perf() - start  # when the emitter was done: the rest is the service catching up
    seen = await _wait_for_count(client, before, emitted)
    elapsed = (perf() - start) / 1e9
    return make_result(job, seen, elapsed, None, emitted=emitted, lost=emitted - seen,
                           cpu_s=time.process_time() - cpu0,
                           emit_s=emitted_at / 1e9)


async def _wait_for_count(client: ClientProxy, before: int, expected: int, stall_s: float = 3.0) -> int:
    """Ask the service until it has seen ``expected`` events, or its count stops moving."""
    loop = asyncio.get_running_loop()

    async def read() -> int:
        seen: int = (await client.send(STATS_PATTERN))["user_created"] - before
        return seen

    seen = await read()
    last_change = loop.time()
    while seen < expected:
        await asyncio.sleep(0.002)
        now_seen = await read()
        if now_seen != seen:
            seen, last_change = now_seen, loop.time()
        elif loop.time() - last_change > stall_s:
            break
    return seen


async def run_job(job: Job, endpoint: str, progress: Progress | None = None) -> dict[str, Any]:
    """Run one job with a fresh ClientProxy: warm-up first (untimed), then the measured part."""
    async with ClientProxy(endpoint, timeout=60) as client:
        if job.op == "events":
            if job.warmup:
                await _events(client, Job(job.workload, job.op, job.warmup, 0), job.warmup, None)
            result = await _events(client, job, job.count, progress)
        elif job.op == "stream":
            if job.warmup:
                await _streams(client, Job(job.workload, job.op, job.warmup, 0, job.in_flight), job.warmup, None)
            result = await _streams(client, job, job.count, progress)
        else:
            if job.warmup:
                warm = Job(job.workload, job.op, job.warmup, 0, job.in_flight, job.payload_size)
                await _requests(client, warm, job.warmup, None)
            result = await _requests(client, job, job.count, progress)
        result["service_framing"] = (await client.send(STATS_PATTERN)).get("framing", "?")
        result["resent"] = client.stats.resent  # refused unrun (429: replies piling up), sent again
        result["send_window_cuts"] = client.stats.send_window_cuts  # ... and fewer kept out since
        result["send_window"] = client.send_window
        return result


def run_sync_job(job: Job, endpoint: str, progress: Progress | None = None) -> dict[str, Any]:
    """W1 with the blocking client (``zmsg.SyncClientProxy``): sequential calls only."""
    from zmsg import SyncClientProxy

    if job.op not in ("sum", "echo") or job.in_flight > 1:
        raise ValueError("the blocking client makes sequential calls only (one in flight)")
    pattern, payload, expect = _work(job)
    is_sum = job.op == "sum"
    perf = time.perf_counter_ns
    with SyncClientProxy(endpoint, timeout=60) as client:
        send = client.send
        for _ in range(job.warmup):
            send(pattern, payload)
        latencies: list[int] = []
        record = latencies.append
        target = job.count if job.duration is None else 1 << 62
        cpu0 = time.process_time()
        start = last_report = perf()
        end = start + int(job.duration * 1e9) if job.duration is not None else 0
        while len(latencies) < target:
            t0 = perf()
            reply = send(pattern, payload)
            t1 = perf()
            record(t1 - t0)
            if (reply if is_sum else len(reply)) != expect:
                raise RuntimeError(f"service answered {reply!r:.40}, expected {expect!r}")
            if not len(latencies) & 255:
                if end and t1 >= end:
                    break
                if progress is not None and t1 - last_report > _REPORT_EVERY_NS:
                    last_report = t1
                    progress(len(latencies), job.count if job.duration is None else 0)
        elapsed = (perf() - start) / 1e9
        result = make_result(job, len(latencies), elapsed, latencies, cpu_s=time.process_time() - cpu0)
        result["service_framing"] = send(STATS_PATTERN).get("framing", "?")
        return result
