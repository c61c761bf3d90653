"""``zmsg bench --sweep``: throughput and latency over in-flight windows and payload sizes.

Every point echoes a payload of one size with one in-flight window for a fixed time
(``--duration`` seconds per point), on zmsg and on raw pyzmq, each client in its own process
against servers started once for the sweep; ``--repeat N`` measures every point N times and
reports medians, and the zmsg/raw ratios with their spread. The plot (matplotlib, the optional
``bench`` extra) shows both sides, zmsg solid and raw dashed, and a panel of the ratios.

Points with 1 and 8 requests in flight are also measured with raw pyzmq driven from asyncio
(``raw-async``, see ``zmsg.bench.raw``), and window-1 points with the blocking ``SyncClientProxy``
(when the run's clients include it): the blocking raw client is the target every point is judged
against, and these say how much of a small window's gap is the event loop's, which no asyncio
client avoids (``clients`` in the report, ``clients_table``).
"""

from __future__ import annotations

import functools
import statistics
from typing import Any

from zmsg.bench.procs import BenchError, cpu_seconds, pin_process, placement, run_worker
from zmsg.bench.runner import BenchOptions, Progress, machine_info, median_result, servers
from zmsg.bench.stats import CONFIDENCE, median_interval, verdict
from zmsg.bench.workloads import Job

__all__ = ["IN_FLIGHT", "PAYLOAD_SIZES", "POINT_SECONDS", "TARGETS", "ASYNC_BASELINE_WINDOWS", "CLIENT_RATIOS",
           "run_sweep", "point_ratios", "target_summary", "ratio_table", "clients_table", "sweep_table",
           "check_plotting", "plot"]

IN_FLIGHT = (1, 8, 64, 512)
PAYLOAD_SIZES = (64, 1024, 16 * 1024, 64 * 1024, 1024 * 1024)
POINT_SECONDS = 0.6
# What every point should reach against raw pyzmq: requests/s at least, p50 latency at most.
TARGETS = {"rate": 0.95, "p50_us": 1.10}
# Windows also measured with raw pyzmq on asyncio (all), and SyncClientProxy (one in flight).
ASYNC_BASELINE_WINDOWS = (1, 8)
# The ratios reported where those clients ran, each against its own server: (client, the run it
# is divided by, column title).
CLIENT_RATIOS = (
    ("zmsg", "raw", "ClientProxy / raw"),
    ("raw-async", "raw", "raw asyncio / raw"),
    ("zmsg", "raw-async", "ClientProxy / raw asyncio"),
    ("sync", "raw", "SyncClientProxy / raw"),
)


