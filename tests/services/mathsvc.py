"""A service the integration tests start in its own process with ``zmsg serve``."""

import asyncio
import os
import time

import msgspec

import zmsg

service = zmsg.Service("math")


class UserCreated(msgspec.Struct):
    user_id: str
    email: str


@service.message_pattern({"cmd": "sum"})
def accumulate(data: list[int]) -> int:
    return sum(data)


@service.message_pattern("echo")
async def echo(data: object) -> object:
    return data


@service.message_pattern("sleep")
async def sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@service.message_pattern("sleep_sync")
def sleep_sync(seconds: float) -> float:
    """Blocks the service's loop: a reply that cannot be cancelled, only arrive late."""
    time.sleep(seconds)
    return seconds


cancelled: list[float] = []


@service.message_pattern("sleep_tracked")
async def sleep_tracked(seconds: float) -> float:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled.append(seconds)
        raise
    return seconds


@service.message_pattern("cancelled")
def list_cancelled() -> list[float]:
    return cancelled


@service.message_pattern("pid")
def pid() -> int:
    return os.getpid()


events: dict[str, int] = {}


@service.event_pattern("user_created")
def count_user(event: UserCreated) -> None:
    events["user_created"] = events.get("user_created", 0) + 1


@service.message_pattern("events_seen")
def events_seen(name: str) -> int:
    return events.get(name, 0)


@service.event_pattern("config_changed", broadcast=True)
def reload_config(version: int) -> None:
    """Runs on every instance (a local cache to drop), where user_created runs on one."""
    events["config_changed"] = events.get("config_changed", 0) + 1


@service.message_pattern("blob")
def blob(size: int) -> bytes:
    """A reply of ``size`` bytes (memory-bound tests: a client that never reads them)."""
    return b"x" * size
