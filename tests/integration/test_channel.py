"""``Channel`` over real loopback sockets: no lost wake-ups however sends and receives
interleave, multipart messages intact, and the direct option reads equal pyzmq's."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from typing import Any

import pytest
import zmq

from zmsg import _framing
from zmsg.transport import Channel
from zmsg.transport.sockopt import IMPLEMENTATION, events, rcvmore

pytestmark = pytest.mark.anyio


def _pair(ctx: zmq.Context[Any], server_type: int = zmq.ROUTER) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    server = ctx.socket(server_type)
    server.setsockopt(zmq.LINGER, 0)
    server.bind("tcp://127.0.0.1:0")
    client = ctx.socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(server.getsockopt_string(zmq.LAST_ENDPOINT))
    return server, client


def test_direct_option_reads_equal_pyzmqs_and_a_closed_socket_raises_the_same() -> None:
    if _framing.IMPLEMENTATION == "cython":
        assert IMPLEMENTATION == "native"  # built with extensions: the fast path is in use
    ctx = zmq.Context()
    server, client = _pair(ctx, zmq.DEALER)
    try:
        assert events(client) == client.get(zmq.EVENTS)
        client.send_multipart([b"a", b"bb", b"ccc"])
        poller = zmq.Poller()
        poller.register(server, zmq.POLLIN)
        assert poller.poll(5000)
        assert events(server) == server.get(zmq.EVENTS) == zmq.POLLIN | zmq.POLLOUT
        frames = [server.recv()]
        assert rcvmore(server) == server.get(zmq.RCVMORE) == 1
        while rcvmore(server):
            frames.append(server.recv())
        assert frames == [b"a", b"bb", b"ccc"]
        assert rcvmore(server) == server.get(zmq.RCVMORE) == 0
        assert events(server) == server.get(zmq.EVENTS) == zmq.POLLOUT
    finally:
        server.close()
        client.close()
    for read, option in ((events, zmq.EVENTS), (rcvmore, zmq.RCVMORE)):
        with pytest.raises(zmq.ZMQError) as ours:
            read(server)
        with pytest.raises(zmq.ZMQError) as theirs:
            server.get(option)
        assert ours.value.errno == theirs.value.errno == zmq.ENOTSOCK
    ctx.term()


def test_without_extensions_the_reads_go_to_pyzmq() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from zmsg.transport import sockopt; print(sockopt.IMPLEMENTATION)"],
        env={**os.environ, "ZMSG_NO_EXTENSIONS": "1"}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pyzmq"


async def test_echo_over_channels_loses_no_wake_up_however_sends_interleave() -> None:
    """A ROUTER channel answers inside its reader: half the replies at once, half in on_idle
    after their message; a DEALER channel sends bursts of random size from a task, some while
    replies arrive: each of 20,000 messages (some multipart) must come back, without a stall."""
    ctx = zmq.Context()
    server_sock, client_sock = _pair(ctx)
    loop = asyncio.get_running_loop()
    held: list[list[Any]] = []

    def answer(frames: list[Any]) -> None:
        reply = [frames[0]] + [bytes(f) for f in frames[1:]]
        if int.from_bytes(reply[1][:4], "little") % 2:
            server.send_to(frames[0], reply)  # inside the drain
        else:
            held.append(reply)  # in on_idle, right after this message

    def flush() -> None:
        while held:
            reply = held.pop(0)
            server.send_to(reply[0], reply)

    server = Channel(server_sock, answer, name="test-router", copy_frames=2)
    server.on_idle = flush
    received: list[int] = []
    done = loop.create_future()
    total = 20_000

    def on_reply(frames: list[Any]) -> None:
        seq = int.from_bytes(frames[0][:4], "little")
        if len(frames) > 1:
            assert bytes(frames[1]) == b"x" * (seq % 7)
        received.append(seq)
        if len(received) == total and not done.done():
            done.set_result(None)

    client = Channel(client_sock, on_reply, name="test-dealer", copy_frames=1)
    rng = random.Random(7)

    async def send_all() -> None:
        sent = 0
        while sent < total:
            for _ in range(min(rng.choice((1, 1, 1, 2, 8, 64)), total - sent)):
                head = sent.to_bytes(4, "little")
                client.send([head, b"x" * (sent % 7)] if sent % 3 == 0 else [head])
                sent += 1
            if rng.random() < 0.7:
                await asyncio.sleep(0)  # let replies in between bursts, or not
            while sent - len(received) > 512:
                await asyncio.sleep(0.0005)
        await done

    try:
        # A lost wake-up stalls the exchange: it then fails here instead of hanging.
        await asyncio.wait_for(send_all(), 30)
    finally:
        client.close()
        server.close()
        ctx.term()
    assert sorted(received) == list(range(total))
    assert server.callback_errors == client.callback_errors == 0
