"""A request the service refuses without running it (429: this client's replies are piling up)
is sent again by both clients, within the call's timeout: a client that reads its replies gets
every answer, however many large replies it pipelines; any other error is an answer.

(A ``SyncClientProxy`` thread has one request in flight on its own socket, so the service's
budget never refuses it; the forged refusals below check that it follows the same rule.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
import zmq

import zmsg
from zmsg.protocol import FLAG_SLOW_DOWN, INFO_PATTERN, KIND_ERROR, KIND_REPLY, KIND_REQUEST, BatchBuilder, parse_frames

pytestmark = pytest.mark.anyio

KiB = 1024


@pytest.fixture
def bulk(serve_process: Any) -> Any:
    return serve_process("bulksvc:service")


async def test_a_reading_client_pipelining_large_replies_gets_every_one(bulk: Any) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from zmsg.metrics import instrument_client

    registry = prometheus_client.CollectorRegistry()
    async with zmsg.ClientProxy(bulk.endpoint, timeout=30) as client:
        instrument_client(client, registry)
        async def caller() -> list[int]:
            return [len(await client.send("blob", 256 * KiB)) for _ in range(8)]

        lengths = await asyncio.gather(*(caller() for _ in range(32)))
        info = await client.send(INFO_PATTERN)
    assert lengths == [[256 * KiB] * 8] * 32
    refused = info["stats"]["requests_refused"]
    assert refused >= 1, "the budget was never reached: the test did not test anything"
    assert client.stats.resent == refused  # every refusal reached the client and was re-sent
    assert client.stats.timeouts == 0
    assert registry.get_sample_value("zmsg_client_resent_total", {"service": "bulk"}) == refused
    assert client.stats.send_window_cuts >= 1  # and it kept fewer requests out afterwards
    assert registry.get_sample_value("zmsg_client_send_window_cuts_total", {"service": "bulk"}) == \
        client.stats.send_window_cuts


async def test_after_refusals_fewer_requests_are_kept_out_then_more_as_replies_come(bulk: Any) -> None:
    async with zmsg.ClientProxy(bulk.endpoint, max_in_flight=64) as client:
        assert client.send_window == 64
        with pytest.raises((zmsg.RpcException, zmsg.RequestTimeout)):
            await client.send("refuse", None, timeout=0.3)
        assert client.stats.send_window_cuts == client.stats.resent >= 1  # each re-send was sent after a cut
        assert client.send_window == 1

        async def caller(i: int) -> int:
            return len(await client.send("blob", i))

        # Small replies never go over the budget: the window doubles after each window's worth
        # of replies (1 + 2 + ... + 32 of them) back to max_in_flight, every caller served.
        assert await asyncio.gather(*(caller(i) for i in range(400))) == list(range(400))
        assert client.send_window == 64
        assert client.stats.send_window_cuts == client.stats.resent


def _check_last_refusal(raised: BaseException) -> None:
    # The last refusal, or, when the last re-send (sent with >= 10 ms left) was not answered in
    # time on a loaded machine, the call's own timeout.
    if isinstance(raised, zmsg.RpcException):
        assert raised.status == 503 and raised.error["not_run"] is True
    else:
        assert isinstance(raised, zmsg.RequestTimeout)


async def test_a_refusal_is_re_sent_until_the_calls_timeout_then_raised(bulk: Any) -> None:
    async with zmsg.ClientProxy(bulk.endpoint) as client:
        started = time.monotonic()
        with pytest.raises((zmsg.RpcException, zmsg.RequestTimeout)) as raised:
            await client.send("refuse", None, timeout=0.3)
        elapsed = time.monotonic() - started
        calls = await client.send("calls", "refuse")
    _check_last_refusal(raised.value)
    assert elapsed < 5  # ended within the call's own timeout, re-sends included
    assert calls >= 2 and calls == client.stats.resent + 1


def test_a_refusal_is_re_sent_until_the_calls_timeout_then_raised_sync(bulk: Any) -> None:
    with zmsg.SyncClientProxy(bulk.endpoint) as client:
        with pytest.raises((zmsg.RpcException, zmsg.RequestTimeout)) as raised:
            client.send("refuse", None, timeout=0.3)
        calls = client.send("calls", "refuse")
    _check_last_refusal(raised.value)
    assert calls >= 2 and calls == client.resent + 1


async def test_a_handlers_own_429_is_an_answer_and_not_re_sent(bulk: Any) -> None:
    async with zmsg.ClientProxy(bulk.endpoint) as client:
        with pytest.raises(zmsg.RpcException, match="slow down"):
            await client.send("rate_limited", None)
        assert await client.send("calls", "rate_limited") == 1
        assert client.stats.resent == 0
    with zmsg.SyncClientProxy(bulk.endpoint) as sync_client:
        with pytest.raises(zmsg.RpcException, match="slow down"):
            sync_client.send("rate_limited", None)
        assert sync_client.send("calls", "rate_limited") == 2
        assert sync_client.resent == 0


def test_replies_say_slow_down_past_half_the_budget_before_requests_are_refused(bulk: Any) -> None:
    """On the wire, as a client in another language sees it: one batch of 12 requests for
    100 KiB replies to a service with one reply message in ZeroMQ and a 256 KiB budget. Once the
    replies back up, the first carry SLOW_DOWN (backlog over 128 KiB), the next are refused."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(bulk.endpoint)
    try:
        batch = BatchBuilder()
        for cid in range(1, 13):
            batch.add(KIND_REQUEST, 0, cid, 0, b"blob", msgspec.msgpack.encode(100 * KiB))
        sock.send_multipart(batch.take())
        answers: dict[int, str] = {}
        while len(answers) < 12:
            for kind, flags, cid, _ttl, _pattern, body in parse_frames(sock.recv_multipart(), 0):
                if kind == KIND_REPLY:
                    assert len(msgspec.msgpack.decode(bytes(body))) == 100 * KiB
                    answers[cid] = "slow down" if flags & FLAG_SLOW_DOWN else "reply"
                else:
                    assert kind == KIND_ERROR and msgspec.msgpack.decode(bytes(body))["not_run"] is True
                    answers[cid] = "refused"
    finally:
        sock.close(linger=0)
    seen = [answers[cid] for cid in range(1, 13)]
    assert "slow down" in seen, seen
    order = {"reply": 0, "slow down": 1, "refused": 2}
    assert seen == sorted(seen, key=order.__getitem__), seen  # the backlog only grew meanwhile
