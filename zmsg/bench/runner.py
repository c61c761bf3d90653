"""One ``zmsg bench`` run: start the servers, run each workload on zmsg and on raw pyzmq, compare.

For every workload the zmsg client and the raw client run one after the other, each in its
own process, against servers started for this run (or the ones ``--endpoint`` and
``--raw-endpoint`` name), so the ratio compares two measurements taken seconds apart on the same
machine. Absolute numbers drift on shared machines; the ratios are what to read. ``--repeat``
alternates the two several times and reports medians; each measurement also records the CPU
time the client and the server spent per operation, which says which side limits a workload.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from zmsg.bench.procs import (
    BenchError,
    Server,
    cpu_seconds,
    pin_process,
    placement,
    raw_server,
    run_worker,
    zmsg_server,
)
from zmsg.bench.workloads import DEFAULT_IN_FLIGHT, DEFAULT_PAYLOAD_SIZE, WORKLOADS, Job, Workload

__all__ = ["BenchOptions", "run_bench", "machine_info", "servers", "SYNC_W1_TARGET"]

SYNC_W1_TARGET = 1.1
_OPS = {"W1": "sum", "W2": "sum", "W3": "events", "W4": "echo", "W5": "stream", "W6": "stream"}


@dataclass
class BenchOptions:
    workloads: list[str] = field(default_factory=lambda: list(WORKLOADS))
    count: int | None = None
    duration: float | None = None
    in_flight: int = DEFAULT_IN_FLIGHT
    payload_size: int = DEFAULT_PAYLOAD_SIZE
    endpoint: str | None = None
    raw_endpoint: str | None = None
    clients: list[str] = field(default_factory=lambda: ["async"])  # "async" and/or "sync": W1, sweep at 1 in flight
    pin: str = "auto"  # CPU placement, see procs.placement
    repeat: int = 1  # measure each workload this many times (zmsg, raw, zmsg, raw, ...); report medians
    workers: list[int] = field(default_factory=lambda: [1])  # zmsg serve --workers N, each in turn


class Progress:
    """What a run reports while it goes; the CLI shows it, tests ignore it."""

    def begin(self, label: str, total: int) -> None: ...

    def update(self, label: str, done: int, total: int) -> None: ...

    def end(self, label: str, summary: str) -> None: ...


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured."""
    import msgspec
    import zmq

    import zmsg
    from zmsg import _framing
    from zmsg.runtime import uvloop_available

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or "unknown"
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "zmsg": zmsg.__version__,
        "framing": _framing.IMPLEMENTATION,
        "loop": "uvloop" if uvloop_available() else "asyncio",
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "msgspec": msgspec.__version__,
    }


