"""Streaming replies against a real ``zmsg serve`` process: order, errors, early exit, timeouts,
dead services, flow control, sharing one proxy, and what a service rejects on the wire."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

import zmsg
from zmsg import codec
from zmsg.protocol import (
    FLAG_STREAM,
    KIND_CANCEL,
    KIND_CREDIT,
    KIND_ERROR,
    KIND_REQUEST,
    KIND_STREAM_ITEM,
    BatchBuilder,
    parse_frames,
)
from zmsg.stream_core import open_stream, read_credit

from ..conftest import ServedProcess, start_serve

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def streams() -> Iterator[ServedProcess]:
    """One service for the tests that leave it running (each uses its own names and deltas)."""
    served = start_serve("streamsvc:service")
    yield served
    served.terminate()
    served._reader.join(10)
    if served.proc.stdout:
        served.proc.stdout.close()


@pytest.fixture
def doomed(serve_process: Any) -> ServedProcess:
    """A service of the test's own, for the tests that kill it."""
    served: ServedProcess = serve_process("streamsvc:service")
    return served


async def _eventually(probe: Any, predicate: Any, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if predicate(value) or loop.time() > deadline:
            return value
        await asyncio.sleep(0.02)


async def _finalized(client: zmsg.ClientProxy, name: str, expected: int = 1) -> int:
    got = await _eventually(lambda: client.send("progress", name), lambda v: v["finalized"] >= expected)
    return int(got["finalized"])


# -- semantics ----------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["count", "count_sync"])
async def test_items_arrive_in_order_and_the_loop_ends(streams: Any, pattern: str) -> None:
    async with zmsg.ClientProxy(streams.endpoint, stream_window=16) as client:
        assert [x async for x in client.stream(pattern, 1000)] == list(range(1000))
        assert [x async for x in client.stream(pattern, 0)] == []


async def test_a_plain_handler_streams_its_single_reply(streams: Any) -> None:
    async with zmsg.ClientProxy(streams.endpoint) as client:
        assert [x async for x in client.stream("plain", 21)] == [42]


async def test_send_on_a_streaming_pattern_fails_at_once_with_400(streams: Any) -> None:
    async with zmsg.ClientProxy(streams.endpoint) as client:
        with pytest.raises(zmsg.RpcException) as caught:
            await client.send("count", 3)
        assert caught.value.error["status"] == 400
        assert "stream()" in caught.value.error["message"]


async def test_the_generator_raising_ends_the_loop_after_the_items(streams: Any) -> None:
    async with zmsg.ClientProxy(streams.endpoint) as client:
        got: list[int] = []
        with pytest.raises(zmsg.RpcException) as caught:
            async for x in client.stream("fail_after", 3):
                got.append(x)
        assert got == [0, 1, 2]
        assert caught.value.error == {"status": 409, "message": "stopped after 3"}
        got.clear()
        with pytest.raises(zmsg.RpcException) as caught:
            async for x in client.stream("crash_after", 2):
                got.append(x)
        assert got == [0, 1]
        assert caught.value.error == {"status": 500, "message": "Internal server error"}


async def test_items_are_decoded_into_the_response_type(streams: Any) -> None:
    async with zmsg.ClientProxy(streams.endpoint) as client:
        assert [x async for x in client.stream("count", 3, response_type=int)] == [0, 1, 2]
        with pytest.raises(zmsg.ReplyValidationError, match="Expected `str`"):
            async for _ in client.stream("count", 3, response_type=str):
                pass


async def test_metadata_middleware_and_exception_handlers_apply_to_streams(streams: Any) -> None:
    async with zmsg.ClientProxy(streams.endpoint, metadata={"tenant": "t1"}) as client:
        assert [x async for x in client.stream("whoami", 2)] == [{"kind": "stream", "tenant": "t1"}] * 2
        with pytest.raises(zmsg.RpcException) as caught:
            async for _ in client.stream("whoami", 2, metadata={"deny": "yes"}):
                pass
        assert caught.value.error == {"status": 401, "message": "no stream for you"}
        got: list[int] = []
        with pytest.raises(zmsg.RpcException) as caught:
            async for x in client.stream("refuse_after", 2):
                got.append(x)
        assert got == [0, 1] and caught.value.error == {"status": 418, "message": "refused in a stream"}
    with zmsg.SyncClientProxy(streams.endpoint) as sync:
        assert list(sync.stream("whoami", 1, metadata={"tenant": "t2"})) == [{"kind": "stream", "tenant": "t2"}]


@pytest.mark.parametrize("how", ["break", "exception", "aclose", "cancel"])
async def test_leaving_early_closes_the_generator_at_the_service(streams: Any, how: str, anyio_backend: Any) -> None:
    name = f"early-{how}-{anyio_backend[1]['use_uvloop']}"
    async with zmsg.ClientProxy(streams.endpoint) as client:
        cancelled = (await client.send("stats"))["cancelled"]
        if how == "break":
            async for x in client.stream("endless", name):
                if x == 3:
                    break
        elif how == "exception":
            with pytest.raises(KeyError):
                async for x in client.stream("endless", name):
                    if x == 3:
                        raise KeyError(x)
        elif how == "aclose":
            items = client.stream("endless", name)
            assert await items.__anext__() == 0
            await items.aclose()
            with pytest.raises(StopAsyncIteration):
                await items.__anext__()
        else:
            started = asyncio.Event()

            async def consume() -> None:
                async for _ in client.stream("slow_after", {"n": 1, "name": name}):
                    started.set()

            task = asyncio.ensure_future(consume())
            await started.wait()
            await asyncio.sleep(0.05)  # the consumer now waits for an item that never comes
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await _finalized(client, name) == 1
        assert (await client.send("stats"))["cancelled"] == cancelled + 1


async def test_closing_the_proxy_mid_stream_stops_the_service_and_ends_the_loop(streams: Any,
                                                                                anyio_backend: Any) -> None:
    name = f"proxy-closed-{anyio_backend[1]['use_uvloop']}"
    client = zmsg.ClientProxy(streams.endpoint)
    items = client.stream("endless", name)
    assert await items.__anext__() == 0
    await client.close()
    with pytest.raises(zmsg.ServiceUnavailable, match="client closed"):
        while True:
            await items.__anext__()
    async with zmsg.ClientProxy(streams.endpoint) as probe:
        assert await _finalized(probe, name) == 1


async def test_a_caller_that_vanished_has_its_streams_closed(streams: Any, anyio_backend: Any) -> None:
    """A raw DEALER with a huge credit disappears without a cancel: the service finds out when its
    items become unroutable, and closes the generator."""
    name = f"vanished-{anyio_backend[1]['use_uvloop']}"
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(streams.endpoint)
    batch = BatchBuilder()
    open_stream(batch, 1, 0, b"forever", codec.encode(name), 0xFFFFFFFF)
    sock.send_multipart(batch.take())
    assert await asyncio.get_running_loop().run_in_executor(None, sock.poll, 20_000)  # items are flowing
    sock.close()
    async with zmsg.ClientProxy(streams.endpoint) as probe:
        assert await _finalized(probe, name) == 1


async def test_a_per_item_timeout_raises_and_stops_the_service(streams: Any, anyio_backend: Any) -> None:
    name = f"timeout-{anyio_backend[1]['use_uvloop']}"
    async with zmsg.ClientProxy(streams.endpoint, timeout=30) as client:
        got: list[int] = []
        with pytest.raises(zmsg.RequestTimeout, match="no item"):
            async for x in client.stream("slow_after", {"n": 2, "name": name}, timeout=0.3):
                got.append(x)
        assert got == [0, 1]
        assert await _finalized(client, name) == 1
        assert client.stats.timeouts == 1


async def test_a_service_killed_mid_stream_raises_service_unavailable(doomed: ServedProcess) -> None:
    async with zmsg.ClientProxy(doomed.endpoint, timeout=60) as client:
        got = 0
        with pytest.raises(zmsg.ServiceUnavailable):
            async with asyncio.timeout(30):  # far below the 60 s timeout: it must not wait that out
                async for _ in client.stream("endless", "killed"):
                    got += 1
                    if got == 10:
                        doomed.terminate(signal.SIGKILL)
        assert got >= 10


async def test_many_streams_and_requests_share_one_proxy_without_mixing(streams: Any) -> None:
    async with zmsg.ClientProxy(streams.endpoint, stream_window=8) as client:
        async def one(tag: int) -> list[list[int]]:
            return [x async for x in client.stream("tagged", {"tag": tag, "n": 200})]

        async def plain(i: int) -> int:
            return int(await client.send("plain", i))

        results = await asyncio.gather(*(one(t) for t in range(64)), *(plain(i) for i in range(200)))
        for tag, items in enumerate(results[:64]):
            assert items == [[tag, i] for i in range(200)]
        assert results[64:] == [2 * i for i in range(200)]


async def test_a_slow_consumer_keeps_the_generator_suspended_near_the_window(streams: Any,
                                                                          anyio_backend: Any) -> None:
    window = 16
    name = f"slow-{anyio_backend[1]['use_uvloop']}"
    async with zmsg.ClientProxy(streams.endpoint, stream_window=window) as client:
        items = client.stream("endless", name)
        assert await items.__anext__() == 0
        rss_before = await client.send("rss")
        consumed = 1
        for _ in range(8):  # a few items per second
            await asyncio.sleep(0.25)
            assert await items.__anext__() == consumed
            consumed += 1
            produced = (await client.send("progress", name))["produced"]
            # Never more than the credit granted: what was consumed plus one window.
            assert consumed <= produced <= consumed + window
        rss_after = await client.send("rss")
        assert rss_after - rss_before < 8 * 1024 * 1024  # flat, not items of a 10-million stream
        await items.aclose()
        assert await _finalized(client, name) == 1


# -- the blocking client ------------------------------------------------------------------------

def test_the_sync_client_iterates_a_stream(streams: Any) -> None:
    with zmsg.SyncClientProxy(streams.endpoint, stream_window=8) as client:
        assert list(client.stream("count", 100)) == list(range(100))
        assert list(client.stream("plain", 4)) == [8]
        got: list[int] = []
        with pytest.raises(zmsg.RpcException):
            for x in client.stream("fail_after", 2):
                got.append(x)
        assert got == [0, 1]
        with pytest.raises(zmsg.RpcException, match="stream()"):
            client.send("count", 1)


def test_the_sync_client_may_call_while_iterating_and_break_cancels(streams: Any) -> None:
    with zmsg.SyncClientProxy(streams.endpoint) as client:
        for x in client.stream("endless_sync", "sync-break"):
            assert client.send("plain", x) == 2 * x  # same thread, another call: no mixing
            if x == 5:
                break
        deadline = time.monotonic() + 20
        while client.send("progress", "sync-break")["finalized"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.send("progress", "sync-break")["finalized"] == 1


def test_the_sync_client_times_out_per_item(streams: Any) -> None:
    with (zmsg.SyncClientProxy(streams.endpoint) as client,
          client.stream("slow_after", {"n": 1, "name": "sync-timeout"}, timeout=0.3) as items):
        assert next(items) == 0
        with pytest.raises(zmsg.RequestTimeout):
            next(items)


def test_the_sync_client_sees_a_killed_service_at_once(doomed: ServedProcess) -> None:
    with zmsg.SyncClientProxy(doomed.endpoint, timeout=60) as client:
        got = 0
        killer: threading.Timer | None = None
        started = time.monotonic()
        with pytest.raises(zmsg.ServiceUnavailable):
            for _ in client.stream("slow_after", {"n": 3, "name": "killed"}):
                got += 1
                if got == 3:  # the stream now waits; kill the service under it
                    killer = threading.Timer(0.2, doomed.terminate, (signal.SIGKILL,))
                    killer.start()
        assert time.monotonic() - started < 60  # raised on the lost connection, not the timeout
        assert killer is not None
        killer.join()


# -- the wire ---------------------------------------------------------------------------------

def _raw_exchange(endpoint: str, frames: list[bytes], expect_reply: bool = True) -> list[tuple[int, int, Any]]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000 if expect_reply else 300)
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        out: list[tuple[int, int, Any]] = []
        try:
            while True:
                for kind, _f, cid, _t, _p, body in parse_frames(sock.recv_multipart()):
                    out.append((kind, cid, codec.decode(body) if body else None))
                if any(k in (KIND_ERROR, 6) for k, _c, _b in out) or not expect_reply:
                    return out
        except zmq.Again:
            return out
    finally:
        sock.close()


def _stats(endpoint: str) -> dict[str, int]:
    with zmsg.SyncClientProxy(endpoint) as client:
        stats: dict[str, int] = client.send("stats")
        return stats


def test_a_stream_from_another_language_follows_the_documented_records(streams: Any) -> None:
    batch = BatchBuilder()
    open_stream(batch, 9, 0, b"count", codec.encode(3), 2)
    records = _raw_exchange(streams.endpoint, batch.take(), expect_reply=False)
    # Only two items: the window granted two, and no more credit came (the service's stop ends it).
    assert records == [(KIND_STREAM_ITEM, 9, 0), (KIND_STREAM_ITEM, 9, 1)]


def test_a_malformed_credit_fails_the_stream_and_is_counted(streams: Any) -> None:
    batch = BatchBuilder()
    batch.add(KIND_REQUEST, FLAG_STREAM, 5, 0, b"endless", codec.encode("malformed-credit"))
    batch.add(KIND_CREDIT, 0, 5, 0, b"", codec.encode("lots"))
    before = _stats(streams.endpoint)["malformed_credits"]
    records = _raw_exchange(streams.endpoint, batch.take())
    assert records[-1][0] == KIND_ERROR and records[-1][1] == 5
    assert records[-1][2]["status"] == 400 and "Malformed credit" in records[-1][2]["message"]
    assert _stats(streams.endpoint)["malformed_credits"] == before + 1


def test_credit_for_no_stream_is_dropped_and_counted(streams: Any) -> None:
    batch = BatchBuilder()
    batch.add(KIND_CREDIT, 0, 77, 0, b"", codec.encode(10))
    before = _stats(streams.endpoint)["stale_credits"]
    assert _raw_exchange(streams.endpoint, batch.take(), expect_reply=False) == []
    assert _stats(streams.endpoint)["stale_credits"] == before + 1


def test_a_stream_item_sent_to_a_service_is_rejected(streams: Any) -> None:
    batch = BatchBuilder()
    batch.add(KIND_STREAM_ITEM, 0, 3, 0, b"", codec.encode(1))
    records = _raw_exchange(streams.endpoint, batch.take())
    assert records == [(KIND_ERROR, 3, {"status": 400, "message": "Unsupported record kind 5 (stream-item)"})]


async def test_the_client_rejects_and_counts_items_beyond_its_credit_and_cancels() -> None:
    """A misbehaving service (a raw ROUTER here) sends more items than it was granted."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    seen: list[tuple[int, int]] = []

    def misbehave() -> None:
        if not router.poll(20_000):
            return
        identity, *frames = router.recv_multipart()
        request, credit = parse_frames(frames)[:2]
        batch = BatchBuilder()
        for i in range(read_credit(credit[5]) + 3):
            batch.add(KIND_STREAM_ITEM, 0, request[2], i + 1, b"", codec.encode(i))  # numbered, as documented
        router.send_multipart([identity, *batch.take()])
        if router.poll(20_000):  # what the client says next
            seen.extend((k, cid) for k, _f, cid, _t, _p, _b in parse_frames(router.recv_multipart()[1:]))
        seen.append((request[0], request[2]))

    thread = threading.Thread(target=misbehave)
    thread.start()
    client = zmsg.ClientProxy(f"tcp://127.0.0.1:{port}", stream_window=4)
    try:
        got: list[int] = []
        with pytest.raises(zmsg.ProtocolError, match="more items"):
            async for x in client.stream("anything"):
                got.append(x)
        assert got == []  # nothing of a stream that broke the protocol is trusted
        assert client.stats.rejected_stream_records == 3
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 30)
        cid = seen[-1][1]
        assert seen == [(KIND_CANCEL, cid), (KIND_REQUEST, cid)]  # the cancel, then the request's id
    finally:
        await client.close()
        thread.join(30)
        router.close()
