"""Metadata, middleware and exception handlers, served by ``zmsg serve`` in the pipeline tests."""

from __future__ import annotations

import asyncio
from typing import Any

import zmsg
from zmsg.pipeline import CallNext

service = zmsg.Service("pipeline")


class DomainError(Exception):
    """A domain error the service maps to a 422."""


class NotFound(DomainError):
    """More specific than DomainError: its own (async) exception handler wins."""


class MissingWidget(NotFound):
    """No handler of its own: the nearest class in its MRO (NotFound) answers."""


class Unmapped(Exception):
    """No exception handler anywhere in its MRO: today's rules (a 500) apply."""


calls: dict[str, int] = {"cached": 0, "guarded": 0}
events_seen: list[dict[str, Any]] = []


async def auth_guard(ctx: zmsg.Context, call_next: CallNext) -> Any:
    """Service-wide, outermost: patterns under ``secure.`` need the right token."""
    if ctx.pattern.startswith("secure.") and ctx.metadata.get("authorization") != "Bearer good":
        raise zmsg.RpcException({"status": 401, "message": "Unauthorized"})
    return await call_next()


def _tagger(name: str) -> Any:
    async def tag(ctx: zmsg.Context, call_next: CallNext) -> Any:
        if ctx.pattern != "order":
            return await call_next()
        return [f"{name}:before", *(await call_next()), f"{name}:after"]

    tag.__qualname__ = f"tag_{name}"
    return tag


async def failing_middleware(ctx: zmsg.Context, call_next: CallNext) -> Any:
    if ctx.payload == "fail-in-middleware":
        raise DomainError("raised by a middleware")
    return await call_next()


_cache: dict[Any, Any] = {}


async def cache(ctx: zmsg.Context, call_next: CallNext) -> Any:
    """Answers repeated payloads without calling the handler."""
    if ctx.payload in _cache:
        return _cache[ctx.payload]
    result = _cache[ctx.payload] = await call_next()
    return result


async def double_result(ctx: zmsg.Context, call_next: CallNext) -> Any:
    return (await call_next()) * 2


service.use(auth_guard)
service.use(_tagger("outer"))
service.use(failing_middleware)


@service.message_pattern("order", use=[_tagger("inner")])
def order() -> list[str]:
    """Sync handler: with middleware it runs inside the pipeline's coroutine."""
    return ["handler"]


@service.message_pattern("whoami")
async def whoami(data: Any, ctx: zmsg.Context) -> dict[str, Any]:
    return {"metadata": dict(ctx.metadata), "kind": ctx.kind, "pattern": ctx.pattern, "payload": ctx.payload,
            "read_only": not hasattr(ctx.metadata, "__setitem__")}


@service.message_pattern("secure.balance")
def balance() -> int:
    calls["guarded"] += 1
    return 42


@service.message_pattern("square", use=[cache])
def square(n: int) -> int:
    calls["cached"] += 1
    return n * n


@service.message_pattern({"cmd": "double"}, use=[double_result])
async def identity(n: int) -> int:
    await asyncio.sleep(0)
    return n


@service.message_pattern("calls")
def get_calls() -> dict[str, int]:
    return calls


@service.message_pattern("raise")
def raise_named(name: str) -> None:
    errors: dict[str, Exception] = {
        "domain": DomainError("domain rule broken"),
        "not_found": NotFound("no such thing"),
        "missing_widget": MissingWidget("widget 7"),
        "unmapped": Unmapped("secret internals"),
        "rpc": zmsg.RpcException({"status": 409, "message": "conflict"}),
        "bad_mapping": BadMapping("mapped to something that is not an error object"),
    }
    raise errors[name]


@service.message_pattern("fail-in-middleware")
def never_runs(data: str) -> str:
    return "the middleware raised first"


class BadMapping(Exception):
    pass


@service.exception_handler(DomainError)
def domain_error(exc: DomainError, ctx: zmsg.Context) -> dict[str, Any]:
    return {"status": 422, "message": str(exc), "pattern": ctx.pattern, "kind": ctx.kind}


@service.exception_handler(NotFound)
async def not_found(exc: NotFound, ctx: zmsg.Context) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"status": 404, "message": f"not found: {exc}"}


@service.exception_handler(BadMapping)
def bad_mapping(exc: BadMapping, ctx: zmsg.Context) -> Any:
    return 12345  # neither a dict nor a str: the caller gets a 500


@service.event_pattern("audit", use=[_tagger("event")])
def audit(entry: str, ctx: zmsg.Context) -> None:
    events_seen.append({"entry": entry, "metadata": dict(ctx.metadata), "kind": ctx.kind, "pattern": ctx.pattern})
    if entry == "explode":
        raise NotFound("event handler failure")


@service.message_pattern("events_seen")
def get_events_seen() -> list[dict[str, Any]]:
    return events_seen


class Counter:
    """A controller: the module-level decorators take ``use=[...]`` too."""

    @zmsg.message_pattern("ctl.double", use=[double_result])
    def double(self, n: int) -> int:
        return n

    @zmsg.event_pattern("ctl.audit", use=[_tagger("ctl")])
    async def audit(self, entry: str, ctx: zmsg.Context) -> None:
        events_seen.append({"entry": entry, "metadata": dict(ctx.metadata), "kind": ctx.kind, "pattern": ctx.pattern})


service.include(Counter())


@service.message_pattern("invoice")
def invoice(invoice_id: int) -> dict[str, Any]:
    """A reply for typed decoding; id 0 answers with a wrong field type."""
    if invoice_id == 0:
        return {"id": 0, "total": "not a number", "lines": []}
    return {"id": invoice_id, "total": 9.5, "lines": ["widget"]}


@service.message_pattern("numbers")
def numbers(count: int) -> list[Any]:
    return [0, 1, 2, "seven"] if count < 0 else list(range(count))