def _size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def _jobs(seconds: float, in_flights: tuple[int, ...], sizes: tuple[int, ...]) -> list[Job]:
    # Warm-up: a few windows' worth of requests, so sockets, buffers and caches are hot.
    return [
        Job("sweep", "echo", 0, min(4 * in_flight, 2048), in_flight, size, seconds,
            label=f"in-flight {in_flight}, {_size(size)}")
        for in_flight in in_flights for size in sizes
    ]


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    """Right-aligned columns under ``header``, with a rule below it (every table here)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _forward(progress: Progress, label: str, _index: int, done: int, total: int) -> None:
    progress.update(label, done, total)


def _point_summary(res: dict[str, Any] | None, error: str) -> str:
    if not res:
        return "failed: " + error
    return f"{res['rate']:,.0f} req/s, {res['mb_per_s']:,.1f} MB/s, p50 {res['p50_us']:,.0f} us"


def run_sweep(opts: BenchOptions, progress: Progress, in_flights: tuple[int, ...] = IN_FLIGHT,
              sizes: tuple[int, ...] = PAYLOAD_SIZES) -> dict[str, Any]:
    """Measure every (in-flight, payload size) point on zmsg and raw; return the sweep report.

    Each point is measured ``opts.repeat`` times, zmsg and raw back to back in their own client
    processes (the order alternating from one repeat to the next), so every zmsg/raw ratio
    compares two measurements taken about a second apart. A point reports the median of each
    number; its ratios are the medians of the per-repeat ratios, with their spread.
    """
    seconds = opts.duration or POINT_SECONDS
    repeat = max(1, opts.repeat)
    jobs = _jobs(seconds, in_flights, sizes)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with servers(opts) as (zsrv, rsrv):
        sides = [(impl, srv) for impl, srv in (("zmsg", zsrv), ("raw", rsrv)) if srv is not None]
        async_sides = sides + [("raw-async", rsrv)] if rsrv is not None else sides
        window1_sides = async_sides + [("sync", zsrv)] if "sync" in opts.clients and zsrv is not None else async_sides
        for rep in range(repeat):
            tag = f" [{rep + 1}/{repeat}]" if repeat > 1 else ""
            for index, job in enumerate(jobs):
                order = (window1_sides if job.in_flight == 1
                         else async_sides if job.in_flight in ASYNC_BASELINE_WINDOWS else sides)
                for impl, server in (order if rep % 2 == 0 else order[::-1]):
                    label = f"sweep {impl}: {job.label}{tag}"
                    progress.begin(label, 0)
                    spec = {"impl": impl, "endpoint": server.endpoint,
                            "events_endpoint": server.events_endpoint or None, "jobs": [job.as_dict()]}
                    # One in flight is a latency measurement, placed as W1 is (see procs.placement).
                    server_cpus, client_cpus = placement(opts.pin, "W1" if job.in_flight == 1 else "sweep")
                    pin_process(server.proc, server_cpus)
                    cpu_before = cpu_seconds(server.proc)
                    outcome = run_worker(spec, functools.partial(_forward, progress, label), cpus=client_cpus)[0]
                    cpu_after = cpu_seconds(server.proc)
                    res = outcome.get("result")
                    if res and cpu_before is not None and cpu_after is not None:
                        # CPU time is far less sensitive than wall-clock rates to other load on
                        # the machine. Includes the warm-up: an upper bound per request.
                        ops = res["count"] + job.warmup
                        res["server_cpu_us_per_op"] = (cpu_after - cpu_before) / ops * 1e6
                        res["cpu_us_per_op"] = res["server_cpu_us_per_op"] + res.get("client_cpu_us_per_op", 0.0)
                    progress.end(label, _point_summary(res, outcome.get("error", "")))
                    runs.setdefault((impl, index), []).append(res or {"error": outcome.get("error")})
    points: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    clients: list[dict[str, Any]] = []
    for index, job in enumerate(jobs):
        for impl in ("zmsg", "raw", "sync", "raw-async"):
            if (impl, index) in runs:
                point = {"impl": impl, "in_flight": job.in_flight, "payload_size": job.payload_size}
                point.update(median_result(runs[(impl, index)]))
                points.append(point)
        if ("raw", index) in runs:
            ratios.append({"in_flight": job.in_flight, "payload_size": job.payload_size,
                           **point_ratios(runs[("zmsg", index)], runs[("raw", index)])})
        more_clients = ("raw-async", index) in runs or ("sync", index) in runs
        for impl, baseline, _title in CLIENT_RATIOS:
            if more_clients and (impl, index) in runs and (baseline, index) in runs:
                clients.append({"in_flight": job.in_flight, "payload_size": job.payload_size, "impl": impl,
                                "baseline": baseline, **point_ratios(runs[(impl, index)], runs[(baseline, index)])})
    if not any("rate" in p for p in points):
        raise BenchError("no sweep point succeeded")
    return {"machine": machine_info(), "pin": opts.pin, "seconds_per_point": seconds, "repeat": repeat,
            "in_flight": list(in_flights), "payload_sizes": list(sizes), "targets": dict(TARGETS),
            "points": points, "ratios": ratios, "clients": clients}


def point_ratios(zruns: list[dict[str, Any]], rruns: list[dict[str, Any]]) -> dict[str, Any]:
    """zmsg/raw ratios of one point: per repeat (paired runs), their median, min and max.

    ``met``: the medians meet the targets. With enough repeats for a 90 % interval of each median
    (5 or more, see ``zmsg.bench.stats``) also ``verdict``: "met", "missed" or "unclear" (the
    noise could put the point on either side), with the intervals and their ``coverage``.
    """
    out: dict[str, Any] = {}
    for key in ("rate", "p50_us", "p99_us", "cpu_us_per_op"):
        values = [z[key] / r[key] for z, r in zip(zruns, rruns, strict=True)
                  if z.get(key) and r.get(key)]
        if values:
            out[key] = statistics.median(values)
            out[key + "_runs"] = values
            out[key + "_spread"] = [min(values), max(values)]
    if "rate" in out and "p50_us" in out:
        out["met"] = out["rate"] >= TARGETS["rate"] and out["p50_us"] <= TARGETS["p50_us"]
        rate_low, rate_high, rate_coverage = median_interval(out["rate_runs"])
        p50_low, p50_high, p50_coverage = median_interval(out["p50_us_runs"])
        coverage = min(rate_coverage, p50_coverage)
        if coverage >= CONFIDENCE:
            out["rate_interval"], out["p50_us_interval"] = [rate_low, rate_high], [p50_low, p50_high]
            out["coverage"] = coverage
            out["verdict"] = verdict((rate_low, rate_high), (p50_low, p50_high), TARGETS["rate"], TARGETS["p50_us"])
    return out


def target_summary(entries: list[dict[str, Any]]) -> str:
    """How many points meet the target by their medians and, given enough repeats, beyond noise."""
    judged = [e for e in entries if "met" in e]
    if not judged:
        return ""
    text = f"target met by the medians at {sum(e['met'] for e in judged)} of {len(judged)} points"
    verdicts = [e for e in judged if "verdict" in e]
    if not verdicts:
        return text + f" (--repeat 5 or more for a verdict beyond the noise, from {CONFIDENCE:.0%} intervals)"
    coverage = min(e["coverage"] for e in verdicts)
    parts = []
    for name in ("met", "missed", "unclear"):
        points = [e for e in verdicts if e["verdict"] == name]
        if points and name != "met":
            where = ", ".join(f"{e.get('in_flight', 1)} x {_size(e['payload_size'])}" for e in points)
            parts.append(f"{name} at {len(points)} ({where})")
        else:
            parts.append(f"{name} at {len(points)}")
    return text + f"; beyond the noise (intervals of the median, coverage >= {coverage:.0%}): " + ", ".join(parts)


def _ratio_cell(entry: dict[str, Any] | None, key: str) -> str:
    if not entry or key not in entry:
        return "-"
    low, high = entry[key + "_spread"]
    target = TARGETS.get(key)
    miss = target is not None and (entry[key] < target if key == "rate" else entry[key] > target)
    cell = f"{entry[key]:.2f}"
    if len(entry[key + "_runs"]) > 1:
        cell += f" ({low:.2f}-{high:.2f})"
    return cell + (" !" if miss else "  ")


def ratio_table(sweep: dict[str, Any]) -> str:
    """The zmsg/raw ratio of requests/s and of p50 at every point, as two in-flight x payload grids.

    Cells are medians of the per-repeat ratios with their range in brackets; ``!`` marks a point
    that misses the target (requests/s >= 0.95x raw, p50 <= 1.10x raw).
    """
    by_key = {(r["in_flight"], r["payload_size"]): r for r in sweep.get("ratios", [])}
    blocks = []
    grids = [("rate", f"zmsg/raw requests/s (target >= {TARGETS['rate']:g})"),
             ("p50_us", f"zmsg/raw p50 latency (target <= {TARGETS['p50_us']:g})")]
    if any("cpu_us_per_op" in r for r in by_key.values()):
        grids.append(("cpu_us_per_op", "zmsg/raw CPU time per request, client + service (less load-sensitive)"))
    for key, title in grids:
        header = ["in flight"] + [_size(size) for size in sweep["payload_sizes"]]
        rows = [[str(n)] + [_ratio_cell(by_key.get((n, size)), key) for size in sweep["payload_sizes"]]
                for n in sweep["in_flight"]]
        lines = _grid(header, rows)
        blocks.append(title + "\n" + "\n".join(lines))
    summary = target_summary(sweep.get("ratios", []))
    return "\n\n".join(blocks) + ("\n\n" + summary if summary else "")


def clients_table(sweep: dict[str, Any]) -> str:
    """Small windows, every client measured there: requests/s and p50 ratios (medians).

    ``ClientProxy / raw asyncio`` compares zmsg with raw pyzmq on the same event loop: the gap
    between ``raw asyncio / raw`` and 1.0 is what the loop costs any asyncio client.
    """
    entries = {(e["in_flight"], e["payload_size"], e["impl"], e["baseline"]): e for e in sweep.get("clients", [])}
    columns = [(impl, base, title) for impl, base, title in CLIENT_RATIOS
               if any(k[2:] == (impl, base) for k in entries)]
    if not columns:
        return ""
    header = ["in flight", "payload"] + [title for _, _, title in columns]
    rows = []
    for in_flight, size in sorted({k[:2] for k in entries}):
        row = [str(in_flight), _size(size)]
        for impl, base, _title in columns:
            entry = entries.get((in_flight, size, impl, base))
            row.append("-" if not entry or "rate" not in entry or "p50_us" not in entry
                       else f"{entry['rate']:.2f} / {entry['p50_us']:.2f}" + _mark(entry))
        rows.append(row)
    lines = _grid(header, rows)
    return ("small windows, every client: requests/s / p50 ratios (! misses the target, "
            "? unclear beyond the noise)\n" + "\n".join(lines))


def _mark(entry: dict[str, Any]) -> str:
    """`` !`` for a miss, `` ?`` when the noise could put it either side (a verdict, 5+ repeats)."""
    judged = entry.get("verdict")
    if judged is None:
        return "  " if entry.get("met") else " !"
    return {"met": "  ", "missed": " !"}.get(judged, " ?")


def sweep_table(sweep: dict[str, Any]) -> str:
    """One row per point (zmsg and raw side by side, medians), then the ratio grids."""
    by_key = {(p["impl"], p["in_flight"], p["payload_size"]): p for p in sweep["points"]}
    header = ["in-flight", "payload", "zmsg req/s", "raw req/s", "zmsg/raw", "zmsg MB/s", "zmsg p50 us", "raw p50 us"]
    rows = []
    for in_flight in sweep["in_flight"]:
        for size in sweep["payload_sizes"]:
            z = by_key.get(("zmsg", in_flight, size), {})
            r = by_key.get(("raw", in_flight, size), {})
            ratio = z["rate"] / r["rate"] if z.get("rate") and r.get("rate") else None
            rows.append([str(in_flight), _size(size), _num(z.get("rate")), _num(r.get("rate")),
                         "-" if ratio is None else f"{ratio:.2f}x", _num(z.get("mb_per_s")),
                         _num(z.get("p50_us")), _num(r.get("p50_us"))])
    lines = _grid(header, rows)
    m = sweep["machine"]
    repeat = sweep.get("repeat", 1)
    head = f"zmsg {m['zmsg']} sweep · {m['date']} · {m['nproc']} x {m['cpu']} · " \
           f"{sweep['seconds_per_point']:g} s per point" + (f" · {repeat} repeats, medians" if repeat > 1 else "")
    text = head + "\n\n" + "\n".join(lines)
    if sweep.get("ratios"):
        text += "\n\n" + ratio_table(sweep)
    if sweep.get("clients"):
        text += "\n\n" + clients_table(sweep)
    return text


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def check_plotting() -> None:
    """Fail before measuring, not after, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install 'zmsg[bench]'") from None


