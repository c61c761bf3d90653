"""``zmsg serve --workers N``: one endpoint for clients, requests over every worker, each event
handled once, a killed worker failing only its own requests and coming back, a drain of all."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

import zmsg
from zmsg.errors import ServiceUnavailable

pytestmark = pytest.mark.anyio


def _ask(endpoint: str, pattern: Any, data: Any = None) -> Any:
    """One request to exactly this worker (a SyncClientProxy does not follow a hello's instances)."""
    with zmsg.SyncClientProxy(endpoint, timeout=10) as client:
        return client.send(pattern, data)


async def _ask_async(endpoint: str, pattern: Any, data: Any = None) -> Any:
    return await asyncio.to_thread(_ask, endpoint, pattern, data)


async def _until(check: Any, what: str, attempts: int = 400) -> Any:
    for _ in range(attempts):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


async def test_one_endpoint_spreads_requests_and_each_event_runs_once(serve_process) -> None:
    served = serve_process("mathsvc:service", "--workers", "2")
    info = await _ask_async(served.endpoint, "$zmsg.info")
    assert [w["state"] for w in info["workers"]] == ["running", "running"]
    workers = info["instances"]
    assert len(workers) == 2 and workers[0] == served.endpoint
    async with zmsg.ClientProxy(served.endpoint) as client:
        assert sorted(client.endpoints) == sorted(workers)  # learnt from the hello
        pids = {await client.send("pid") for _ in range(20)}
        assert len(pids) == 2
        for n in range(40):
            await client.emit("user_created", {"user_id": f"u{n}", "email": "a@b.c"})

    async def handled() -> list[int] | None:
        counts = [await _ask_async(w, "events_seen", "user_created") for w in workers]
        return counts if sum(counts) >= 40 else None

    counts = await _until(handled, "40 events handled")
    assert sum(counts) == 40 and all(counts), counts  # once each, over both workers
    for worker in workers:
        stats = (await _ask_async(worker, "$zmsg.info"))["stats"]
        assert stats["events_missed"] == 0


async def test_a_killed_worker_fails_only_its_requests_and_is_restarted(serve_process) -> None:
    served = serve_process("mathsvc:service", "--workers", "2")
    info = await _ask_async(served.endpoint, "$zmsg.info")
    victim = info["workers"][1]
    async with zmsg.ClientProxy(served.endpoint, timeout=60) as client:
        calls = [asyncio.ensure_future(client.send("sleep", 30.0)) for _ in range(6)]

        async def both_busy() -> bool:
            infos = [await _ask_async(w["endpoint"], "$zmsg.info") for w in info["workers"]]
            return all(i["in_flight"] >= 3 for i in infos)

        await _until(both_busy, "requests in flight on both workers")
        os.kill(victim["pid"], signal.SIGKILL)
        done: set[asyncio.Future[Any]] = set()
        while len(done) < 3:
            finished, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
            done |= finished
        # The victim's three fail at once (a timeout, at 60 s, would be another error); the other
        # worker's are still sleeping their 30 s.
        assert len(done) == 3 and all(isinstance(c.exception(), ServiceUnavailable) for c in done)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

        async def restarted() -> dict[str, Any] | None:
            workers = (await _ask_async(served.endpoint, "$zmsg.info"))["workers"]
            back = workers[1]
            return back if back["restarts"] == 1 and back["state"] == "running" else None

        back = await _until(restarted, "worker 1 restarted")
        assert back["pid"] != victim["pid"] and back["endpoint"] == victim["endpoint"]

        async def answers_again() -> bool:
            return back["pid"] in {await client.send("pid") for _ in range(4)}

        await _until(answers_again, "the restarted worker answers the same proxy")
        await client.emit("user_created", {"user_id": "u", "email": "a@b.c"})  # its new instance is known
    assert served.terminate() == 0


async def test_sigterm_drains_every_worker_and_exits_0(serve_process) -> None:
    served = serve_process("mathsvc:service", "--workers", "2")
    async with zmsg.ClientProxy(served.endpoint, timeout=30) as client:
        calls = [asyncio.ensure_future(client.send("sleep", 3.0)) for _ in range(6)]
        workers = client.endpoints

        async def both_busy() -> bool:
            infos = [await _ask_async(w, "$zmsg.info") for w in workers]
            return all(i["in_flight"] >= 3 for i in infos)

        await _until(both_busy, "requests in flight on both workers")
        served.proc.send_signal(signal.SIGTERM)
        assert await asyncio.gather(*calls) == [3.0] * 6  # finished, not cancelled by the drain
    assert await asyncio.to_thread(served.proc.wait, 30) == 0
    assert "all workers stopped" in served.output()
