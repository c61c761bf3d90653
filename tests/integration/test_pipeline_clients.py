"""Metadata, client middleware and typed replies from both clients, over real sockets.

The service (tests/services/pipelinesvc.py) runs as a ``zmsg serve`` process, once for the
module; every test runs with ``ClientProxy`` (on asyncio and uvloop) and ``SyncClientProxy``
where both apply, through one small adapter so both clients meet exactly the same assertions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import msgspec
import pytest

import zmsg
from tests.conftest import ServedProcess

pytestmark = pytest.mark.anyio


class Invoice(msgspec.Struct):
    id: int
    total: float
    lines: list[str]


@dataclasses.dataclass
class InvoiceDC:
    id: int
    total: float
    lines: list[str]


class Both:
    """One interface over both proxies: ``await both.send(...)`` runs the sync one in a thread."""

    def __init__(self, kind: str, endpoint: str, **options: Any) -> None:
        self.kind = kind
        self.proxy: Any = (zmsg.ClientProxy(endpoint, timeout=10, **options) if kind == "async"
                           else zmsg.SyncClientProxy(endpoint, timeout=10, **options))

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "async":
            return await self.proxy.send(*args, **kwargs)
        return await asyncio.to_thread(self.proxy.send, *args, **kwargs)

    async def emit(self, *args: Any, **kwargs: Any) -> None:
        if self.kind == "async":
            await self.proxy.emit(*args, **kwargs)
        else:
            await asyncio.to_thread(self.proxy.emit, *args, **kwargs)

    async def close(self) -> None:
        if self.kind == "async":
            await self.proxy.close()
        else:
            self.proxy.close()


@pytest.fixture(params=["async", "sync"])
def client_kind(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def make_client(pipeline_service: ServedProcess, client_kind: str) -> Any:
    made: list[Both] = []

    def factory(**options: Any) -> Both:
        if client_kind == "async" and "middleware" in options:
            options["middleware"] = [_as_async(mw) for mw in options["middleware"]]
        both = Both(client_kind, pipeline_service.endpoint, **options)
        made.append(both)
        return both

    yield factory
    for both in made:
        await both.close()


def _as_async(mw: Any) -> Any:
    """The async twin of a sync test middleware (``call_next()`` awaited instead of called)."""

    async def wrapper(call: zmsg.Call, call_next: Any) -> Any:
        result: Any = None

        def sync_next() -> Any:
            nonlocal result
            result = call_next()
            return _AWAIT

        outcome = mw(call, sync_next)
        if outcome is _AWAIT:
            return await result
        if isinstance(outcome, _Transform):
            return outcome.apply(await result)
        return outcome

    return wrapper


class _Await:
    pass


_AWAIT = _Await()


class _Transform:
    def __init__(self, apply: Any) -> None:
        self.apply = apply


async def _wait_for_event(client: Both, entry: str) -> dict[str, Any]:
    for _ in range(500):
        for seen in await client.send("events_seen"):
            if seen["entry"] == entry:
                return seen  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError(f"event {entry!r} was never handled")


async def test_per_call_metadata_and_proxy_defaults_merge_with_the_call_winning(make_client) -> None:
    plain = make_client()
    assert (await plain.send("whoami", 1, metadata={"authorization": "Bearer x"}))["metadata"] == {
        "authorization": "Bearer x"}
    assert (await plain.send("whoami", 1))["metadata"] == {}
    defaults = make_client(metadata={"tenant": "t1", "authorization": "Bearer default"})
    assert (await defaults.send("whoami", 1))["metadata"] == {"tenant": "t1", "authorization": "Bearer default"}
    assert (await defaults.send("whoami", 1, metadata={"authorization": "Bearer call"}))["metadata"] == {
        "tenant": "t1", "authorization": "Bearer call"}
    assert defaults.proxy.metadata == {"tenant": "t1", "authorization": "Bearer default"}  # untouched
    assert await defaults.send("secure.balance", metadata={"authorization": "Bearer good"}) == 42
    with pytest.raises(zmsg.RpcException) as info:
        await defaults.send("secure.balance")
    assert info.value.status == 401


async def test_emit_carries_metadata(make_client) -> None:
    client = make_client(metadata={"tenant": "t9"})
    entry = f"emit-{random.randrange(10**9)}"
    await client.emit("audit", entry, metadata={"trace": "abc"})
    assert (await _wait_for_event(client, entry))["metadata"] == {"tenant": "t9", "trace": "abc"}


async def test_metadata_the_wire_cannot_carry_is_refused_before_sending(make_client) -> None:
    client = make_client()
    with pytest.raises(TypeError, match="must be str"):
        await client.send("whoami", 1, metadata={"n": 1})
    with pytest.raises(ValueError, match="keys are 1 to 255 bytes"):
        await client.emit("audit", "x", metadata={"": "v"})
    with pytest.raises(ValueError, match="invalid metadata"):
        make_client(metadata={"k" * 300: "v"})


async def test_client_middleware_sees_the_call_adds_metadata_and_transforms_the_reply(make_client) -> None:
    seen: list[tuple[str, Any, Any, dict[str, str]]] = []

    def trace(call: zmsg.Call, call_next: Any) -> Any:
        seen.append((call.kind, call.pattern, call.data, dict(call.metadata)))
        call.metadata["traceparent"] = "00-trace-01"
        return call_next()

    def wrap_reply(call: zmsg.Call, call_next: Any) -> Any:
        if call.pattern == "order":
            outcome = call_next()
            return _Transform(lambda r: ["client", *r]) if outcome is _AWAIT else ["client", *outcome]
        return call_next()

    client = make_client(metadata={"tenant": "t1"}, middleware=[trace, wrap_reply])
    reply = await client.send("whoami", {"q": 1}, metadata={"authorization": "Bearer x"})
    assert reply["metadata"] == {"tenant": "t1", "authorization": "Bearer x", "traceparent": "00-trace-01"}
    assert seen[-1] == ("request", "whoami", {"q": 1}, {"tenant": "t1", "authorization": "Bearer x"})
    assert (await client.send("order"))[0] == "client"
    entry = f"mw-{random.randrange(10**9)}"
    await client.emit("audit", entry)
    assert seen[-1] == ("event", "audit", entry, {"tenant": "t1"})
    assert (await _wait_for_event(client, entry))["metadata"] == {"tenant": "t1", "traceparent": "00-trace-01"}


async def test_client_middleware_may_answer_without_sending_or_raise(make_client) -> None:
    def cache(call: zmsg.Call, call_next: Any) -> Any:
        if call.pattern == "cached":
            return "from the client cache"
        if call.pattern == "refused":
            raise zmsg.RpcException({"status": 403, "message": "refused by the client"})
        return call_next()

    client = make_client(middleware=[cache])
    assert await client.send("cached") == "from the client cache"  # no such pattern at the service
    with pytest.raises(zmsg.RpcException) as info:
        await client.send("refused")
    assert info.value.status == 403
    assert await client.send("square", 3) == 9


def test_middleware_of_the_wrong_kind_is_refused_at_construction() -> None:
    async def async_mw(call: zmsg.Call, call_next: Any) -> Any:
        return await call_next()

    def sync_mw(call: zmsg.Call, call_next: Any) -> Any:
        return call_next()

    with pytest.raises(TypeError, match="plain function"):
        zmsg.SyncClientProxy("tcp://127.0.0.1:1", middleware=[async_mw])
    with pytest.raises(TypeError, match="async function"):
        zmsg.ClientProxy("tcp://127.0.0.1:1", middleware=[sync_mw])


@pytest.mark.parametrize("response_type", [Invoice, InvoiceDC])
async def test_response_type_decodes_the_reply_into_that_type(make_client, response_type: type) -> None:
    client = make_client()
    invoice = await client.send("invoice", 7, response_type=response_type)
    assert invoice == response_type(id=7, total=9.5, lines=["widget"])
    assert await client.send("numbers", 3, response_type=list[int]) == [0, 1, 2]
    assert await client.send("numbers", 3) == [0, 1, 2]  # untyped calls are unchanged


async def test_a_reply_that_does_not_match_raises_reply_validation_error_naming_the_field(make_client) -> None:
    client = make_client()
    with pytest.raises(zmsg.ReplyValidationError, match=r"\$\.total") as info:
        await client.send("invoice", 0, response_type=Invoice)
    assert isinstance(info.value, zmsg.ZmsgError) and isinstance(info.value, ValueError)
    assert "Invoice" in str(info.value)
    with pytest.raises(zmsg.ReplyValidationError, match=r"\$\[3\]"):
        await client.send("numbers", -1, response_type=list[int])
    with pytest.raises(zmsg.RpcException):  # an error record is still the service's error
        await client.send("raise", "domain", response_type=Invoice)
    assert await client.send("invoice", 1, response_type=Invoice) == Invoice(1, 9.5, ["widget"])


async def test_typed_and_middleware_calls_mix_with_plain_ones_concurrently(pipeline_service) -> None:
    async def tag(call: zmsg.Call, call_next: Any) -> Any:
        call.metadata["n"] = str(call.data)
        return await call_next()

    async with zmsg.ClientProxy(pipeline_service.endpoint, timeout=10, middleware=[tag]) as client:
        replies = await asyncio.gather(*(client.send("whoami", i) for i in range(100)),
                                       *(client.send("invoice", i + 1, response_type=Invoice) for i in range(100)))
        assert [r["metadata"] for r in replies[:100]] == [{"n": str(i)} for i in range(100)]
        assert [r.id for r in replies[100:]] == list(range(1, 101))
