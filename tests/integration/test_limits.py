"""Memory a peer can make a service hold is bounded in bytes (``max_peer_buffer``)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import zmq

import zmsg
from zmsg.protocol import INFO_PATTERN, KIND_REQUEST, BatchBuilder

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _flood(endpoint: str, requests: int, size: int) -> zmq.Socket:  # type: ignore[type-arg]
    """A raw DEALER that asks for ``requests`` replies of ``size`` bytes and never reads."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.connect(endpoint)
    body = msgspec.msgpack.encode(size)
    for cid in range(1, requests + 1):
        batch = BatchBuilder()
        batch.add(KIND_REQUEST, 0, cid, 0, b"blob", body)
        sock.send_multipart(batch.take())
    return sock


async def test_a_client_that_never_reads_cannot_grow_the_service_past_its_budget(serve_process) -> None:
    """2,000 requests for 1 MiB replies, never read: once the client's unread replies pass
    max_peer_buffer its requests are refused; another client gets its 20 x 1 MiB meanwhile.

    The documented bound on what the service holds for the flooding client: max_peer_buffer
    (8 MiB here) + reply_hwm (16) replies inside ZeroMQ + 64 KiB of 429 errors. Before the
    budget, the same flood grew the service by more than 1 GB."""
    served = serve_process("mathsvc:service", "--max-peer-buffer", str(8 * MiB))
    async with zmsg.ClientProxy(served.endpoint, timeout=20) as client:
        assert len(await client.send("blob", 1)) == 1
        start_kb = _status_kb(served.pid, "VmRSS")
        flood = _flood(served.endpoint, 2000, MiB)
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                info = await client.send(INFO_PATTERN)
                if info["stats"]["requests"] >= 2001 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
            replies = await asyncio.gather(*(client.send("blob", MiB) for _ in range(20)))
            assert [len(r) for r in replies] == [MiB] * 20
            info = await client.send(INFO_PATTERN)
        finally:
            flood.close(linger=0)
    stats = info["stats"]
    assert stats["peer_buffer_exceeded"] >= 1
    assert stats["requests_refused"] >= 2000 - 8 - 16 - 2  # only what fits the budget ran
    assert info["max_peer_buffer"] == 8 * MiB
    grown_mb = (_status_kb(served.pid, "VmHWM") - start_kb) / 1024
    # budget 8 + ZeroMQ's 16 + the well-behaved client's 20 in transit + allocator slack
    assert grown_mb < 8 + 16 + 20 + 64, f"the service grew by {grown_mb:.0f} MB"
    assert served.terminate() == 0
    assert "refusing its requests" in served.output()


async def test_max_peer_buffer_is_validated() -> None:
    with pytest.raises(ValueError, match="max_peer_buffer"):
        zmsg.Service("bad", max_peer_buffer=0)
