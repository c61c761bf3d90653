"""Connect many clients to one service at once and measure its memory per connection.

Usage: python scripts/many_clients.py [--clients 1000]
Starts ``zmsg serve mathsvc:service`` (tests/services), then from this process opens, per
client, what a ClientProxy opens: a DEALER to the request endpoint and an XPUB to the event
endpoint (raw pyzmq, so that 1,000 of them fit in one process). Every DEALER sends a request and
waits for its reply; the service's RSS and descriptors are printed before and after, and one
more request is timed while all of them stay connected.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import msgspec
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from limits_probe import serve, status_mb  # noqa: E402

from zmsg.protocol import KIND_REQUEST, BatchBuilder  # noqa: E402


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.clients * 4 + 100  # per client here: 2 sockets (an eventfd each) + 2 TCP connections
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    proc, endpoint, events = serve("mathsvc:service", "--log-level", "warning")
    time.sleep(0.5)
    rss0, fd0 = status_mb(proc.pid), fds(proc.pid)
    print(f"service alone: RSS {rss0:.1f} MB, {fd0} descriptors (its limit: ulimit -n = "
          f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]})")
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, args.clients * 2 + 16)  # libzmq allows 1023 sockets per context by default
    dealers, xpubs = [], []
    body = msgspec.msgpack.encode([1, 2])
    pattern = msgspec.json.encode({"cmd": "sum"})
    start = time.monotonic()
    for _ in range(args.clients):
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(endpoint)
        xpub = ctx.socket(zmq.XPUB)
        xpub.setsockopt(zmq.LINGER, 0)
        xpub.connect(events)
        dealers.append(dealer)
        xpubs.append(xpub)
    for dealer in dealers:
        batch = BatchBuilder()
        batch.add(KIND_REQUEST, 0, 1, 0, pattern, body)
        dealer.send_multipart(batch.take())
    answered = 0
    deadline = time.monotonic() + 120
    pending = set(range(args.clients))
    while pending and time.monotonic() < deadline:
        for index in list(pending):
            if dealers[index].poll(0):
                dealers[index].recv_multipart()
                pending.discard(index)
                answered += 1
        time.sleep(0.01)
    connect_s = time.monotonic() - start
    time.sleep(1)
    rss1, fd1 = status_mb(proc.pid), fds(proc.pid)
    print(f"{args.clients} clients connected (2 connections each), {answered} answered in {connect_s:.1f} s: "
          f"service RSS {rss1:.1f} MB, {fd1} descriptors")
    print(f"per client: {(rss1 - rss0) * 1024 / args.clients:.1f} KiB of service RSS, "
          f"{(fd1 - fd0) / args.clients:.1f} descriptors")
    probe = dealers[0]
    times = []
    for cid in range(2, 102):
        batch = BatchBuilder()
        batch.add(KIND_REQUEST, 0, cid, 0, pattern, body)
        t0 = time.perf_counter()
        probe.send_multipart(batch.take())
        probe.recv_multipart()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"one client's round trip with all connected: median {times[50] * 1e6:.0f} us, "
          f"p99 {times[98] * 1e6:.0f} us (100 sequential requests)")
    for sock in dealers + xpubs:
        sock.close(linger=0)
    ctx.term()
    proc.terminate()
    proc.wait(30)


if __name__ == "__main__":
    main()
