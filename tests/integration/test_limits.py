"""Memory a peer can make a service hold is bounded in bytes (``max_peer_buffer``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

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
    (8 MiB here) + reply_hwm (16) replies inside ZeroMQ + 1 MiB of 429 errors. Before the
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
    # Only what fits ran: the budget (8 x 1 MiB), ZeroMQ's pipe (16), what the kernel took off it
    # (tcp_wmem, up to 4 MiB here), the client's side (RCVHWM 1, a 4 KiB RCVBUF, one being read)
    # and the two calls of the other client.
    assert stats["requests_refused"] >= 2000 - 8 - 16 - 4 - 3 - 2
    assert info["max_peer_buffer"] == 8 * MiB
    grown_mb = (_status_kb(served.pid, "VmHWM") - start_kb) / 1024
    # budget 8 + ZeroMQ's 16 + the well-behaved client's 20 in transit + allocator slack
    assert grown_mb < 8 + 16 + 20 + 64, f"the service grew by {grown_mb:.0f} MB"
    assert served.terminate() == 0
    assert "refusing its requests" in served.output()


async def test_max_peer_buffer_is_validated() -> None:
    with pytest.raises(ValueError, match="max_peer_buffer"):
        zmsg.Service("bad", max_peer_buffer=0)


async def test_serve_sets_reply_hwm_over_the_services_own(serve_process) -> None:
    """``--reply-hwm`` wins over the code's ``reply_hwm=1`` (bulksvc), reported in ``$zmsg.info``;
    the Service's value reaching ZeroMQ is what tests/integration/test_refusals.py relies on."""
    served = serve_process("bulksvc:service", "--reply-hwm", "64")
    async with zmsg.ClientProxy(served.endpoint, timeout=10) as client:
        info = await client.send(INFO_PATTERN)
    assert info["reply_hwm"] == 64
    async with zmsg.ClientProxy(serve_process("bulksvc:service").endpoint, timeout=10) as client:
        assert (await client.send(INFO_PATTERN))["reply_hwm"] == 1


_LOW_FD_SERVE = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); "
                 "from zmsg.cli import main; sys.exit(main(sys.argv[1:]))")


async def test_running_out_of_descriptors_is_logged_not_a_crash(serve_process) -> None:
    """A service limited to 64 descriptors, 100 clients: those beyond the limit wait (libzmq keeps
    them in the kernel's backlog), the service logs why and counts it, and serves them once
    descriptors are free again."""
    served = serve_process("mathsvc:service", python=("-c", _LOW_FD_SERVE))
    ctx = zmq.Context.instance()
    dealers = []
    try:
        for _ in range(100):
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(served.endpoint)
            dealers.append(dealer)
        body = msgspec.msgpack.encode([1, 2])
        for dealer in dealers:
            batch = BatchBuilder()
            batch.add(KIND_REQUEST, 0, 1, 0, msgspec.json.encode({"cmd": "sum"}), body)
            dealer.send_multipart(batch.take())
        answered: set[int] = set()
        rounds = 0
        while len(answered) < 100 and rounds < 50:
            rounds += 1
            # Collect replies until none came for a second, then free the descriptors of the
            # clients answered: the ones waiting in the backlog get in.
            quiet_since = asyncio.get_running_loop().time()
            while asyncio.get_running_loop().time() - quiet_since < 1.0 and len(answered) < 100:
                for index, dealer in enumerate(dealers):
                    if index not in answered and dealer.poll(0):
                        dealer.recv_multipart()
                        answered.add(index)
                        dealer.close(linger=0)
                        quiet_since = asyncio.get_running_loop().time()
                await asyncio.sleep(0.02)
            assert served.proc.poll() is None, "the service died"
        assert len(answered) == 100
    finally:
        for dealer in dealers:
            dealer.close(linger=0)
    async with zmsg.ClientProxy(served.endpoint, timeout=20) as client:
        info = await client.send(INFO_PATTERN)
    assert info["stats"]["accept_failures"] > 0, "every client got in at once: the limit was not reached"
    assert served.terminate() == 0
    assert "cannot accept a connection: too many open files (this process may open 64" in served.output()


def test_out_of_descriptors_when_opening_a_socket_is_an_endpoint_error() -> None:
    code = ("import resource, asyncio, zmsg, os\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
            "async def main():\n"
            "    first = zmsg.Service('first')\n"
            "    await first.start()\n"
            "    hold = []\n"
            "    try:\n"
            "        while True: hold.append(os.open('/dev/null', os.O_RDONLY))\n"
            "    except OSError: pass\n"
            "    try:\n"
            "        await zmsg.Service('second').start()\n"
            "    except zmsg.EndpointError as exc:\n"
            "        print('ERROR', exc)\n"
            "    for fd in hold: os.close(fd)\n"
            "    await first.stop()\n"
            "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ERROR cannot open a ZeroMQ socket: too many open files" in done.stdout
