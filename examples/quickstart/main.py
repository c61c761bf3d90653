"""Quick start: a standalone service in its own process, called over TCP with send and emit.

Run it with the README's first command. It starts `zmsg serve math_service:service` on a free
port, talks to it with a ClientProxy, then measures a few seconds of request-reply throughput.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import zmsg

HERE = Path(__file__).parent


def start_service() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zmsg", "serve", "math_service:service", "--bind", "tcp://127.0.0.1:0",
         "--log-level", "warning"],
        cwd=HERE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r" on (tcp://\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the service did not start: {line!r}")
    print(line.strip())
    return proc, match.group(1)


async def throughput(client: zmsg.ClientProxy, seconds: float = 3.0, in_flight: int = 64) -> float:
    """Replies per second with ``in_flight`` callers each awaiting its own request."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        payload = list(range(10))
        while time.perf_counter() < stop_at:
            await client.send({"cmd": "sum"}, payload)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return done / (time.perf_counter() - started)


async def main(endpoint: str) -> None:
    async with zmsg.ClientProxy(endpoint, timeout=5) as math:
        print("send({'cmd': 'sum'}, [1, 2, 3])        ->", await math.send({"cmd": "sum"}, [1, 2, 3]))
        print("send({'cmd': 'get_user'}, 1)          ->", await math.send({"cmd": "get_user"}, 1))
        try:
            await math.send({"cmd": "get_user"}, 7)
        except zmsg.RpcException as exc:
            print("send({'cmd': 'get_user'}, 7)          -> RpcException", exc.error)
        await math.emit("user_created", {"user_id": "u1", "email": "ada@example.com"})
        await math.emit("user_created", {"user_id": "u2", "email": "alan@example.com"})
        for _ in range(100):  # events are fire-and-forget: give the handler a moment
            welcomed = await math.send("welcomed")
            if len(welcomed) == 2:
                break
            await asyncio.sleep(0.01)
        print("emit('user_created') x2, service saw  ->", welcomed)
        rate = await throughput(math)
        print(f"throughput: {rate:,.0f} replies/s (64 in flight, 3 s, service in another process)")


if __name__ == "__main__":
    service, endpoint = start_service()
    try:
        zmsg.run(main(endpoint))
    finally:
        service.terminate()
        service.wait(10)
