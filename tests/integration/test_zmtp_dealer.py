"""ZmtpDealer: the loop's own ZMTP against libzmq's ROUTER, and against peers that misbehave.

Peers here are real: a pyzmq ROUTER (libzmq's side of the handshake, heartbeats and framing),
and plain asyncio TCP servers scripted to send what libzmq never would (garbage, an ERROR
command, silence). Everything is on loopback with ephemeral ports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import zmq
import zmq.asyncio

from tests.conftest import free_port
from zmsg.endpoints import native_endpoint
from zmsg.transport.monitor import AUTH_FAILED, CONNECT_FAILED, CONNECTED, DISCONNECTED, PROTOCOL_FAILED
from zmsg.transport.zmtp_dealer import ZmtpDealer
from zmsg.zmtp import command, greeting, ready_command

pytestmark = pytest.mark.anyio


class Recorder:
    """Messages and connection events of one ZmtpDealer, awaitable."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[list[bytes]] = asyncio.Queue()
        self.events: asyncio.Queue[int] = asyncio.Queue()

    def on_message(self, frames: list[Any]) -> None:
        self.messages.put_nowait([bytes(f) for f in frames])

    def on_event(self, event: int, endpoint: str) -> None:
        self.events.put_nowait(event)

    async def event(self, timeout: float = 10) -> int:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def until(self, wanted: int, timeout: float = 10) -> list[int]:
        seen: list[int] = []
        async with asyncio.timeout(timeout):
            while not seen or seen[-1] != wanted:
                seen.append(await self.events.get())
        return seen


@contextlib.asynccontextmanager
async def router(**options: int) -> AsyncIterator[tuple[zmq.asyncio.Socket, str]]:
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:0")
    try:
        yield sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)
    finally:
        sock.close(linger=0)


