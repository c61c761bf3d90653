"""The socket-free pipeline: middleware chains, exception handlers, and how a service binds them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import msgspec
import pytest

import zmsg
from zmsg.pipeline import NO_MATCH, CallNext, ExceptionHandlers, check_middleware, run_chain
from zmsg.service.handlers import ChainedHandler, Handler


class Order(msgspec.Struct):
    n: int


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_chain_runs_outermost_first_and_returns_the_transformed_result() -> None:
    seen: list[str] = []

    def layer(name: str) -> Any:
        async def mw(ctx: Any, call_next: CallNext) -> Any:
            seen.append(f"{name}>")
            result = await call_next()
            seen.append(f"<{name}")
            return f"{name}({result})"

        return mw

    async def endpoint() -> str:
        seen.append("handler")
        return "r"

    assert _run(run_chain((layer("a"), layer("b")), None, endpoint)) == "a(b(r))"
    assert seen == ["a>", "b>", "handler", "<b", "<a"]
    assert _run(run_chain((), None, lambda: "sync result")) == "sync result"


def test_a_middleware_that_does_not_call_next_skips_the_handler_and_errors_propagate() -> None:
    called: list[int] = []

    async def short_circuit(ctx: Any, call_next: CallNext) -> str:
        return "cached"

    async def guard(ctx: Any, call_next: CallNext) -> Any:
        raise zmsg.RpcException({"status": 401, "message": "no"})

    assert _run(run_chain((short_circuit,), None, lambda: called.append(1))) == "cached"
    with pytest.raises(zmsg.RpcException):
        _run(run_chain((guard,), None, lambda: called.append(1)))
    assert called == []


def test_only_async_middleware_is_accepted() -> None:
    class AsyncCallable:
        async def __call__(self, ctx: Any, call_next: CallNext) -> Any:
            return await call_next()

    check_middleware(AsyncCallable())
    with pytest.raises(TypeError, match="must be an async function"):
        check_middleware(lambda ctx, call_next: call_next())
    with pytest.raises(TypeError, match="must be an async function"):
        check_middleware("not callable")
    service = zmsg.Service("s")
    with pytest.raises(TypeError, match="must be an async function"):
        service.use(lambda ctx, call_next: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must be an async function"):
        service.message_pattern("p", use=[lambda ctx, call_next: None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of middleware"):
        zmsg.event_pattern("p", use="nope")  # type: ignore[arg-type]


class Base(Exception):
    pass


class Child(Base):
    pass


class GrandChild(Child):
    pass


def test_the_most_specific_class_in_the_mro_wins() -> None:
    handlers = ExceptionHandlers()
    handlers.add(Base, lambda exc, ctx: "base")
    handlers.add(Child, lambda exc, ctx: {"status": 404, "message": "child"})
    assert handlers.handle(Base(), None) == "base"
    assert handlers.handle(GrandChild(), None) == {"status": 404, "message": "child"}
    assert handlers.handle(ValueError(), None) is NO_MATCH
    handlers.add(Exception, lambda exc, ctx: "anything")  # registering clears the per-type cache
    assert handlers.handle(ValueError(), None) == "anything"
    assert handlers.handle(GrandChild(), None) == {"status": 404, "message": "child"}


def test_exception_handler_outcomes() -> None:
    handlers = ExceptionHandlers()

    async def async_handler(exc: Exception, ctx: Any) -> dict[str, Any]:
        return {"status": 422, "message": str(exc), "ctx": ctx}

    def reraise(exc: Exception, ctx: Any) -> Any:
        raise zmsg.RpcException("kept")

    handlers.add(Child, async_handler)
    handlers.add(KeyError, reraise)
    handlers.add(IndexError, lambda exc, ctx: 7)
    assert _run(handlers.handle(Child("x"), "the ctx")) == {"status": 422, "message": "x", "ctx": "the ctx"}
    assert handlers.handle(KeyError(), None) == "kept"
    with pytest.raises(TypeError, match="must return a dict or a str"):
        handlers.handle(IndexError(), None)
    with pytest.raises(TypeError, match="Exception subclass"):
        handlers.add(int, reraise)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already has an exception handler"):
        handlers.add(Child, reraise)


def _bound(service: zmsg.Service, route: bytes) -> Handler:
    service._bind_pipeline()
    return service._message_handlers[route]


def test_no_middleware_means_no_wrapper_and_sync_handlers_stay_inline() -> None:
    service = zmsg.Service("plain")

    @service.message_pattern("p")
    def handler(n: int) -> int:
        return n

    bound = _bound(service, b"p")
    assert type(bound) is Handler and not bound.is_async and not bound.wants_context


def test_middleware_wraps_each_handler_once_and_rebinding_does_not_stack() -> None:
    service = zmsg.Service("wrapped")

    async def mw(ctx: Any, call_next: CallNext) -> Any:
        return await call_next()

    @service.message_pattern("p", use=[mw])
    def handler(n: int) -> int:
        return n

    @service.message_pattern("q")
    def other(n: int) -> int:
        return n

    first = _bound(service, b"p")
    assert isinstance(first, ChainedHandler) and first.is_async and first.chain == (mw,)
    assert type(_bound(service, b"q")) is Handler  # use= applies to its own handler only
    service.use(mw)
    again = _bound(service, b"p")
    assert isinstance(again, ChainedHandler) and again.chain == (mw, mw) and again.inner is first.inner
    assert isinstance(_bound(service, b"q"), ChainedHandler)


def test_exception_handlers_alone_keep_the_direct_call_but_build_the_context() -> None:
    service = zmsg.Service("mapped")

    @service.exception_handler(KeyError)
    def mapped(exc: KeyError, ctx: zmsg.Context) -> str:
        return "mapped"

    @service.message_pattern("p")
    def handler(n: int) -> int:
        return n

    bound = _bound(service, b"p")
    assert type(bound) is Handler and not bound.is_async and bound.wants_context


def test_the_pipeline_imports_neither_zmq_nor_asyncio() -> None:
    code = "import sys, zmsg.pipeline; print(sorted(m for m in ('zmq', 'asyncio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_in_memory_test_client_runs_the_same_pipeline() -> None:
    from zmsg.testing import SyncTestClient

    service = zmsg.Service("memory")
    seen: list[str] = []

    async def guard(ctx: zmsg.Context, call_next: CallNext) -> Any:
        if ctx.metadata.get("authorization") != "Bearer ok":
            raise zmsg.RpcException({"status": 401, "message": "Unauthorized"})
        return await call_next()

    async def tag(ctx: zmsg.Context, call_next: CallNext) -> Any:
        seen.append(f"{ctx.kind}:{ctx.pattern}")
        return await call_next()

    service.use(tag)

    @service.message_pattern("balance", use=[guard])
    def balance(ctx: zmsg.Context) -> dict[str, str]:
        return dict(ctx.metadata)

    @service.message_pattern("lookup")
    def lookup(key: str) -> str:
        raise KeyError(key)

    @service.event_pattern("audit")
    def audit(entry: str) -> None:
        seen.append(entry)

    @service.exception_handler(LookupError)
    async def missing(exc: LookupError, ctx: zmsg.Context) -> dict[str, Any]:
        return {"status": 404, "message": f"no {exc.args[0]}"}

    with SyncTestClient(service) as client:
        assert client.send("balance", metadata={"authorization": "Bearer ok"}) == {"authorization": "Bearer ok"}
        with pytest.raises(zmsg.RpcException) as info:
            client.send("balance")
        assert info.value.error == {"status": 401, "message": "Unauthorized"}
        with pytest.raises(zmsg.RpcException) as info:
            client.send("lookup", "k")
        assert info.value.error == {"status": 404, "message": "no k"}
        client.emit("audit", "entry", metadata={"trace": "t"})
        assert client.send("balance", metadata={"authorization": "Bearer ok"}, response_type=dict[str, str])
    assert seen == ["request:balance", "request:balance", "request:lookup", "event:audit", "entry",
                    "request:balance"]


def test_a_chained_handler_keeps_everything_the_plain_one_knows() -> None:
    """The schema ($zmsg.schema) and anything else reading handlers sees the same handler."""
    import dataclasses

    service = zmsg.Service("typed")

    async def mw(ctx: Any, call_next: CallNext) -> Any:
        return await call_next()

    @service.message_pattern("p", use=[mw])
    def handler(order: Order, ctx: zmsg.Context) -> list[int]:
        return [order.n]

    plain = service._message_handlers[b"p"]
    chained = _bound(service, b"p")
    assert isinstance(chained, ChainedHandler)
    for field in dataclasses.fields(Handler):
        if field.name not in ("is_async", "wants_context"):
            assert getattr(chained, field.name) == getattr(plain, field.name), field.name
    assert chained.payload_type is Order and chained.return_type == list[int]
