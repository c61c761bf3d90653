"""The raw pyzmq baseline: the fastest hand-written pyzmq we know, doing the workloads' work.

Blocking sockets, no event loop, no batching. Requests: a DEALER sends one ZeroMQ message per
request, ``[header, body]`` where the 9-byte header is an 8-byte little-endian correlation id
and a 1-byte operation; a ROUTER answers each with ``[identity, header, body]``. Bodies are
msgspec MessagePack, decoded with typed decoders on the server as zmsg's handlers do. Events: an
XPUB (a PUB that also tells the publisher when the subscription has arrived, so nothing falls
into the slow-joiner gap) sends one message per event to a SUB; both high-water marks are
unbounded, so the baseline loses nothing. The SUB side runs in a second thread of the server
process; it is idle (blocked in ZeroMQ, GIL released) whenever the request side is measured.

The asyncio baseline (``run_async_job``, the sweep's one-in-flight points): the same requests
from coroutines on uvloop, as a hand-written asyncio pyzmq client does it: the socket's FD watched
with ``add_reader`` (edge-triggered, so the reader drains while ``ZMQ_EVENTS`` says POLLIN and a
send is followed by that check too), a future per request keyed by its header. It measures what
running on an event loop costs pyzmq itself, which zmsg's ``ClientProxy`` pays too.

Streams (W5, W6): a request ``n`` is answered by ``n`` messages ``[identity, header, item]``, one
per item, as fast as the blocking server can send them (no flow control: the baseline only pays
for moving the items).

Server: ``python -m zmsg.bench.raw --bind tcp://127.0.0.1:0`` prints
``raw: serving on ENDPOINT (events on ENDPOINT)``.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from zmsg.bench.workloads import (
    SUM_PAYLOAD,
    SUM_RESULT,
    Job,
    UserCreated,
    echo_payload,
    event_payloads,
    make_result,
    stream_split,
)
from zmsg.transport.sockets import events_connect_endpoint

__all__ = ["serve", "run_job", "run_async_job", "OP_SUM", "OP_ECHO", "OP_STATS"]

OP_SUM = 1
OP_ECHO = 2
OP_STATS = 3
OP_STREAM = 4
EVENT_PREFIX = b"user_created\x00"
_HEADER = struct.Struct("<QB")
# Plain ints: ``&`` with pyzmq's IntFlag constants is a Python-level call, about 0.8 us each.
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_OPS = {"sum": OP_SUM, "echo": OP_ECHO}

Progress = Callable[[int, int], None]


# -- server ---------------------------------------------------------------------------------

class _Counter:
    __slots__ = ("user_created",)

    def __init__(self) -> None:
        self.user_created = 0


def _serve_events(sub: zmq.Socket[Any], counter: _Counter) -> None:
    recv = sub.recv
    decode = msgspec.msgpack.Decoder(UserCreated).decode
    prefix = EVENT_PREFIX
    skip = len(prefix)
    while True:
        data = recv()
        if data.startswith(prefix):
            decode(memoryview(data)[skip:])
            counter.user_created += 1


def _serve_requests(router: zmq.Socket[Any], counter: _Counter, events: str) -> None:
    recv = router.recv_multipart
    send = router.send_multipart
    encode = msgspec.msgpack.Encoder().encode
    decode_sum = msgspec.msgpack.Decoder(list[int]).decode
    decode_echo = msgspec.msgpack.Decoder(bytes).decode
    decode_count = msgspec.msgpack.Decoder(int).decode
    while True:
        identity, header, body = recv()
        op = header[8]
        if op == OP_SUM:
            out = encode(sum(decode_sum(body)))
        elif op == OP_ECHO:
            out = encode(decode_echo(body))
        elif op == OP_STREAM:
            for i in range(decode_count(body)):
                send([identity, header, encode(i)])
            continue
        else:
            out = encode({"user_created": counter.user_created, "framing": "raw", "events": events})
        send([identity, header, out])


def serve(bind: str) -> None:
    """Serve requests and events until killed (SIGTERM's default action ends the process)."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.SNDHWM, 0)
    router.setsockopt(zmq.RCVHWM, 0)
    router.bind(bind)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(bind.rsplit(":", 1)[0] + ":0")
    endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
    events = sub.getsockopt_string(zmq.LAST_ENDPOINT)
    counter = _Counter()
    threading.Thread(target=_serve_events, args=(sub, counter), name="raw-events", daemon=True).start()
    print(f"raw: serving on {endpoint} (events on {events})", flush=True)
    _serve_requests(router, counter, events)


# -- client ---------------------------------------------------------------------------------

def _stats(dealer: zmq.Socket[Any]) -> dict[str, Any]:
    dealer.send_multipart([_HEADER.pack(0, OP_STATS), b""])
    _header, body = dealer.recv_multipart()
    stats: dict[str, Any] = msgspec.msgpack.decode(body)
    return stats


def _dealer(endpoint: str) -> zmq.Socket[Any]:
    dealer: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.SNDHWM, 0)
    dealer.setsockopt(zmq.RCVHWM, 0)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    return dealer