@contextlib.asynccontextmanager
async def scripted(script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]) -> AsyncIterator[str]:
    """A TCP server that runs ``script`` for each connection (the dealer may drop it any time)."""
    handlers: set[asyncio.Task[Any]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.add(writer)
        try:
            await script(reader, writer)
            while await reader.read(65536):  # then read (and drop) until the dealer hangs up
                pass
        except ConnectionError:
            pass  # the dealer gave up on us: what the test is about
        finally:
            handlers.discard(task)
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in list(writers):
            writer.transport.abort()  # ends each handler's read, so none is left pending
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def test_endpoints_it_reaches() -> None:
    assert native_endpoint("tcp://127.0.0.1:5555") == ("tcp", "127.0.0.1", 5555)
    assert native_endpoint("tcp://[::1]:5555") == ("tcp", "::1", 5555)
    assert native_endpoint("tcp://svc.internal:80") == ("tcp", "svc.internal", 80)
    assert native_endpoint("ipc:///tmp/x.sock") == ("ipc", "/tmp/x.sock", 0)
    assert native_endpoint("inproc://x") is None
    assert native_endpoint("tcp://*:5555") is None


async def test_messages_both_ways_with_libzmq() -> None:
    async with router() as (sock, endpoint):
        rec = Recorder()
        dealer = ZmtpDealer(endpoint, rec.on_message, rec.on_event)
        try:
            # Sent before the handshake: waits, then goes in order.
            dealer.send([b"first"])
            dealer.send([b"a", b"", b"x" * 300, b"y" * 100_000])
            assert await rec.event() == CONNECTED
            peer, first = await asyncio.wait_for(sock.recv_multipart(), 10)
            assert first == b"first"
            assert (await asyncio.wait_for(sock.recv_multipart(), 10))[1:] == [b"a", b"", b"x" * 300, b"y" * 100_000]
            for frames in ([b"r"], [b"h", b"z" * 70_000, b""], [b"m" * 2_000_000]):
                await sock.send_multipart([peer, *frames])
                assert await asyncio.wait_for(rec.messages.get(), 10) == frames
        finally:
            dealer.close()


async def test_libzmq_heartbeats_are_answered_and_the_connection_stays() -> None:
    # The ROUTER pings every 50 ms and drops a peer silent for 150 ms: answering PING keeps us.
    async with router(HEARTBEAT_IVL=50, HEARTBEAT_TIMEOUT=150, HEARTBEAT_TTL=150) as (sock, endpoint):
        rec = Recorder()
        dealer = ZmtpDealer(endpoint, rec.on_message, rec.on_event, heartbeat=None)
        try:
            assert await rec.event() == CONNECTED
            await asyncio.sleep(0.6)
            assert rec.events.empty(), "the ROUTER dropped a peer that answers its PINGs"
            dealer.send([b"still here"])
            assert (await asyncio.wait_for(sock.recv_multipart(), 10))[1] == b"still here"
        finally:
            dealer.close()


async def test_libzmq_pings_between_the_frames_of_a_message_are_taken_in_stride() -> None:
    # libzmq's heartbeat timer writes its PING between any two frames: with a 2 ms interval and
    # long multi-frame messages, many land inside messages. Every message must arrive whole and
    # the connection must stay up.
    async with router(HEARTBEAT_IVL=2, HEARTBEAT_TIMEOUT=5000, HEARTBEAT_TTL=5000) as (sock, endpoint):
        rec = Recorder()
        dealer = ZmtpDealer(endpoint, rec.on_message, rec.on_event)
        try:
            dealer.send([b"hello"])
            assert await rec.event() == CONNECTED
            peer = (await asyncio.wait_for(sock.recv_multipart(), 10))[0]
            frames = [bytes([i]) * 20_000 for i in range(24)]
            for n in range(150):
                await sock.send_multipart([peer, n.to_bytes(4, "big"), *frames])
            for n in range(150):
                got = await asyncio.wait_for(rec.messages.get(), 10)
                assert got[0] == n.to_bytes(4, "big") and got[1:] == frames
            assert rec.events.empty(), "the connection dropped"
        finally:
            dealer.close()


async def test_a_silent_peer_is_dropped_after_three_heartbeats_and_redialled() -> None:
    connections = 0

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(greeting() + ready_command(b"ROUTER"))  # then nothing, ever: a frozen process

    async with scripted(mute) as endpoint:
        rec = Recorder()
        dealer = ZmtpDealer(endpoint, rec.on_message, rec.on_event, heartbeat=0.05)
        try:
            assert await rec.event() == CONNECTED
            assert await rec.event(5) == DISCONNECTED
            assert await rec.event() == CONNECTED  # dialled again
            assert connections == 2
        finally:
            dealer.close()


async def test_closing_ends_a_connection_whose_handshake_never_finished() -> None:
    hung_up = asyncio.Event()

    async def never_greets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(64)  # the dealer's greeting; ours never comes
        while await reader.read(1024):
            pass
        hung_up.set()  # EOF: the dealer closed the connection

    async with scripted(never_greets) as endpoint:
        rec = Recorder()
        dealer = ZmtpDealer(endpoint, rec.on_message, rec.on_event, heartbeat=None)
        async with asyncio.timeout(10):
            while dealer._connection is None:  # connected, handshake pending
                await asyncio.sleep(0.01)
        dealer.close()
        await asyncio.wait_for(hung_up.wait(), 10)
        assert rec.events.empty()


async def test_refused_connections_are_retried_until_a_router_comes() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    rec = Recorder()
    dealer = ZmtpDealer(endpoint, rec.on_message, rec.on_event, reconnect_interval=0.02)
    try:
        assert await rec.event() == CONNECT_FAILED
        assert await rec.event() == CONNECT_FAILED
        ctx = zmq.asyncio.Context.instance()
        late = ctx.socket(zmq.ROUTER)
        late.bind(endpoint)
        try:
            dealer.send([b"queued while nothing listened"])
            assert CONNECTED in await rec.until(CONNECTED)
            assert (await asyncio.wait_for(late.recv_multipart(), 10))[1] == b"queued while nothing listened"
        finally:
            late.close(linger=0)
    finally:
        dealer.close()


@pytest.mark.parametrize(("reply", "event"), [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\x00" * 40, PROTOCOL_FAILED),
    (greeting() + ready_command(b"PUB"), PROTOCOL_FAILED),
    (greeting() + command(b"ERROR", b"\x0cAccess denied"), AUTH_FAILED),
    (greeting()[:12] + b"CURVE".ljust(20, b"\x00") + greeting()[32:], AUTH_FAILED),  # a CURVE service
])
async def test_handshake_failures_are_reported_and_retried(reply: bytes, event: int) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(reply)

    async with scripted(answer) as endpoint:
        rec = Recorder()
        dealer = ZmtpDealer(endpoint, rec.on_message, rec.on_event, reconnect_interval=0.02)
        try:
            assert await rec.event() == event
            assert await rec.event() == event  # and again: it keeps trying, as libzmq does
            assert rec.messages.empty()
        finally:
            dealer.close()


@pytest.mark.parametrize("garbage", [
    b"\x08\x00",  # reserved flag bits
    b"\x05\x02ab",  # a command frame with MORE set
    b"\x02" + (1 << 62).to_bytes(8, "big"),  # a size no one means
])
async def test_a_broken_stream_after_the_handshake_drops_the_connection(garbage: bytes) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting() + ready_command(b"ROUTER") + b"\x00\x02ok" + garbage)

    async with scripted(answer) as endpoint:
        rec = Recorder()
        dealer = ZmtpDealer(endpoint, rec.on_message, rec.on_event, reconnect_interval=0.02)
        try:
            assert await rec.event() == CONNECTED
            assert await asyncio.wait_for(rec.messages.get(), 10) == [b"ok"]  # what came before is kept
            assert await rec.event() == DISCONNECTED
            assert await rec.event() == CONNECTED
        finally:
            dealer.close()


async def test_a_failing_message_handler_does_not_stop_the_reader() -> None:
    async with router() as (sock, endpoint):
        got: list[bytes] = []

        def on_message(frames: list[Any]) -> None:
            if frames[0] == b"boom":
                raise ValueError("handler bug")
            got.append(bytes(frames[0]))

        rec = Recorder()
        dealer = ZmtpDealer(endpoint, on_message, rec.on_event)
        try:
            dealer.send([b"hi"])
            assert await rec.event() == CONNECTED
            peer = (await asyncio.wait_for(sock.recv_multipart(), 10))[0]
            await sock.send_multipart([peer, b"boom"])
            await sock.send_multipart([peer, b"after"])
            async with asyncio.timeout(10):
                while not got:
                    await asyncio.sleep(0.01)
            assert got == [b"after"] and dealer.callback_errors == 1
        finally:
            dealer.close()
