"""Closing releases everything: no file descriptors left behind after many cycles."""

from __future__ import annotations

import asyncio
import os

import pytest

import zmsg

pytestmark = pytest.mark.anyio


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settled_fds(target: int, timeout: float = 10.0) -> int:
    """ZeroMQ's I/O thread closes TCP connections asynchronously: give it a moment."""
    deadline = asyncio.get_running_loop().time() + timeout
    count = _open_fds()
    while count > target and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        count = _open_fds()
    return count


async def _cycle(service: zmsg.Service) -> None:
    endpoint = await service.start("tcp://127.0.0.1:0")
    client = zmsg.ClientProxy(endpoint, timeout=5)
    try:
        await client.connect()
        assert await client.send("double", 21) == 42
        await client.emit("noted", 1)
    finally:
        await client.close()
        await service.stop()


def _service(name: str) -> zmsg.Service:
    service = zmsg.Service(name)

    @service.message_pattern("double")
    def double(x: int) -> int:
        return x * 2

    @service.event_pattern("noted")
    def noted(x: int) -> None:
        pass

    return service


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")
async def test_200_start_stop_and_open_close_cycles_leak_no_descriptors() -> None:
    service = _service("cycler")
    await _cycle(service)  # warm-up: the ZeroMQ context starts its I/O thread once
    baseline = await _settled_fds(0, timeout=0.5)
    for _ in range(200):
        await _cycle(service)
    after = await _settled_fds(baseline)
    assert after <= baseline, f"{after - baseline} file descriptors leaked over 200 cycles"


async def test_closing_twice_and_stopping_twice_is_harmless() -> None:
    service = _service("idempotent")
    await _cycle(service)
    await service.stop()
    client = zmsg.ClientProxy("tcp://127.0.0.1:9")
    await client.close()
    await client.close()
