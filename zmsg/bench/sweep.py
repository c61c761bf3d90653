"""``zmsg bench --sweep``: throughput and latency over in-flight windows and payload sizes.

Every point echoes a payload of one size with one in-flight window for a fixed time, on zmsg
and on raw pyzmq, each client in its own process against servers started once for the sweep.
The plot (matplotlib, the optional ``bench`` extra) shows both, zmsg solid and raw dashed.
"""

from __future__ import annotations

from typing import Any

from zmsg.bench.procs import BenchError, pin_process, placement, run_worker
from zmsg.bench.runner import BenchOptions, Progress, machine_info, servers
from zmsg.bench.workloads import Job

__all__ = ["IN_FLIGHT", "PAYLOAD_SIZES", "POINT_SECONDS", "run_sweep", "sweep_table", "check_plotting", "plot"]

IN_FLIGHT = (1, 8, 64, 512)
PAYLOAD_SIZES = (64, 1024, 16 * 1024, 64 * 1024, 1024 * 1024)
POINT_SECONDS = 0.6


def _size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def _jobs(seconds: float) -> list[Job]:
    return [
        Job("sweep", "echo", 0, in_flight, in_flight, size, seconds,
            label=f"in-flight {in_flight}, {_size(size)}")
        for in_flight in IN_FLIGHT for size in PAYLOAD_SIZES
    ]


def run_sweep(opts: BenchOptions, progress: Progress) -> dict[str, Any]:
    """Measure every (in-flight, payload size) point on zmsg and raw; return the sweep report."""
    seconds = opts.duration or POINT_SECONDS
    jobs = _jobs(seconds)
    points: list[dict[str, Any]] = []
    with servers(opts) as (zsrv, rsrv):
        for impl, server in (("zmsg", zsrv), ("raw", rsrv)):
            if server is None:
                continue
            labels = [f"sweep {impl}: {job.label}" for job in jobs]
            progress.begin(labels[0], 0)

            def on_progress(index: int, done: int, total: int, labels: list[str] = labels) -> None:
                progress.update(labels[index], done, total)

            def on_outcome(index: int, outcome: dict[str, Any], labels: list[str] = labels) -> None:
                res = outcome.get("result")
                summary = (f"{res['rate']:,.0f} req/s, {res['mb_per_s']:,.1f} MB/s, p50 {res['p50_us']:,.0f} us"
                           if res else "failed: " + outcome["error"])
                progress.end(labels[index], summary)
                if index + 1 < len(labels):
                    progress.begin(labels[index + 1], 0)

            spec = {"impl": impl, "endpoint": server.endpoint, "events_endpoint": server.events_endpoint or None,
                    "jobs": [job.as_dict() for job in jobs]}
            server_cpus, client_cpus = placement(opts.pin, "sweep")
            pin_process(server.proc, server_cpus)
            outcomes = run_worker(spec, on_progress, on_outcome, cpus=client_cpus)
            for job, outcome in zip(jobs, outcomes, strict=True):
                point = {"impl": impl, "in_flight": job.in_flight, "payload_size": job.payload_size}
                point.update(outcome.get("result") or {"error": outcome.get("error")})
                points.append(point)
    if not any("rate" in p for p in points):
        raise BenchError("no sweep point succeeded")
    return {"machine": machine_info(), "pin": opts.pin, "seconds_per_point": seconds, "in_flight": list(IN_FLIGHT),
            "payload_sizes": list(PAYLOAD_SIZES), "points": points}


def sweep_table(sweep: dict[str, Any]) -> str:
    """One row per point: zmsg and raw side by side."""
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
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = sweep["machine"]
    return f"zmsg {m['zmsg']} sweep · {m['date']} · {m['nproc']} x {m['cpu']} · " \
           f"{sweep['seconds_per_point']:g} s per point\n\n" + "\n".join(lines)


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
    """Save throughput (requests/s, MB/s) and p50 latency against payload size, per in-flight."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    panels = (("rate", "requests/s"), ("mb_per_s", "MB/s (payload once)"), ("p50_us", "p50 latency (us)"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, in_flight in enumerate(sweep["in_flight"]):
            for impl, style in (("zmsg", "-"), ("raw", "--")):
                pts = sorted((p["payload_size"], p[key]) for p in sweep["points"]
                             if p["impl"] == impl and p["in_flight"] == in_flight and key in p)
                if pts:
                    ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o", markersize=3,
                            color=colors[i % len(colors)], label=f"{impl}, {in_flight} in flight")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("payload size (bytes)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    m = sweep["machine"]
    fig.suptitle(f"zmsg {m['zmsg']} echo sweep vs raw pyzmq (dashed) · {m['nproc']} x {m['cpu']} · {m['date'][:10]}",
                 fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
