"""A client the partition test runs in its own network namespace.

Usage: python partition_client.py ENDPOINT SECONDS [TIMEOUT]
Calls ``pid`` on one ClientProxy back to back for SECONDS, each call with TIMEOUT (default 2 s),
and prints one JSON line per call: {"start", "end", "outcome"} with wall-clock times and the
outcome "ok", "unavailable" (ServiceUnavailable) or "timeout" (RequestTimeout).
"""

import asyncio
import json
import sys
import time

import zmsg


async def main(endpoint: str, seconds: float, timeout: float) -> None:
    async with zmsg.ClientProxy(endpoint, timeout=timeout) as client:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            start = time.time()
            try:
                await client.send("pid")
                outcome = "ok"
            except zmsg.RequestTimeout:
                outcome = "timeout"
            except zmsg.ServiceUnavailable:
                outcome = "unavailable"
            print(json.dumps({"start": start, "end": time.time(), "outcome": outcome}), flush=True)
            if outcome != "ok":
                await asyncio.sleep(0.05)  # no busy loop when failures are immediate


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 2.0))