def _request_work(job: Job) -> tuple[int, Any, Any]:
    """The operation, payload and expected answer (the sum, or the echoed length) of a request job."""
    payload: Any = SUM_PAYLOAD if job.op == "sum" else echo_payload(job.payload_size)
    return _OPS[job.op], payload, SUM_RESULT if job.op == "sum" else len(payload)


def _requests(dealer: zmq.Socket[Any], job: Job, count: int, progress: Progress | None) -> dict[str, Any]:
    """``count`` requests (or ``job.duration`` seconds) with ``job.in_flight`` outstanding."""
    op, payload, expect = _request_work(job)
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.msgpack.Decoder().decode
    pack = _HEADER.pack
    send = dealer.send_multipart
    recv = dealer.recv_multipart
    perf = time.perf_counter_ns
    sent_at: dict[bytes, int] = {}
    latencies: list[int] = []
    record = latencies.append
    target = count if job.duration is None else 1 << 62
    sent = done = 0
    cpu0 = time.process_time()  # every thread of this process, ZeroMQ I/O included
    start = perf()
    end = start + int(job.duration * 1e9) if job.duration is not None else 0
    last_report = start
    while sent < target and sent < job.in_flight:
        sent += 1
        header = pack(sent, op)
        sent_at[header] = perf()
        send([header, encode(payload)])
    while done < sent:
        header, body = recv()
        now = perf()
        record(now - sent_at.pop(header))
        reply = decode(body)
        if (reply if op == OP_SUM else len(reply)) != expect:
            raise RuntimeError(f"raw server answered {reply!r:.40}, expected {expect!r}")
        done += 1
        if not done & 255:
            if end and now >= end:
                target = sent
            if progress is not None and now - last_report > 250_000_000:
                last_report = now
                progress(done, count if job.duration is None else 0)
        if sent < target:
            sent += 1
            header = pack(sent, op)
            sent_at[header] = perf()
            send([header, encode(payload)])
    elapsed = (perf() - start) / 1e9
    return make_result(job, done, elapsed, latencies, cpu_s=time.process_time() - cpu0)


async def _async_requests(dealer: zmq.Socket[Any], job: Job, count: int) -> dict[str, Any]:
    """``count`` requests (or ``job.duration`` seconds) from ``job.in_flight`` coroutines."""
    loop = asyncio.get_running_loop()
    op, payload, expect = _request_work(job)
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.msgpack.Decoder().decode
    pack = _HEADER.pack
    pending: dict[bytes, asyncio.Future[bytes]] = {}
    sequence = 0

    def on_readable() -> None:
        try:
            while int(dealer.get(zmq.EVENTS)) & _POLLIN:
                header, body = dealer.recv_multipart(_NOBLOCK)
                future = pending.pop(header, None)
                if future is not None and not future.done():
                    future.set_result(body)
        except zmq.Again:
            pass

    def call() -> asyncio.Future[bytes]:
        nonlocal sequence
        sequence += 1
        header = pack(sequence, op)
        future = pending[header] = loop.create_future()
        dealer.send_multipart([header, encode(payload)], _NOBLOCK)  # SNDHWM 0: never EAGAIN
        if int(dealer.get(zmq.EVENTS)) & _POLLIN:  # the send may have taken the FD's edge
            loop.call_soon(on_readable)
        return future

    latencies: list[int] = []
    record = latencies.append
    perf = time.perf_counter_ns
    left = count if job.duration is None else 1 << 62

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = perf()
            reply = decode(await call())
            record(perf() - t0)
            if (reply if op == OP_SUM else len(reply)) != expect:
                raise RuntimeError(f"raw server answered {reply!r:.40}, expected {expect!r}")

    def stop() -> None:
        nonlocal left
        left = 0

    loop.add_reader(dealer.FD, on_readable)
    stopper = loop.call_later(job.duration, stop) if job.duration is not None else None
    cpu0 = time.process_time()
    start = perf()
    try:
        await asyncio.gather(*(caller() for _ in range(max(1, job.in_flight))))
    finally:
        elapsed = (perf() - start) / 1e9
        loop.remove_reader(dealer.FD)
        if stopper is not None:
            stopper.cancel()
    return make_result(job, len(latencies), elapsed, latencies, cpu_s=time.process_time() - cpu0)


