"""The ``zmsg bench`` subcommand: its arguments, and turning them into a run or a sweep."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from zmsg.bench.procs import PIN_CHOICES
from zmsg.bench.workloads import DEFAULT_IN_FLIGHT, DEFAULT_PAYLOAD_SIZE, WORKLOADS

__all__ = ["add_parser", "parse_size"]

_SIZE = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[kKmM]i?[bB]?|[bB])?$")

EPILOG = """\
workloads (fixed, so results compare across versions and machines):
  W1 latency     {"cmd": "sum"} on 10 small ints, sequential: 2,000 warm-up + 20,000 timed calls
  W2 throughput  the same request, 64 in flight from one client process, 200,000 requests
  W3 events      500,000 user_created events to one service that decodes and counts them
  W4 bulk        64 KiB payload echoed, 64 in flight, 20,000 requests
  W5 stream      one stream of 1,000,000 small items (ints); raw: one message per item
  W6 streams     64 concurrent streams, 1,000,000 items in all (--in-flight streams)

Each workload also runs on raw blocking pyzmq (same work, same window) in the same run;
the zmsg/raw ratio is the number to read. A service given with --endpoint must serve the
bench patterns: {"cmd": "sum"}, {"cmd": "echo"}, {"cmd": "stream"}, {"cmd": "bench_stats"} and the event
user_created (simplest: `zmsg serve zmsg.bench.service:service --bind tcp://0.0.0.0:PORT
--allow-from BENCH_HOST/32`, or `--insecure` on a trusted network: reachable binds need one).

examples:
  zmsg bench
  zmsg bench --workload W2 --count 50000 --json
  zmsg bench --sweep --plot sweep.png
  zmsg bench --sweep --duration 1 --repeat 3          # 1 s per point, medians of 3, ratio spread
  zmsg bench --sweep --sweep-in-flight 1,8 --sweep-payload 16K,64K
"""


def parse_size(text: str) -> int:
    """``65536``, ``64K``, ``64KiB`` or ``1M`` -> bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 64, 64K, 1MiB)")
    n = int(match["n"])
    unit = (match["unit"] or "").upper()
    if unit.startswith("K"):
        n *= 1024
    elif unit.startswith("M"):
        n *= 1024 * 1024
    return n


def _workloads(text: str) -> list[str]:
    keys = [part.strip().upper() for part in text.split(",") if part.strip()]
    for key in keys:
        if key not in WORKLOADS:
            raise argparse.ArgumentTypeError(f"unknown workload {key!r} (choose from {', '.join(WORKLOADS)})")
    return keys


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _worker_counts(text: str) -> list[int]:
    counts = [_positive_int(part.strip()) for part in text.split(",") if part.strip()]
    if not counts:
        raise argparse.ArgumentTypeError("expected worker counts like 2 or 1,2")
    return list(dict.fromkeys(counts))


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(_positive_int(part) for part in text.split(",") if part.strip())


