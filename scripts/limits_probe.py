"""Probe what a peer can make a zmsg process hold in memory, in the directions issue 14 lists.

Usage (each prints RSS numbers; run from the repository root):
  python scripts/limits_probe.py bigframe [--connections 20] [--declared 60000000]
      N raw TCP peers complete the ZMTP NULL handshake with a service, each declares one frame
      of DECLARED bytes, sends 1 KiB of it and stalls. Does libzmq reserve the declared size?
  python scripts/limits_probe.py unsolicited [--seconds 5] [--size 1048576]
      A raw ROUTER answers a ClientProxy's hello, then floods it with replies nobody asked for.
  python scripts/limits_probe.py events [--seconds 8] [--size 20000] [--event-hwm N]
      An emitter pushes events at a service whose (sync) handler is slow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def status_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def serve(target: str, *args: str, cwd: Path = ROOT / "tests" / "services",
          env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "zmsg", "serve", target, "--bind", "tcp://127.0.0.1:0", *args],
                            cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"on (tcp://\S+) \(events on (\S+)\)", line)
        if match:
            return proc, match[1], match[2]
    raise SystemExit("service did not start")


def zmtp_null_peer(port: int, declared: int, sent: int = 1024) -> socket.socket:
    """A hand-written ZMTP 3.0 DEALER: greeting, NULL READY, then one long frame left unfinished."""
    sock = socket.create_connection(("127.0.0.1", port))
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    sock.sendall(greeting)
    got = b""
    while len(got) < 64:
        got += sock.recv(64 - len(got))
    prop = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    body = b"\x05READY" + prop
    sock.sendall(bytes([0x04, len(body)]) + body)
    sock.sendall(bytes([0x02]) + struct.pack(">Q", declared) + b"x" * sent)
    return sock


def probe_bigframe(args: argparse.Namespace) -> None:
    proc, endpoint, _events = serve("mathsvc:service")
    port = int(endpoint.rsplit(":", 1)[1])
    time.sleep(0.5)
    print(f"service at start: RSS {status_mb(proc.pid):.0f} MB, virtual {status_mb(proc.pid, 'VmSize'):.0f} MB")
    peers = [zmtp_null_peer(port, args.declared) for _ in range(args.connections)]
    time.sleep(2)
    alive = sum(1 for p in peers if _alive(p))
    print(f"{args.connections} peers each declaring a {args.declared}-byte frame, 1 KiB sent, stalled "
          f"({alive} connections still open): RSS {status_mb(proc.pid):.0f} MB, "
          f"virtual {status_mb(proc.pid, 'VmSize'):.0f} MB")
    for p in peers:
        p.close()
    proc.terminate()
    proc.wait(15)


def _alive(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def probe_unsolicited(args: argparse.Namespace) -> None:
    import msgspec
    import zmq

    from zmsg.protocol import KIND_REPLY, KIND_REQUEST, BatchBuilder, parse_frames

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.SNDHWM, 1000)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    code = ("import asyncio, zmsg, os\n"
            "async def main():\n"
            f"    c = zmsg.ClientProxy('tcp://127.0.0.1:{port}', timeout=600)\n"
            "    print('pid', os.getpid(), flush=True)\n"
            "    try:\n        await c.send('never_answered')\n    finally:\n        await c.close()\n"
            "asyncio.run(main())\n")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    hello = {"service": "flood", "version": "0", "protocol": 1, "events": None, "max_message_size": 1 << 26}
    peer = None
    body = msgspec.msgpack.encode(b"x" * args.size)
    sent = 0
    start = time.monotonic()
    next_report = start + 1
    while time.monotonic() - start < args.seconds:
        if router.poll(0):
            frames = router.recv_multipart()
            peer = frames[0]
            for kind, _f, cid, _t, pattern, _b in parse_frames(frames, 1):
                if kind == KIND_REQUEST and pattern == b"$zmsg.hello":
                    batch = BatchBuilder()
                    batch.add(KIND_REPLY, 0, cid, 0, b"", msgspec.msgpack.encode(hello))
                    router.send_multipart([peer, *batch.take()])
        if peer is not None:
            batch = BatchBuilder()
            batch.add(KIND_REPLY, 0, 10_000_000 + sent, 0, b"", body)
            try:
                router.send_multipart([peer, *batch.take()], zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                time.sleep(0.001)
        if time.monotonic() >= next_report:
            next_report += 1
            print(f"t={time.monotonic() - start:4.1f}s unsolicited replies sent {sent}, client RSS "
                  f"{status_mb(child.pid):.0f} MB")
    child.kill()
    child.wait()
    router.close()
    ctx.term()


def probe_events(args: argparse.Namespace) -> None:
    extra = ["--log-level", "warning"]
    env = {"SLOW_EVENT_HWM": str(args.event_hwm)}
    proc, endpoint, _events = serve("slowevents:service", *extra, cwd=Path(__file__).parent, env=env)

    async def emit() -> None:
        import zmsg

        async with zmsg.ClientProxy(endpoint, timeout=10, emit_timeout=600, event_hwm=args.client_event_hwm) as client:
            blob = b"x" * args.size
            start = time.monotonic()
            next_report = start + 1
            count = 0
            while time.monotonic() - start < args.seconds:
                await client.emit(args.pattern, blob)
                count += 1
                if time.monotonic() >= next_report:
                    next_report += 1
                    print(f"t={time.monotonic() - start:4.1f}s events accepted {count}, service RSS "
                          f"{status_mb(proc.pid):.0f} MB, this emitter {status_mb(os.getpid()):.0f} MB")

    try:
        asyncio.run(asyncio.wait_for(emit(), args.seconds + 30))
    except TimeoutError:
        print("emitter blocked (backpressure)")
    proc.kill()
    proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="probe", required=True)
    big = sub.add_parser("bigframe")
    big.add_argument("--connections", type=int, default=20)
    big.add_argument("--declared", type=int, default=60_000_000)
    uns = sub.add_parser("unsolicited")
    uns.add_argument("--seconds", type=float, default=5)
    uns.add_argument("--size", type=int, default=1024 * 1024)
    ev = sub.add_parser("events")
    ev.add_argument("--seconds", type=float, default=8)
    ev.add_argument("--size", type=int, default=20_000)
    ev.add_argument("--event-hwm", type=int, default=64)
    ev.add_argument("--client-event-hwm", type=int, default=100_000, help="the emitter's ClientProxy(event_hwm)")
    ev.add_argument("--pattern", default="slow", help="slow (sync handler, 10 ms) or slow_async (1 s)")
    args = parser.parse_args()
    {"bigframe": probe_bigframe, "unsolicited": probe_unsolicited, "events": probe_events}[args.probe](args)


if __name__ == "__main__":
    main()