def _streams(dealer: zmq.Socket[Any], job: Job, count: int, progress: Progress | None) -> dict[str, Any]:
    """``job.in_flight`` streams at once carrying ``count`` items in all, one message per item."""
    parts = stream_split(count, job.in_flight)
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.msgpack.Decoder(int).decode
    unpack = _HEADER.unpack
    send = dealer.send_multipart
    recv = dealer.recv_multipart
    perf = time.perf_counter_ns
    expect = [0] * len(parts)
    total = sum(parts)
    done = 0
    cpu0 = time.process_time()
    start = last_report = perf()
    for index, n in enumerate(parts):
        send([_HEADER.pack(index, OP_STREAM), encode(n)])
    while done < total:
        header, body = recv()
        index = unpack(header)[0]
        if decode(body) != expect[index]:
            raise RuntimeError(f"raw stream {index} out of order at item {expect[index]}")
        expect[index] += 1
        done += 1
        if progress is not None and not done & 4095:
            now = perf()
            if now - last_report > 250_000_000:
                last_report = now
                progress(done, count)
    elapsed = (perf() - start) / 1e9
    return make_result(job, done, elapsed, None, streams=len(parts), cpu_s=time.process_time() - cpu0)


def _events(ctx: zmq.Context[Any], dealer: zmq.Socket[Any], events_endpoint: str, job: Job,
            count: int, progress: Progress | None) -> dict[str, Any]:
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.RCVTIMEO, 10_000)
    try:
        pub.connect(events_endpoint)
        pub.recv()  # the subscription: from now on nothing is lost to the slow-joiner gap
        encode = msgspec.msgpack.Encoder().encode
        payloads = event_payloads()
        mask = len(payloads) - 1
        prefix = EVENT_PREFIX
        send = pub.send
        before = _stats(dealer)["user_created"]
        perf = time.perf_counter_ns
        cpu0 = time.process_time()  # every thread of this process, ZeroMQ I/O included
        start = perf()
        end = start + int(job.duration * 1e9) if job.duration is not None else 0
        last_report = start
        target = count if job.duration is None else 1 << 62
        emitted = 0
        while emitted < target:
            send(prefix + encode(payloads[emitted & mask]))
            emitted += 1
            if not emitted & 1023:
                now = perf()
                if end and now >= end:
                    target = emitted
                if progress is not None and now - last_report > 250_000_000:
                    last_report = now
                    progress(emitted, count if job.duration is None else 0)
        emitted_at = perf() - start  # when the emitter was done: the rest is the service catching up
        seen = wait_for_count(lambda: _stats(dealer)["user_created"] - before, emitted)
        elapsed = (perf() - start) / 1e9
        return make_result(job, seen, elapsed, None, emitted=emitted, lost=emitted - seen,
                           cpu_s=time.process_time() - cpu0,
                           emit_s=emitted_at / 1e9)
    finally:
        pub.close(linger=0)


def wait_for_count(read: Callable[[], int], expected: int, stall_s: float = 3.0) -> int:
    """Poll ``read()`` until it reaches ``expected`` or stops moving for ``stall_s`` seconds."""
    seen = read()
    last_change = time.monotonic()
    while seen < expected:
        time.sleep(0.002)
        now_seen = read()
        if now_seen != seen:
            seen, last_change = now_seen, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            break
    return seen


def run_job(job: Job, endpoint: str, events_endpoint: str | None, progress: Progress | None = None) -> dict[str, Any]:
    """Run one job against a raw server: warm-up first (untimed), then the measured part."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    dealer = _dealer(endpoint)
    try:
        if job.op == "events":
            if events_endpoint is None:  # ask the server, as zmsg's handshake does
                events_endpoint = events_connect_endpoint(endpoint, _stats(dealer)["events"])
            if job.warmup:
                warm = Job(job.workload, job.op, job.warmup, 0)
                _events(ctx, dealer, events_endpoint, warm, job.warmup, None)
            return _events(ctx, dealer, events_endpoint, job, job.count, progress)
        if job.op == "stream":
            if job.warmup:
                _streams(dealer, Job(job.workload, job.op, job.warmup, 0, job.in_flight), job.warmup, None)
            return _streams(dealer, job, job.count, progress)
        if job.warmup:
            warm = Job(job.workload, job.op, job.warmup, 0, job.in_flight, job.payload_size)
            _requests(dealer, warm, job.warmup, None)
        return _requests(dealer, job, job.count, progress)
    finally:
        dealer.close(linger=0)


def run_async_job(job: Job, endpoint: str) -> dict[str, Any]:
    """Run one request job (``sum`` or ``echo``) from asyncio on uvloop: warm-up, then measured."""
    import uvloop  # here, not at the top: the raw server and the blocking client never need it

    if job.op not in _OPS:
        raise ValueError(f"the asyncio baseline measures requests (sum, echo), not {job.op!r}")

    async def measure() -> dict[str, Any]:
        dealer = _dealer(endpoint)
        try:
            if job.warmup:
                await _async_requests(dealer, Job(job.workload, job.op, job.warmup, 0, job.in_flight,
                                                  job.payload_size), job.warmup)
            return await _async_requests(dealer, job, job.count)
        finally:
            dealer.close(linger=0)

    return uvloop.run(measure())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zmsg.bench.raw", description="raw pyzmq baseline server")
    parser.add_argument("--bind", default="tcp://127.0.0.1:0")
    args = parser.parse_args(argv)
    try:
        serve(args.bind)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