def _size_list(text: str) -> tuple[int, ...]:
    sizes = tuple(parse_size(part) for part in text.split(",") if part.strip())
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"payload sizes must be at least 1 byte: {text!r}")
    return sizes


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``bench`` on the ``zmsg`` command's subparsers."""
    bench = sub.add_parser(
        "bench",
        help="measure zmsg against raw pyzmq (W1-W6), or sweep in-flight and payload size",
        description="Run the standard workloads on zmsg and on raw pyzmq in the same run and print "
                    "the zmsg/raw ratios. Service and clients run in separate processes over loopback TCP.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--workload", "-w", action="append", type=_workloads, metavar="W1,W2,...",
                       help="workloads to run (repeatable or comma-separated; default: all)")
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--count", "-n", type=_positive_int,
                      help="timed requests/events per workload (default: the workload's)")
    size.add_argument("--duration", "-d", type=_positive_float,
                      help="run each workload (with --sweep: each point) for this many seconds instead")
    bench.add_argument("--in-flight", type=_positive_int, default=DEFAULT_IN_FLIGHT,
                       help=f"requests outstanding in W2 and W4, streams in W6 (default {DEFAULT_IN_FLIGHT})")
    bench.add_argument("--payload-size", type=parse_size, default=DEFAULT_PAYLOAD_SIZE,
                       help="W4 payload size in bytes, K/M suffixes allowed (default 64K)")
    bench.add_argument("--endpoint", help="measure a zmsg service already running there (no raw baseline "
                                          "unless --raw-endpoint)")
    bench.add_argument("--raw-endpoint", help="a running `python -m zmsg.bench.raw` server to compare against")
    bench.add_argument("--client", choices=["async", "sync", "both"], default=None,
                       help="which client measures W1 and the sweep's window-1 points: ClientProxy (async), "
                            "SyncClientProxy (sync) or both (default: both; the sweep measures ClientProxy "
                            "at every point either way)")
    bench.add_argument("--pin", choices=PIN_CHOICES, default="auto",
                       help="CPU placement of service and client: split (service on the last CPU, client on "
                            "the first), same (both on the first), none (the OS decides), auto (default: split "
                            "for W1 and the sweep's window-1 points, none otherwise; on VMs a cross-CPU "
                            "wake-up costs tens of us, so unpinned "
                            "W1 flips between two modes from run to run)")
    bench.add_argument("--repeat", type=_positive_int, default=1,
                       help="measure each workload (or sweep point) N times, zmsg and raw alternating; "
                            "report medians and the spread of the ratios")
    bench.add_argument("--workers", type=_worker_counts, default=[1], metavar="N[,N...]",
                       help="serve with `zmsg serve --workers N` (comma-separated: each in turn, in the same "
                            "run, e.g. 1,2 for the scaling curve); default 1")
    bench.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    bench.add_argument("--sweep", action="store_true",
                       help="vary in-flight (1, 8, 64, 512) and payload size (64 B to 1 MiB) instead")
    bench.add_argument("--sweep-in-flight", type=_int_list, metavar="N,N,...",
                       help="with --sweep: the in-flight windows (default 1,8,64,512)")
    bench.add_argument("--sweep-payload", type=_size_list, metavar="SIZE,SIZE,...",
                       help="with --sweep: the payload sizes (default 64,1K,16K,64K,1M)")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="with --sweep: save a plot of throughput, latency and the zmsg/raw ratios")
    bench.set_defaults(func=_cmd_bench)
    return bench  # type: ignore[no-any-return]


def _cmd_bench(args: argparse.Namespace) -> int:
    from zmsg.bench.procs import BenchError
    from zmsg.bench.report import TerminalProgress, format_json, format_table
    from zmsg.bench.runner import BenchOptions, run_bench

    try:
        workloads = [k for group in (args.workload or [list(WORKLOADS)]) for k in group]
        opts = BenchOptions(
            workloads=list(dict.fromkeys(workloads)), count=args.count, duration=args.duration,
            in_flight=args.in_flight, payload_size=args.payload_size, endpoint=args.endpoint,
            raw_endpoint=args.raw_endpoint, clients=_clients(args.client),
            pin=args.pin, repeat=args.repeat, workers=args.workers,
        )
        if not args.sweep:
            for given, flag in ((args.plot, "--plot"), (args.sweep_in_flight, "--sweep-in-flight"),
                                (args.sweep_payload, "--sweep-payload")):
                if given:
                    raise BenchError(f"{flag} goes with --sweep")
        elif args.count is not None:
            raise BenchError("--sweep runs each point for a time: use --duration, not --count")
        progress = TerminalProgress(sys.stderr)
        if args.sweep:
            from zmsg.bench.sweep import IN_FLIGHT, PAYLOAD_SIZES, run_sweep, sweep_table

            if args.plot:
                from zmsg.bench.sweep import check_plotting

                check_plotting()
            sweep = run_sweep(opts, progress, args.sweep_in_flight or IN_FLIGHT, args.sweep_payload or PAYLOAD_SIZES)
            if args.plot:
                from zmsg.bench.sweep import plot

                plot(sweep, args.plot)
                print(f"zmsg: plot saved to {args.plot}", file=sys.stderr)
            print(format_json(sweep) if args.json else sweep_table(sweep))
            return 0
        report = run_bench(opts, progress)
    except BenchError as exc:
        print(f"zmsg: error: {exc}", file=sys.stderr)
        return 1
    print(format_json(report) if args.json else format_table(report))
    failed = [k for k, e in report["workloads"].items() if "error" in (e.get("zmsg") or {})]
    return 1 if failed else 0


def _clients(choice: str | None) -> list[str]:
    if choice is None:
        return ["async", "sync"]
    return ["async", "sync"] if choice == "both" else [choice]
