"""A service whose event handler is slow (scripts/limits_probe.py events)."""

import os
import time

import zmsg

service = zmsg.Service("slowevents", event_hwm=int(os.environ.get("SLOW_EVENT_HWM", "64")))


@service.event_pattern("slow")
def slow(blob: bytes) -> None:
    time.sleep(0.01)


@service.event_pattern("slow_async")
async def slow_async(blob: bytes) -> None:
    import asyncio

    await asyncio.sleep(1.0)
