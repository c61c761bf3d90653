"""Draw docs/grafana/zmsg-dashboard.json's panels over a bench run, from real /metrics scrapes.

What the picture is: not a Grafana screenshot (no Grafana runs here). This script serves the
bench service with ``zmsg serve --metrics-bind``, drives it with ``zmsg bench --endpoint`` (W2
requests, then W3 events) plus a trickle of rejected calls (unknown pattern, invalid payload),
scrapes ``/metrics`` over HTTP once a second with prometheus-client's parser, and evaluates each
panel's query itself (``rate`` over a sliding window, ``histogram_quantile`` by linear
interpolation inside the bucket, as Prometheus does), then draws the panels with matplotlib at
their ``gridPos`` and with their titles, read from the dashboard JSON.

    python scripts/observability/dashboard_picture.py --out docs/images/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import zmsg

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "zmsg-dashboard.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def start_service() -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zmsg", "serve", "zmsg.bench.service:service", "--bind", "tcp://127.0.0.1:0",
         "--metrics-bind", "127.0.0.1:0", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    url = endpoint = None
    while endpoint is None:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("zmsg serve exited before it was ready")
        if m := re.search(r"metrics on (\S+)", line):
            url = m[1]
        if m := re.search(r"serving '[^']*' on (\S+)", line):
            endpoint = m[1]
    assert url is not None
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    return proc, endpoint, url


def rejected_trickle(endpoint: str, stop: threading.Event) -> None:
    """A few bad calls a second, so the outcome breakdown has more than "ok" in it."""
    with zmsg.SyncClientProxy(endpoint, timeout=5) as client:
        while not stop.is_set():
            for pattern, data in (("no-such-pattern", None), ({"cmd": "sum"}, "not a list")):
                try:
                    client.send(pattern, data)
                except zmsg.RpcException:
                    pass
            stop.wait(0.25)


def group(samples: Samples, name: str, by: tuple[str, ...], where: Callable[[dict[str, str]], bool] = lambda _: True
          ) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (metric, labels), value in samples.items():
        if metric == name:
            labels_d = dict(labels)
            if where(labels_d):
                out[tuple(labels_d.get(k, "") for k in by)] += value
    return out


Series = dict[tuple[str, ...], list[float]]


def rates(series: list[tuple[float, Samples]], name: str, by: tuple[str, ...], window: int,
          where: Callable[[dict[str, str]], bool] = lambda _: True) -> tuple[list[float], Series]:
    times: list[float] = []
    out: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for i in range(window, len(series)):
        (t0, s0), (t1, s1) = series[i - window], series[i]
        g0, g1 = group(s0, name, by, where), group(s1, name, by, where)
        times.append(t1)
        for key in set(g0) | set(g1):
            out[key].append((g1.get(key, 0.0) - g0.get(key, 0.0)) / (t1 - t0))
        for key in out:
            out[key] += [0.0] * (len(times) - len(out[key]))
    return times, out


def quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile: linear interpolation inside the bucket that holds rank q."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return math.nan
    rank, previous_bound, previous_count = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / max(count - previous_count, 1e-12)
        previous_bound, previous_count = bound, count
    return previous_bound


def latency(series: list[tuple[float, Samples]], q: float, window: int) -> tuple[list[float], dict[str, list[float]]]:
    times, per = rates(series, "zmsg_request_duration_seconds_bucket", ("pattern", "le"), window)
    out: dict[str, list[float]] = defaultdict(list)
    patterns = {p for p, _ in per}
    for i in range(len(times)):
        for pattern in patterns:
            buckets = {float(le): values[i] for (p, le), values in per.items() if p == pattern}
            out[pattern].append(quantile(q, buckets))
    return times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "dashboard.png"))
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the W2 workload")
    parser.add_argument("--events", type=int, default=50000, help="events the W3 workload emits")
    parser.add_argument("--window", type=int, default=3, help="rate window, in scrapes (1 s apart)")
    args = parser.parse_args()

    proc, endpoint, url = start_service()
    series: list[tuple[float, Samples]] = []
    stop = threading.Event()

    def scraper() -> None:
        start = time.monotonic()
        while not stop.is_set():
            series.append((time.monotonic() - start, scrape(url)))
            stop.wait(1.0)

    threads = [threading.Thread(target=scraper), threading.Thread(target=rejected_trickle, args=(endpoint, stop))]
    try:
        for thread in threads:
            thread.start()
        time.sleep(3)
        for workload, size in (("W2", ["--duration", str(args.seconds)]), ("W3", ["--count", str(args.events)])):
            subprocess.run([sys.executable, "-m", "zmsg", "bench", "--endpoint", endpoint, "-w", workload, *size],
                           check=True, stdout=subprocess.DEVNULL)
            time.sleep(3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        proc.terminate()
        proc.wait(60)
    draw(series, args.window, Path(args.out))


def draw(series: list[tuple[float, Samples]], window: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    panels = {p["id"]: p for p in dashboard["panels"]}
    plt.style.use("dark_background")
    fig = plt.figure(figsize=(16, 12))
    fig.suptitle(y=0.99, t="zmsg services: docs/grafana/zmsg-dashboard.json's panels over a zmsg bench run "
                 "(W2 requests, then W3 events), computed from /metrics scrapes", fontsize=11)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels.values())

    def axes(pid: int) -> Any:
        g = panels[pid]["gridPos"]
        ax = fig.add_axes((g["x"] / 24 + 0.035, 0.94 - (g["y"] + g["h"]) / rows * 0.92 + 0.04,
                           g["w"] / 24 - 0.05, g["h"] / rows * 0.92 - 0.09))
        ax.set_title(panels[pid]["title"], fontsize=10, loc="left")
        ax.grid(alpha=0.2)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=8)
        return ax

    def lines(ax: Any, times: list[float], data: dict[Any, list[float]], label: Callable[[Any], str],
              scale: float = 1.0) -> None:
        for key, values in sorted(data.items(), key=lambda kv: str(kv[0])):
            if any(v and not math.isnan(v) for v in values):
                ax.plot(times, [v * scale for v in values], label=label(key), linewidth=1.2)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right")

    times, data = rates(series, "zmsg_requests_total", ("pattern", "outcome"), window)
    lines(axes(1), times, data, lambda k: f"{k[0]} {k[1]}")
    ax = axes(2)
    for q in (0.5, 0.99):
        times, per = latency(series, q, window)
        lines(ax, times, {(q, p): v for p, v in per.items()}, lambda k: f"p{round(k[0] * 100)} {k[1]}", scale=1e6)
    ax.set_ylabel("microseconds", fontsize=8)
    ax = axes(3)
    ax.plot([t for t, _ in series], [sum(group(s, "zmsg_requests_in_flight", ()).values()) for _, s in series],
            linewidth=1.2, label="bench")
    times, total = rates(series, "zmsg_requests_total", (), window)
    _, failed = rates(series, "zmsg_requests_total", (), window, where=lambda labels: labels["outcome"] != "ok")
    ax = axes(4)
    share = [f / t if t else math.nan for f, t in zip(failed.get((), [0.0] * len(times)), total.get((), []), strict=False)]
    ax.plot(times[:len(share)], [100 * s for s in share], linewidth=1.2, label="not ok")
    ax.set_ylabel("%", fontsize=8)
    times, data = rates(series, "zmsg_events_total", ("pattern", "outcome"), window)
    lines(axes(5), times, data, lambda k: f"{k[0]} {k[1]}")
    ax = axes(6)
    for metric, label in (("zmsg_events_missed_total", "events missed"),
                          ("zmsg_malformed_messages_total", "malformed messages")):
        times, data = rates(series, metric, (), window)
        ax.plot(times, [v * window for v in data.get((), [0.0] * len(times))], label=label, linewidth=1.2)
    ax.legend(fontsize=7, loc="upper right")
    ax = axes(7)
    ax.text(0.5, 0.5, "no instrumented proxy in this run\n(zmsg bench's client is not instrumented)",
            ha="center", va="center", fontsize=9, alpha=0.7, transform=ax.transAxes)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out} from {len(series)} scrapes")


if __name__ == "__main__":
    main()
