"""Client per-request Python cost without sockets: send() -> submit -> reply record -> result.

Drives PendingRequest.__await__ by hand against a ClientProxy whose peer has no channel, feeding
it reply messages built in memory, so only the client's own Python work is timed. It reports CPU
time (``process_time``), which a machine shared with other work disturbs far less than wall time:
run it alternately on two trees to compare them (``python benches/client_hot_path.py LABEL``).
"""

from __future__ import annotations

import asyncio
import sys
import time

import zmsg
from zmsg import codec
from zmsg.protocol import KIND_REPLY, BatchBuilder

N = 50_000
PAYLOAD = list(range(10))
REPLY = codec.encode(45)

async def main() -> float:
    client = zmsg.ClientProxy("tcp://127.0.0.1:1", timeout=60)
    client._open()
    peer = client._peers[0]
    assert peer.channel is not None
    peer.channel.close(linger_ms=0)
    peer.channel = None
    inflight = client._inflight
    best = float("inf")
    for _round in range(7):
        t0 = time.process_time()
        for i in range(N):
            gen = client.send({"cmd": "sum"}, PAYLOAD).__await__()
            next(gen)
            b = BatchBuilder()
            b.add(KIND_REPLY, 0, inflight._next_id, 0, b"", REPLY)
            client._on_reply_message(b.take())
            try:
                gen.send(None)
            except StopIteration as stop:
                assert stop.value == 45
            if i % 32 == 0:
                peer.batch = BatchBuilder()
        best = min(best, (time.process_time() - t0) / N * 1e6)
    await client.close()
    return best

if __name__ == "__main__":
    label = sys.argv[1] if len(sys.argv) > 1 else "zmsg"
    print(f"{label}: {asyncio.run(main()):.3f} us per request (best of 7, CPU time x {N})")
