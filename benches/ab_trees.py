"""Two or more variants of zmsg (source trees, or settings) against raw pyzmq, interleaved round by round.

    python benches/ab_trees.py before=/path/to/worktree after=. --impl sync --payload 64K --rounds 12
    python benches/ab_trees.py hwm16=. hwm1000=.:ZMSG_SERVE_REPLY_HWM=1000 --impl zmsg --payload 64K

A variant is ``NAME=PATH[:VAR=VALUE,...]``: its processes import zmsg from PATH (``.`` for the
installed package) with those environment variables set. Each round starts, for every variant and
for raw pyzmq, a fresh server and a fresh client process and runs one job of ``--seconds``; the
order reverses every other round, so no two variants are measured more than a few seconds apart,
which on a shared machine is what makes a few-percent difference visible where whole
``zmsg bench --sweep`` runs a minute apart are not. Placement follows the sweep's rule (one in
flight: server and client on different CPUs). Prints medians of requests/s, p50 and CPU per
request, and each variant's ratio to raw pyzmq in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from zmsg.bench import procs
from zmsg.bench.cli import parse_size
from zmsg.bench.workloads import Job


@dataclass(frozen=True)
class Variant:
    name: str
    env: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise argparse.ArgumentTypeError(f"a variant is NAME=PATH[:VAR=VALUE,...], not {text!r}")
        path, _, settings = rest.partition(":")
        env: dict[str, str] = {}
        if path != ".":
            if not (Path(path) / "zmsg" / "__init__.py").is_file():
                raise argparse.ArgumentTypeError(f"{path} has no zmsg package")
            env["PYTHONPATH"] = str(Path(path).resolve())
        for item in filter(None, settings.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"not VAR=VALUE: {item!r}")
            env[key] = value
        return cls(name, env)


def measure(impl: str, job: Job, env: dict[str, str]) -> dict[str, Any]:
    """One job: a fresh server, a fresh client process; the client's result plus service CPU."""
    server_cpus, client_cpus = procs.placement("auto", "W1" if job.in_flight == 1 else "sweep")
    # Child processes inherit os.environ (procs passes it on): the variant's settings go there.
    with mock.patch.dict(os.environ, env), (procs.raw_server() if impl.startswith("raw") else procs.zmsg_server()) as srv:
        procs.pin_process(srv.proc, server_cpus)
        cpu0 = procs.cpu_seconds(srv.proc)
        outcome = procs.run_worker({"impl": impl, "endpoint": srv.endpoint, "jobs": [job.as_dict()]},
                                   lambda *_: None, cpus=client_cpus)[0]
        cpu1 = procs.cpu_seconds(srv.proc)
    if "result" not in outcome:
        raise RuntimeError(f"{impl} failed: {outcome['error']}")
    result: dict[str, Any] = outcome["result"]
    if cpu0 is not None and cpu1 is not None:
        result["service_cpu_us"] = (cpu1 - cpu0) / (result["count"] + job.warmup) * 1e6
    return result


def report(rows: dict[str, list[dict[str, Any]]]) -> str:
    raw = rows["raw"]
    lines = [f"{'variant':12s} {'req/s':>9s} {'p50 us':>8s} {'client us':>9s} {'service us':>10s}   "
             f"{'req/s / raw':>11s} {'p50 / raw':>9s}"]
    for name, results in rows.items():
        rate = statistics.median(r["rate"] for r in results)
        p50 = statistics.median(r["p50_us"] for r in results)
        client = statistics.median(r["cpu_s"] / r["count"] * 1e6 for r in results)
        service = statistics.median(r.get("service_cpu_us", float("nan")) for r in results)
        # Paired by round: each variant's run against raw pyzmq's in the same round.
        rate_ratio = statistics.median(r["rate"] / b["rate"] for r, b in zip(results, raw, strict=True))
        p50_ratio = statistics.median(r["p50_us"] / b["p50_us"] for r, b in zip(results, raw, strict=True))
        lines.append(f"{name:12s} {rate:9,.0f} {p50:8.1f} {client:9.1f} {service:10.1f}   "
                     f"{rate_ratio:11.2f} {p50_ratio:9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", type=Variant.parse, metavar="NAME=PATH[:VAR=VALUE,...]")
    parser.add_argument("--impl", choices=("zmsg", "sync"), default="zmsg", help="the zmsg client (default zmsg)")
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--payload", default="64", help="echo payload size (64, 16K, 1M)")
    parser.add_argument("--seconds", type=float, default=1.5, help="per job (default 1.5)")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    if args.impl == "sync" and args.in_flight != 1:
        parser.error("SyncClientProxy makes sequential calls: --in-flight 1")
    names = [v.name for v in args.variants]
    if "raw" in names or len(set(names)) != len(names):
        parser.error("variant names must be distinct and not 'raw'")
    job = Job("ab", "echo", 0, 200, args.in_flight, parse_size(args.payload), args.seconds)
    order: list[tuple[str, str, dict[str, str]]] = [(v.name, args.impl, v.env) for v in args.variants]
    order.append(("raw", "raw", {}))
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in order}
    for round_index in range(args.rounds):
        for name, impl, env in (order if round_index % 2 == 0 else order[::-1]):
            rows[name].append(measure(impl, job, env))
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{name} {rows[name][-1]['rate']:,.0f}/s" for name, _, _ in order), file=sys.stderr, flush=True)
    print(f"{args.impl}, {args.in_flight} in flight x {job.payload_size:,} B, {args.rounds} rounds of "
          f"{args.seconds:g} s (medians; ratios paired by round)")
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
