"""A service with streaming handlers, started by the stream tests with ``zmsg serve``."""

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import zmsg

service = zmsg.Service("streams")

# What the generators did, for the tests to ask: items produced so far, and finally-blocks run.
produced: dict[str, int] = {}
finalized: dict[str, int] = {}


@service.message_pattern("count")
async def count(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@service.message_pattern("count_sync")
def count_sync(n: int) -> Iterator[int]:
    yield from range(n)


@service.message_pattern("tagged")
async def tagged(spec: dict[str, int]) -> AsyncIterator[list[int]]:
    """Items that name their stream, so interleaved streams can be checked for mixing."""
    for i in range(spec["n"]):
        if i % 7 == 0:
            await asyncio.sleep(0)
        yield [spec["tag"], i]


@service.message_pattern("fail_after")
async def fail_after(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i
    raise zmsg.RpcException({"status": 409, "message": f"stopped after {n}"})


@service.message_pattern("crash_after")
def crash_after(n: int) -> Iterator[int]:
    yield from range(n)
    raise ValueError("internal detail that must not leak")


@service.message_pattern("endless")
async def endless(name: str) -> AsyncIterator[int]:
    """Would yield 10 million items; records how far it got and whether its finally ran."""
    produced[name] = 0
    try:
        for i in range(10_000_000):
            produced[name] = i + 1
            yield i
    finally:
        finalized[name] = finalized.get(name, 0) + 1


@service.message_pattern("endless_sync")
def endless_sync(name: str) -> Iterator[int]:
    produced[name] = 0
    try:
        for i in range(10_000_000):
            produced[name] = i + 1
            yield i
    finally:
        finalized[name] = finalized.get(name, 0) + 1


@service.message_pattern("slow_after")
async def slow_after(spec: dict[str, Any]) -> AsyncIterator[int]:
    """``spec["n"]`` items, then silence (a consumer's per-item timeout fires)."""
    try:
        for i in range(spec["n"]):
            yield i
        await asyncio.sleep(3600)
        yield -1
    finally:
        finalized[spec["name"]] = finalized.get(spec["name"], 0) + 1


@service.message_pattern("progress")
def progress(name: str) -> dict[str, int]:
    return {"produced": produced.get(name, 0), "finalized": finalized.get(name, 0)}


@service.message_pattern("rss")
def rss() -> int:
    """Resident memory of this process in bytes (from /proc)."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@service.message_pattern("plain")
def plain(x: int) -> int:
    return x * 2


@service.message_pattern("stats")
def stats() -> dict[str, int]:
    return service.stats.as_dict()


# -- the request pipeline applies to streams ---------------------------------------------------

class Refused(Exception):
    pass


@service.exception_handler(Refused)
def refused(exc: Refused, ctx: zmsg.Context) -> dict[str, Any]:
    return {"status": 418, "message": f"refused in a {ctx.kind}"}


async def guard(ctx: zmsg.Context, call_next: Any) -> Any:
    if ctx.metadata.get("deny"):
        raise zmsg.RpcException({"status": 401, "message": f"no {ctx.kind} for you"})
    return await call_next()


@service.message_pattern("whoami", use=[guard])
async def whoami(n: int, ctx: zmsg.Context) -> AsyncIterator[dict[str, Any]]:
    for _ in range(n):
        yield {"kind": ctx.kind, "tenant": ctx.metadata.get("tenant")}


@service.message_pattern("refuse_after")
async def refuse_after(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i
    raise Refused()


@service.message_pattern("forever")
async def forever(name: str) -> AsyncIterator[int]:
    """Never ends by itself: only a cancel (or the caller found gone) stops it."""
    i = 0
    try:
        while True:
            yield i
            i += 1
    finally:
        finalized[name] = finalized.get(name, 0) + 1
