"""Metadata, middleware and exception handlers over real sockets (service in a ``zmsg serve`` process).

The service (tests/services/pipelinesvc.py) is started once for the module; tests only compare
counters before and after, so they do not depend on each other's order. Requests with metadata
are built with the sans-io protocol functions and sent from a raw DEALER, the way a client in
another language would; requests without go through ``ClientProxy``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

import msgspec
import pytest
import zmq
import zmq.asyncio

import zmsg
from tests.conftest import ServedProcess
from zmsg.codec import encode_pattern
from zmsg.protocol import (
    FLAG_METADATA,
    KIND_ERROR,
    KIND_EVENT,
    KIND_REPLY,
    KIND_REQUEST,
    BatchBuilder,
    encode_metadata,
    parse_frames,
)

pytestmark = pytest.mark.anyio

_ids = itertools.count(random.randrange(1, 1 << 40))


class RawCaller:
    """A DEALER speaking the wire protocol directly: records with or without a metadata section."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    async def send_record(self, kind: int, pattern: Any, payload: Any, metadata: dict[str, str] | None = None,
                          body: bytes | None = None) -> int:
        cid = next(_ids) if kind == KIND_REQUEST else 0
        body = msgspec.msgpack.encode(payload) if body is None else body
        flags = 0
        if metadata is not None:
            body = encode_metadata(metadata, body)
            flags = FLAG_METADATA
        batch = BatchBuilder()
        batch.add(kind, flags, cid, 0, encode_pattern(pattern), body)
        await self.sock.send_multipart(batch.take())
        return cid

    async def call(self, pattern: Any, payload: Any = None, metadata: dict[str, str] | None = None,
                   body: bytes | None = None) -> tuple[int, Any]:
        cid = await self.send_record(KIND_REQUEST, pattern, payload, metadata, body)
        while True:
            assert await self.sock.poll(10_000), "the service did not answer"
            for kind, _flags, rcid, _ttl, _pattern, reply in parse_frames(await self.sock.recv_multipart()):
                if rcid == cid:
                    return kind, msgspec.msgpack.decode(reply)

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture
async def raw(pipeline_service: ServedProcess) -> Any:
    caller = RawCaller(pipeline_service.endpoint)
    try:
        yield caller
    finally:
        caller.close()


async def _stats(client: zmsg.ClientProxy) -> dict[str, int]:
    info = await client.send("$zmsg.info")
    return info["stats"]  # type: ignore[no-any-return]


async def test_metadata_reaches_the_context_read_only_and_empty_when_none_was_sent(pipeline_service, raw) -> None:
    metadata = {"authorization": "Bearer x", "traceparent": "00-abc-01", "ключ": "значение"}
    kind, reply = await raw.call("whoami", {"n": 1}, metadata)
    assert kind == KIND_REPLY
    assert reply == {"metadata": metadata, "kind": "request", "pattern": "whoami", "payload": {"n": 1},
                     "read_only": True}
    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10) as client:
        assert (await client.send("whoami", [1]))["metadata"] == {}
    # an empty section (flag set, no entries) is valid and also means "no metadata"
    assert (await raw.call("whoami", None, {}))[1]["metadata"] == {}


async def test_a_guard_stops_the_call_before_the_handler(pipeline_service, raw) -> None:
    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10) as client:
        before = (await client.send("calls"))["guarded"]
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("secure.balance")
        assert info.value.error == {"status": 401, "message": "Unauthorized"}
        assert await raw.call("secure.balance", None, {"authorization": "Bearer wrong"}) == (
            KIND_ERROR, {"status": 401, "message": "Unauthorized"})
        assert (await client.send("calls"))["guarded"] == before
        assert await raw.call("secure.balance", None, {"authorization": "Bearer good"}) == (KIND_REPLY, 42)
        assert (await client.send("calls"))["guarded"] == before + 1


async def test_middleware_runs_outermost_first_around_the_handlers_own(pipeline_service) -> None:
    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10) as client:
        assert await client.send("order") == ["outer:before", "inner:before", "handler", "inner:after", "outer:after"]


async def test_a_middleware_may_transform_the_result_or_answer_without_the_handler(pipeline_service) -> None:
    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10) as client:
        assert await client.send({"cmd": "double"}, 21) == 42
        n = random.randrange(10**6, 10**9)
        before = (await client.send("calls"))["cached"]
        assert await client.send("square", n) == n * n
        assert await client.send("square", n) == n * n  # answered by the cache middleware
        assert (await client.send("calls"))["cached"] == before + 1
        # several at once: the pipeline keeps each call's result apart
        values = [random.randrange(10**6) for _ in range(200)]
        assert await asyncio.gather(*(client.send("square", v) for v in values)) == [v * v for v in values]


async def test_controller_methods_take_use_too(pipeline_service, raw) -> None:
    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10) as client:
        assert await client.send("ctl.double", 5) == 10
        entry = f"ctl-{random.randrange(10**9)}"
        await client.emit("ctl.audit", entry)  # through the publisher, without metadata
        assert await _wait_for_event(client, entry) == {"entry": entry, "metadata": {}, "kind": "event",
                                                         "pattern": "ctl.audit"}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("domain", {"status": 422, "message": "domain rule broken", "pattern": "raise", "kind": "request"}),
        ("not_found", {"status": 404, "message": "not found: no such thing"}),  # async, more specific
        ("missing_widget", {"status": 404, "message": "not found: widget 7"}),  # nearest class in the MRO
        ("unmapped", {"status": 500, "message": "Internal server error"}),  # no match: today's rule
        ("rpc", {"status": 409, "message": "conflict"}),  # RpcException as is
        ("bad_mapping", {"status": 500, "message": "Internal server error"}),  # mapped to a non-error
    ],
)
async def test_exception_handlers_map_handler_errors(pipeline_service, name: str, error: dict[str, Any]) -> None:
    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10) as client:
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("raise", name)
        assert info.value.error == error