def make_job(key: str, opts: BenchOptions, count: int | None = None) -> Job:
    spec = WORKLOADS[key]
    count = count if count is not None else (opts.count if opts.count is not None else spec.count)
    warmup = min(spec.warmup, max(1, count // 10))
    in_flight = opts.in_flight if spec.in_flight is not None else 1
    payload = opts.payload_size if key == "W4" else 0
    return Job(key, _OPS[key], count, warmup, in_flight, payload, opts.duration, label=f"{key} {spec.title}")


@contextmanager
def servers(opts: BenchOptions, need_raw: bool = True, workers: int = 1) -> Iterator[tuple[Server, Server | None]]:
    """The zmsg and raw servers of a run: started here, or the ones named on the command line."""
    with ExitStack() as stack:
        zsrv = (Server("zmsg", opts.endpoint, "", None) if opts.endpoint
                else stack.enter_context(zmsg_server(workers)))
        rsrv: Server | None = None
        if opts.raw_endpoint:
            rsrv = Server("raw", opts.raw_endpoint, "", None)
        elif need_raw and not opts.endpoint:
            rsrv = stack.enter_context(raw_server())
        yield zsrv, rsrv


def _measure(impl: str, server: Server, job: Job, label: str, progress: Progress, pin: str,
             workers: int = 1) -> dict[str, Any]:
    progress.begin(label, job.count if job.duration is None else 0)
    spec = {"impl": impl, "endpoint": server.endpoint, "events_endpoint": server.events_endpoint or None,
            "jobs": [job.as_dict()]}
    server_cpus, client_cpus = placement(pin, job.workload)
    if workers > 1:
        # The server process is the supervisor (idle); its workers may use every CPU, and
        # confining the client to one would measure the placement, not the scaling.
        server_cpus = client_cpus = None
    pin_process(server.proc, server_cpus)
    measured = server.proc if workers == 1 else None  # the supervisor's CPU says nothing of its workers'
    cpu_before = cpu_seconds(measured)
    outcome = run_worker(spec, lambda _i, done, total: progress.update(label, done, total), cpus=client_cpus)[0]
    cpu_after = cpu_seconds(measured)
    if "error" in outcome:
        progress.end(label, "failed: " + outcome["error"])
        return {"error": outcome["error"]}
    result: dict[str, Any] = outcome["result"]
    if cpu_before is not None and cpu_after is not None:
        # Includes the warm-up and the connection handshake: an upper bound per operation.
        result["server_cpu_us_per_op"] = (cpu_after - cpu_before) / (result["count"] + job.warmup) * 1e6
    spec_w = WORKLOADS[job.workload]
    progress.end(label, _summary(spec_w, result))
    return result


def _summary(spec: Workload, result: dict[str, Any]) -> str:
    if spec.key == "W1":
        return f"p50 {result['p50_us']:.1f} us, {result['rate']:,.0f} calls/s"
    if spec.key == "W3":
        return f"{result['rate']:,.0f} events/s, lost {result['lost']}"
    if spec.key == "W4":
        return f"{result['mb_per_s']:,.0f} MB/s"
    return f"{result['rate']:,.0f} {spec.unit}"


def _compare(spec: Workload, zres: dict[str, Any], rres: dict[str, Any] | None, target: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"metric": spec.metric, "unit": spec.unit,
                             "target": f"{'>=' if spec.higher_is_better else '<='} {target:g}x"}
    if rres is None or "error" in rres or "error" in zres:
        entry["ratio"] = None
        entry["met"] = None
        return entry
    ratios: dict[str, float] = {}
    for key in ("p50_us", "p99_us", "rate", "mb_per_s"):
        if key in zres and key in rres and rres[key]:
            ratios[key] = zres[key] / rres[key]
    ratio = ratios.get(spec.metric)
    entry["ratio"] = ratio
    entry["ratios"] = ratios
    if ratio is not None:
        met = ratio >= target if spec.higher_is_better else ratio <= target
        if spec.key == "W3":
            met = met and zres.get("lost") == 0
        entry["met"] = met
    return entry


def run_bench(opts: BenchOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the selected workloads on zmsg and on the raw baseline; return the report dict."""
    progress = progress or Progress()
    report: dict[str, Any] = {"machine": machine_info(), "options": {
        "workloads": opts.workloads, "count": opts.count, "duration": opts.duration,
        "in_flight": opts.in_flight, "payload_size": opts.payload_size,
        "endpoint": opts.endpoint, "raw_endpoint": opts.raw_endpoint, "clients": opts.clients, "pin": opts.pin,
        "repeat": opts.repeat, "workers": opts.workers,
    }, "workloads": {}}
    if opts.endpoint and opts.workers != [1]:
        raise BenchError("--workers starts the service itself: it does not go with --endpoint")
    for workers in opts.workers:
        _run_plan(opts, report, progress, workers)
    return report


def _run_plan(opts: BenchOptions, report: dict[str, Any], progress: Progress, workers: int) -> None:
    suffix = f"@{workers}w" if opts.workers != [1] else ""
    plan: list[tuple[str, str, Workload, Job]] = []
    for key in opts.workloads:
        spec = WORKLOADS[key]
        if key == "W3" and workers > 1:
            # The bench counts handled events by asking the service; with workers each one has
            # its own count (W3 with several instances is tested in tests/integration instead).
            report.setdefault("skipped", []).append(f"W3{suffix}: not measured with --workers above 1")
            continue
        job = make_job(key, opts)
        if "async" in opts.clients or key != "W1":
            plan.append((key + suffix, "zmsg", spec, job))
        if key == "W1" and "sync" in opts.clients:
            plan.append(("W1-sync" + suffix, "sync", spec, job))
    if not plan:
        raise BenchError("nothing to run")
    repeat = max(1, opts.repeat)
    with servers(opts, workers=workers) as (zsrv, rsrv):
        for entry_id, impl, spec, job in plan:
            client = "SyncClientProxy" if impl == "sync" else "ClientProxy"
            zruns: list[dict[str, Any]] = []
            rruns: list[dict[str, Any]] = []
            for rep in range(repeat):
                tag = f" [{rep + 1}/{repeat}]" if repeat > 1 else ""
                zruns.append(_measure(impl, zsrv, job, f"{entry_id} {spec.title} zmsg ({client}){tag}",
                                      progress, opts.pin, workers))
                if rsrv is not None:  # right after, so both see the same machine
                    rruns.append(_measure("raw", rsrv, job, f"{entry_id} {spec.title} raw pyzmq{tag}",
                                          progress, opts.pin, workers))
            zres = median_result(zruns)
            rres = median_result(rruns) if rruns else None
            target = SYNC_W1_TARGET if impl == "sync" else spec.target
            entry: dict[str, Any] = {"workload": spec.key, "title": spec.title, "client": client,
                                     "workers": workers, "zmsg": zres, "raw": rres}
            entry.update(_compare(spec, zres, rres, target))
            if repeat > 1 and rruns:
                entry["ratio_runs"] = [_compare(spec, z, r, target).get("ratio")
                                       for z, r in zip(zruns, rruns, strict=True)]
                entry["zmsg_runs"], entry["raw_runs"] = zruns, rruns
            report["workloads"][entry_id] = entry


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from repeated runs: the median of every number (lost events: the worst run)."""
    ok = [run for run in runs if "error" not in run]
    if not ok:
        return runs[0] if runs else {"error": "not run"}
    merged: dict[str, Any] = dict(ok[0])
    for key, value in ok[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [run[key] for run in ok if key in run]
            merged[key] = max(values) if key == "lost" else statistics.median(values)
    if len(ok) > 1:
        merged["runs"] = len(ok)
    if len(ok) < len(runs):
        merged["failed_runs"] = [run["error"] for run in runs if "error" in run]
    return merged

