"""A soak client: requests from 32 concurrent callers plus a steady event stream, until SIGTERM.

On SIGTERM it stops starting new work, lets what is in flight finish or fail, emits a short
final burst of events (so a loss at the very end still shows as a gap), and writes its tallies
as JSON to the file named by its first argument.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import zmsg


async def main(result_path: str, endpoints: list[str]) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tally = {"sent": 0, "replied": 0, "wrong": 0, "rpc_error": 0, "timeout": 0, "unavailable": 0,
             "emitted": 0, "emit_failed": 0}
    client = zmsg.ClientProxy(endpoints, timeout=2, emit_timeout=5, heartbeat=0.5)

    async def caller(worker: int) -> None:
        n = worker
        while not stop.is_set():
            n += 32
            tally["sent"] += 1
            try:
                tally["replied" if await client.send("work", n) == 2 * n else "wrong"] += 1
            except zmsg.RpcException:
                tally["rpc_error"] += 1
            except zmsg.RequestTimeout:
                tally["timeout"] += 1
            except zmsg.ServiceUnavailable:
                tally["unavailable"] += 1
                await asyncio.sleep(0.05)

    async def emit(count: int | None = None) -> None:
        sent = 0
        while (count is None and not stop.is_set()) or (count is not None and sent < count):
            try:
                await client.emit("tick", tally["emitted"])
                tally["emitted"] += 1
                sent += 1
            except zmsg.ServiceUnavailable:
                tally["emit_failed"] += 1
                await asyncio.sleep(0.1)
            if tally["emitted"] % 50 == 0:
                await asyncio.sleep(0.005)  # a steady stream, not a flood

    try:
        await asyncio.gather(*(caller(w) for w in range(32)), emit())
        await emit(count=20)
    finally:
        await client.close()
        with open(result_path, "w") as f:
            json.dump(tally, f)


if __name__ == "__main__":
    zmsg.run(main(sys.argv[1], sys.argv[2:]))
