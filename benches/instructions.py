"""Instructions per request, counted by callgrind: a load-independent view of CPU work.

Timed runs on a shared 2-core VM move by 10-50 % from minute to minute; the number of machine
instructions a process executes per request does not. This runs each process under
``valgrind --tool=callgrind`` (instrumentation switched on after a warm-up, off after N
requests) and prints, per request, the instructions of its main thread (and how many of them
are ``memcpy``: payload copies) and of its ZeroMQ threads, zmsg against raw pyzmq doing the same
work. User space only: system calls and the kernel's share of wake-ups are not counted (see
benches/RESULTS.md for those, from strace).

    python benches/instructions.py                       # clients and services, 64 B and 64 KiB
    python benches/instructions.py --side client --payload 64,16K --requests 2000

Client side: each client (raw pyzmq blocking, raw pyzmq on asyncio, ClientProxy, SyncClientProxy)
is traced against its own server, running natively. Service side: the raw pyzmq server and the
zmsg service are traced, driven by a native blocking client (raw pyzmq's, SyncClientProxy; with
more than one in flight ClientProxy, as SyncClientProxy makes sequential calls only). Needs
valgrind; takes about a minute per traced process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zmsg.bench import procs
from zmsg.bench.cli import parse_size
from zmsg.bench.worker import drive, prepare
from zmsg.bench.workloads import Job

WARMUP = 200
CLIENTS = ("raw", "raw-async", "zmsg", "sync")
# (zmsg's, raw pyzmq's doing the same work): the pairs the report compares.
CLIENT_PAIRS = (("zmsg", "raw-async"), ("sync", "raw"))
_VALGRIND = ("valgrind", "--tool=callgrind", "--separate-threads=yes", "--instr-atstart=no")


@dataclass(frozen=True)
class Count:
    """Instructions per request of one traced process."""

    side: str  # "client" or "service"
    impl: str
    payload_size: int
    in_flight: int
    requests: int
    main: float
    main_memcpy: float
    other_threads: float


def thread_costs(annotated: str) -> tuple[int, int]:
    """(all instructions, memcpy/memmove instructions) from ``callgrind_annotate`` output."""
    total = re.search(r"^\s*([\d,]+) \(100\.0+%\)\s+PROGRAM TOTALS", annotated, re.M)
    if total is None:
        return 0, 0
    copies = sum(int(m[1].replace(",", "")) for m in
                 re.finditer(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+\S*:__mem(?:cpy|move)\w*", annotated, re.M))
    return int(total[1].replace(",", "")), copies


def read_dump(directory: Path, requests: int) -> tuple[float, float, float]:
    """Per request: main thread, its memcpy share, the other threads, from the first dump."""
    main = copies = others = 0
    for path in sorted(directory.glob("cg.*.1-*")):  # part 1: the explicit dump, one file per thread
        annotated = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", str(path)],
                                   capture_output=True, text=True, check=True).stdout
        total, memcpy = thread_costs(annotated)
        if path.name.endswith("-01"):
            main, copies = total, memcpy
        else:
            others += total
    if not main:
        raise RuntimeError(f"callgrind counted nothing in {directory} (was instrumentation switched on?)")
    return main / requests, copies / requests, others / requests


def _callgrind(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], capture_output=True, check=True)


def _run_traced_client(impl: str, size: int, requests: int, in_flight: int, endpoint: str) -> None:
    """In the traced process: warm up, count ``requests`` requests, dump."""
    prepare(impl)  # as the bench's client processes are
    drive(impl, Job("instructions", "echo", WARMUP, 0, in_flight, size), endpoint)
    _callgrind(os.getpid(), "-i", "on")
    result = drive(impl, Job("instructions", "echo", requests, 0, in_flight, size), endpoint)
    _callgrind(os.getpid(), "-d")
    print(f"COUNT {result['count']}", flush=True)


def count_client(impl: str, size: int, requests: int, in_flight: int, scratch: Path) -> Count:
    out = scratch / f"client-{impl}-{size}-{in_flight}"
    out.mkdir()
    server = procs.raw_server() if impl.startswith("raw") else procs.zmsg_server()
    with server as srv:
        done = subprocess.run([*_VALGRIND, f"--callgrind-out-file={out}/cg.%p", sys.executable, __file__,
                               "--traced-client", impl, str(size), str(requests), str(in_flight), srv.endpoint],
                              capture_output=True, text=True, check=False)
    match = re.search(r"COUNT (\d+)", done.stdout)
    if match is None:
        raise RuntimeError(f"the traced {impl} client failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    count = int(match[1])
    return Count("client", impl, size, in_flight, count, *read_dump(out, count))


def count_service(impl: str, size: int, requests: int, in_flight: int, scratch: Path) -> Count:
    out = scratch / f"service-{impl}-{size}-{in_flight}"
    out.mkdir()
    wrapper = (*_VALGRIND, f"--callgrind-out-file={out}/cg.%p")
    server = (procs.raw_server(wrapper, start_timeout=300) if impl == "raw"
              else procs.zmsg_server(wrapper=wrapper, start_timeout=300))
    driver = "raw" if impl == "raw" else ("sync" if in_flight == 1 else "zmsg")
    with server as srv:
        assert srv.proc is not None
        drive(driver, Job("instructions", "echo", WARMUP, 0, in_flight, size), srv.endpoint)
        _callgrind(srv.proc.pid, "-i", "on")
        result = drive(driver, Job("instructions", "echo", requests, 0, in_flight, size), srv.endpoint)
        _callgrind(srv.proc.pid, "-d")
    return Count("service", impl, size, in_flight, result["count"], *read_dump(out, result["count"]))


def report(counts: list[Count]) -> str:
    lines = ["| side | process | payload | in flight | main thread | of it memcpy | main without memcpy"
             " | ZeroMQ threads |", "|---|---|---|---|---|---|---|---|"]
    for c in counts:
        lines.append(f"| {c.side} | {c.impl} | {c.payload_size:,} B | {c.in_flight} | {c.main:,.0f} | "
                     f"{c.main_memcpy:,.0f} | {c.main - c.main_memcpy:,.0f} | {c.other_threads:,.0f} |")
    by_key = {(c.side, c.impl, c.payload_size, c.in_flight): c for c in counts}
    ratios = []
    pairs = [("client", ours, theirs) for ours, theirs in CLIENT_PAIRS] + [("service", "zmsg", "raw")]
    for c in counts:
        for side, ours, theirs in pairs:
            base = by_key.get((side, theirs, c.payload_size, c.in_flight))
            if c.side == side and c.impl == ours and base is not None and base.main:
                ratios.append(f"- {side} {ours} / {theirs}, {c.payload_size:,} B x {c.in_flight}: main thread "
                              f"{c.main / base.main:.2f}x, without memcpy "
                              f"{(c.main - c.main_memcpy) / max(base.main - base.main_memcpy, 1):.2f}x")
    return "\n".join(lines + [""] + ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=("client", "service", "both"), default="both")
    parser.add_argument("--payload", default="64,64K", help="echo payload sizes, comma-separated (64,16K,1M)")
    parser.add_argument("--in-flight", type=int, default=1, help="requests in flight (default 1)")
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per process")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="client side: which clients")
    parser.add_argument("--traced-client", nargs=5, metavar=("IMPL", "SIZE", "N", "IN_FLIGHT", "ENDPOINT"),
                        help=argparse.SUPPRESS)  # the traced process's own entry point
    args = parser.parse_args(argv)
    if args.traced_client:
        impl, size, requests, in_flight, endpoint = args.traced_client
        _run_traced_client(impl, int(size), int(requests), int(in_flight), endpoint)
        return 0
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt install valgrind)")
    sizes = [parse_size(s) for s in args.payload.split(",")]
    clients = [c for c in args.clients.split(",") if c]
    if unknown := set(clients) - set(CLIENTS):
        parser.error(f"unknown client(s) {sorted(unknown)}: choose from {', '.join(CLIENTS)}")
    if args.in_flight > 1 and "sync" in clients:
        clients.remove("sync")  # sequential calls only
    counts: list[Count] = []
    with tempfile.TemporaryDirectory(prefix="zmsg-instructions-") as tmp:
        scratch = Path(tmp)
        for size in sizes:
            if args.side in ("client", "both"):
                for impl in clients:
                    counts.append(count_client(impl, size, args.requests, args.in_flight, scratch))
                    print(f"counted client {impl} {size} B", file=sys.stderr, flush=True)
            if args.side in ("service", "both"):
                for impl in ("raw", "zmsg"):
                    counts.append(count_service(impl, size, args.requests, args.in_flight, scratch))
                    print(f"counted service {impl} {size} B", file=sys.stderr, flush=True)
    print(report(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