async def test_exception_handlers_map_middleware_errors_and_the_handler_never_runs(pipeline_service) -> None:
    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10) as client:
        with pytest.raises(zmsg.RpcException) as info:
            await client.send("fail-in-middleware", "fail-in-middleware")
        assert info.value.error == {"status": 422, "message": "raised by a middleware",
                                    "pattern": "fail-in-middleware", "kind": "request"}
        assert await client.send("fail-in-middleware", "fine") == "the middleware raised first"


@pytest.mark.parametrize(
    "section",
    [b"\x05\x00ab", b"\x03\x00\x00\x00\x00", b"\x04\x00\x01\xff\x00\x00", b"\x08\x00\x01a\x00\x00\x01a\x00\x00", b""],
    ids=["overlong", "empty-key", "not-utf8", "duplicate-key", "no-section"],
)
async def test_a_malformed_metadata_section_gets_a_400_is_counted_and_the_loop_goes_on(
        pipeline_service, raw, section: bytes) -> None:
    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10) as client:
        before = (await _stats(client))["malformed_metadata"]
        cid = next(_ids)
        batch = BatchBuilder()
        batch.add(KIND_REQUEST, FLAG_METADATA, cid, 0, b"whoami", section)
        batch.add(KIND_REQUEST, 0, cid + 1, 0, b"order", b"\xc0")  # the next record in the batch still runs
        await raw.sock.send_multipart(batch.take())
        replies: dict[int, tuple[int, Any]] = {}
        while len(replies) < 2:
            assert await raw.sock.poll(10_000), "the service did not answer"
            for kind, _f, rcid, _t, _p, body in parse_frames(await raw.sock.recv_multipart()):
                replies[rcid] = (kind, msgspec.msgpack.decode(body))
        kind, error = replies[cid]
        assert kind == KIND_ERROR and error["status"] == 400 and error["message"].startswith("Malformed metadata: ")
        assert replies[cid + 1][0] == KIND_REPLY
        assert (await _stats(client))["malformed_metadata"] == before + 1


async def _wait_for_event(client: zmsg.ClientProxy, entry: str) -> dict[str, Any]:
    for _ in range(500):
        for seen in await client.send("events_seen"):
            if seen["entry"] == entry:
                return seen  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError(f"event {entry!r} was never handled")


async def test_events_carry_metadata_through_middleware_and_exception_handlers_only_log(pipeline_service, raw) -> None:
    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10) as client:
        before = await _stats(client)
        entry = f"entry-{random.randrange(10**9)}"
        await raw.send_record(KIND_EVENT, "audit", entry, {"tenant": "t1"})
        assert await _wait_for_event(client, entry) == {"entry": entry, "metadata": {"tenant": "t1"},
                                                         "kind": "event", "pattern": "audit"}
        await raw.send_record(KIND_EVENT, "audit", "explode", None)
        await _wait_for_event(client, "explode")
        for _ in range(500):
            after = await _stats(client)
            if after["exceptions_handled"] > before["exceptions_handled"]:
                break
            await asyncio.sleep(0.02)
        assert after["exceptions_handled"] == before["exceptions_handled"] + 1
        assert after["event_handler_errors"] == before["event_handler_errors"] + 1
        # a malformed section on an event: dropped, counted, the loop goes on
        batch = BatchBuilder()
        batch.add(KIND_EVENT, FLAG_METADATA, 0, 0, b"audit", b"\x09\x00")
        await raw.sock.send_multipart(batch.take())
        assert await client.send("order")
        for _ in range(500):
            if (await _stats(client))["malformed_metadata"] > after["malformed_metadata"]:
                break
            await asyncio.sleep(0.02)
        assert (await _stats(client))["malformed_metadata"] == after["malformed_metadata"] + 1


def _zmsg(*args: str, env: dict[str, str] | None = None) -> Any:
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "zmsg", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_zmsg_call_and_emit_send_metadata_over_the_configured_one(pipeline_service) -> None:
    import json

    env = {"ZMSG_CLIENT_METADATA": '{ tenant = "t1", authorization = "Bearer from-env" }'}
    result = _zmsg("call", pipeline_service.endpoint, "whoami", "1", "-m", "authorization=Bearer x=y",
                   "--metadata", "trace-id=t1", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metadata"] == {"tenant": "t1", "authorization": "Bearer x=y", "trace-id": "t1"}
    entry = f"cli-{random.randrange(10**9)}"
    result = _zmsg("emit", pipeline_service.endpoint, "audit", json.dumps(entry), "-m", "source=cli")
    assert result.returncode == 0, result.stderr
    with zmsg.SyncClientProxy(pipeline_service.endpoint, timeout=10) as client:
        for _ in range(500):
            seen = client.send("events_seen")
            if any(s["entry"] == entry for s in seen):
                break
            time.sleep(0.02)
    assert [s["metadata"] for s in seen if s["entry"] == entry] == [{"source": "cli"}]
    bad = _zmsg("call", pipeline_service.endpoint, "whoami", "-m", "no-equals-sign")
    assert bad.returncode == 2 and "expected KEY=VALUE" in bad.stderr