def plot(sweep: dict[str, Any], path: str) -> None:
    """Save throughput (requests/s, MB/s), p50 latency and the zmsg/raw ratios against payload size.

    The ratio panel draws requests/s ratios solid and p50 ratios dashed, per in-flight window,
    with the spread over repeats as error bars, the targets as grey lines and, where measured,
    raw pyzmq on asyncio against blocking raw pyzmq as dotted lines in the window's colour.
    """
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(21, 4.8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    panels = (("rate", "requests/s"), ("mb_per_s", "MB/s (payload once)"), ("p50_us", "p50 latency (us)"))
    for ax, (key, title) in zip(axes, panels, strict=False):
        for i, in_flight in enumerate(sweep["in_flight"]):
            for impl, style in (("zmsg", "-"), ("raw", "--")):
                pts = sorted((p["payload_size"], p[key]) for p in sweep["points"]
                             if p["impl"] == impl and p["in_flight"] == in_flight and key in p)
                if pts:
                    ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o", markersize=3,
                            color=colors[i % len(colors)], label=f"{impl}, {in_flight} in flight")
        ax.set_yscale("log")
        ax.set_title(title)
    ratio_ax = axes[3]
    for i, in_flight in enumerate(sweep["in_flight"]):
        for key, style, what in (("rate", "-", "req/s"), ("p50_us", "--", "p50")):
            rpts = sorted((r["payload_size"], r[key], r[key + "_spread"]) for r in sweep.get("ratios", [])
                          if r["in_flight"] == in_flight and key in r)
            if rpts:
                ratio_ax.errorbar([x for x, _, _ in rpts], [y for _, y, _ in rpts],
                                  yerr=[[y - s[0] for _, y, s in rpts], [s[1] - y for _, y, s in rpts]],
                                  fmt=style, marker="o", markersize=3, capsize=2, color=colors[i % len(colors)],
                                  label=f"{what}, {in_flight} in flight")
    for i, in_flight in enumerate(sweep["in_flight"]):
        floor = sorted((e["payload_size"], e["rate"]) for e in sweep.get("clients", [])
                       if e["in_flight"] == in_flight and e["impl"] == "raw-async" and e["baseline"] == "raw"
                       and "rate" in e)
        if floor:  # what the event loop costs raw pyzmq itself at this window
            ratio_ax.plot([x for x, _ in floor], [y for _, y in floor], ":", marker="x", markersize=4,
                          color=colors[i % len(colors)], label=f"req/s, raw pyzmq on asyncio / raw, {in_flight} in flight")
    for key, target in TARGETS.items():
        ratio_ax.axhline(target, color="grey", linewidth=0.8, linestyle="-" if key == "rate" else "--")
    ratio_ax.set_yscale("log")
    ratio_ax.set_title(f"zmsg/raw: req/s solid (>= {TARGETS['rate']:g}), p50 dashed (<= {TARGETS['p50_us']:g})")
    ratio_ax.legend(fontsize=7, ncol=2)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("payload size (bytes)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    m = sweep["machine"]
    repeat = sweep.get("repeat", 1)
    fig.suptitle(f"zmsg {m['zmsg']} echo sweep vs raw pyzmq (dashed) · {m['nproc']} x {m['cpu']} · {m['date'][:10]}"
                 f" · {sweep['seconds_per_point']:g} s per point" + (f", median of {repeat}" if repeat > 1 else ""),
                 fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
