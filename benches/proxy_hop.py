"""What a ZeroMQ proxy device in front of workers would cost: raw pyzmq, direct vs one hop.

The design choice behind ``zmsg serve --workers`` (clients connect to each worker, no proxy).
Same raw echo server both ways; "hop" puts ``zmq.proxy(ROUTER, DEALER)`` in its own process
between client and server, as a supervisor would. Prints sequential p50 latency and pipelined
throughput (64 in flight) for both, measured back to back.

    .venv/bin/python benches/proxy_hop.py
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from typing import Any

import zmq


def _server(bound: Any) -> None:
    sock = zmq.Context().socket(zmq.ROUTER)
    sock.bind("tcp://127.0.0.1:0")
    bound.put(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    while True:
        sock.send_multipart(sock.recv_multipart(copy=False), copy=False)


def _proxy(back: str, bound: Any) -> None:
    ctx = zmq.Context()
    frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    frontend.bind("tcp://127.0.0.1:0")
    backend.connect(back)
    bound.put(frontend.getsockopt_string(zmq.LAST_ENDPOINT))
    zmq.proxy(frontend, backend)


def _measure(endpoint: str, count: int = 5000, window: int = 64) -> tuple[float, float]:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(endpoint)
    for _ in range(500):  # warm-up
        sock.send(b"x")
        sock.recv()
    samples = []
    for _ in range(count):
        t0 = time.perf_counter_ns()
        sock.send(b"x")
        sock.recv()
        samples.append(time.perf_counter_ns() - t0)
    p50 = statistics.median(samples) / 1000
    start = time.perf_counter()
    sent = received = 0
    total = count * 10
    while received < total:
        while sent < total and sent - received < window:
            sock.send(b"x")
            sent += 1
        sock.recv()
        received += 1
    rate = total / (time.perf_counter() - start)
    sock.close(linger=0)
    return p50, rate


def main() -> None:
    bound: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_server, args=(bound,), daemon=True)]
    procs[0].start()
    server_ep = bound.get(timeout=30)
    procs.append(multiprocessing.Process(target=_proxy, args=(server_ep, bound), daemon=True))
    procs[1].start()
    proxy_ep = bound.get(timeout=30)
    try:
        for rep in range(3):
            direct = _measure(server_ep)
            hop = _measure(proxy_ep)
            print(f"run {rep + 1}: direct p50 {direct[0]:.1f} us, {direct[1]:,.0f} msg/s | "
                  f"via proxy p50 {hop[0]:.1f} us, {hop[1]:,.0f} msg/s | "
                  f"hop/direct p50 {hop[0] / direct[0]:.2f}x, throughput {hop[1] / direct[1]:.2f}x", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(5)


if __name__ == "__main__":
    main()
