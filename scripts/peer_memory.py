"""Measure a service's memory while one raw DEALER asks for large replies and never reads.

Usage: python scripts/peer_memory.py [--requests 2000] [--size 1048576] [--seconds 10] [SERVE ARGS...]
Starts ``zmsg serve mathsvc:service`` (tests/services) on a free loopback port, sends the
requests from a raw pyzmq DEALER that never reads, and prints the service's RSS once a second.
Extra arguments go to ``zmsg serve`` (e.g. ``--max-peer-buffer 8388608``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zmsg.protocol import KIND_REQUEST, BatchBuilder  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024 * 1024)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rcvhwm", type=int, default=1000, help="the DEALER's RCVHWM (libzmq default 1000)")
    args, serve_args = parser.parse_known_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "zmsg", "serve", "mathsvc:service", "--bind",
                             "tcp://127.0.0.1:0", *serve_args], cwd=ROOT / "tests" / "services", env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    endpoint = None
    for line in proc.stdout:
        match = re.search(r"on (tcp://\S+) \(events", line)
        if match:
            endpoint = match[1]
            break
    assert endpoint, "service did not start"
    time.sleep(0.5)
    print(f"service RSS at start: {rss_mb(proc.pid):.0f} MB")
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVHWM, args.rcvhwm)  # libzmq reads this many messages ahead for us
    dealer.connect(endpoint)
    body = msgspec.msgpack.encode(args.size)
    for cid in range(1, args.requests + 1):
        batch = BatchBuilder()
        batch.add(KIND_REQUEST, 0, cid, 0, b"blob", body)
        dealer.send_multipart(batch.take())
    peak = 0.0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        time.sleep(1)
        now = rss_mb(proc.pid)
        peak = max(peak, now)
        print(f"t={time.monotonic() - start:4.1f}s service RSS {now:7.0f} MB")
    print(f"peak service RSS: {peak:.0f} MB ({args.requests} requests for {args.size} bytes, never read)")
    info_client = ctx.socket(zmq.DEALER)
    info_client.setsockopt(zmq.LINGER, 0)
    dealer.close()
    info_client.close()
    ctx.term()
    proc.terminate()
    proc.wait(15)


if __name__ == "__main__":
    main()
