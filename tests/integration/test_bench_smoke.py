"""``zmsg bench`` runs end to end and reports what it promises (no timing thresholds here)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _bench(*args: str, timeout: float = 100) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "zmsg", "bench", "--json", *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_reports_every_workload_with_a_ratio_against_raw() -> None:
    report = _bench("--count", "300", "--client", "async")
    workloads = report["workloads"]
    assert set(workloads) == {"W1", "W2", "W3", "W4", "W5", "W6"}
    for key, entry in workloads.items():
        assert entry["workload"] == key
        for impl in ("zmsg", "raw"):
            assert "error" not in entry[impl], entry[impl]
            assert _positive(entry[impl]["rate"]) and _positive(entry[impl]["elapsed_s"]), (key, impl, entry[impl])
        assert _positive(entry["ratio"]), entry
        assert all(_positive(r) for r in entry["ratios"].values()), entry["ratios"]
        assert isinstance(entry["met"], bool)
    assert _positive(workloads["W1"]["zmsg"]["p50_us"]) and _positive(workloads["W1"]["zmsg"]["p99_us"])
    assert _positive(workloads["W4"]["zmsg"]["mb_per_s"]) and workloads["W4"]["zmsg"]["payload_size"] == 65536
    for impl in ("zmsg", "raw"):
        w3 = workloads["W3"][impl]
        assert w3["lost"] == 0 and w3["emitted"] == w3["count"] == 300
        assert workloads["W5"][impl]["count"] == workloads["W6"][impl]["count"] == 300
        assert workloads["W5"][impl]["streams"] == 1 and workloads["W6"][impl]["streams"] == 64
    assert report["machine"]["nproc"] >= 1 and report["machine"]["cpu"]


def test_bench_options_select_workload_window_and_payload() -> None:
    report = _bench("--workload", "W4", "--count", "50", "--in-flight", "4", "--payload-size", "1K",
                    "--client", "async")
    assert list(report["workloads"]) == ["W4"]
    result = report["workloads"]["W4"]["zmsg"]
    assert result["in_flight"] == 4 and result["payload_size"] == 1024 and result["count"] == 50


def test_bench_blocking_client_w1() -> None:
    report = _bench("--workload", "W1", "--count", "200", "--client", "sync")
    entry = report["workloads"]["W1-sync"]
    assert entry["client"] == "SyncClientProxy"
    assert "error" not in entry["zmsg"], entry["zmsg"]
    assert _positive(entry["ratio"])


def test_bench_rejects_an_unknown_workload() -> None:
    proc = subprocess.run([sys.executable, "-m", "zmsg", "bench", "--workload", "W9"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unknown workload" in proc.stderr


def test_bench_sweep_repeats_points_and_reports_ratios() -> None:
    report = _bench("--sweep", "--duration", "0.1", "--repeat", "2", "--sweep-in-flight", "1,8,16",
                    "--sweep-payload", "64,20K")
    assert report["repeat"] == 2 and report["in_flight"] == [1, 8, 16] and report["payload_sizes"] == [64, 20480]
    by_impl: dict[str, list[tuple[int, int]]] = {}
    for point in report["points"]:
        assert "error" not in point, point
        assert point["runs"] == 2 and _positive(point["rate"]) and _positive(point["p50_us"])
        by_impl.setdefault(point["impl"], []).append((point["in_flight"], point["payload_size"]))
    every = [(n, size) for n in (1, 8, 16) for size in (64, 20480)]
    assert by_impl == {"zmsg": every, "raw": every, "sync": every[:2], "raw-async": every[:4]}
    assert len(report["ratios"]) == 6
    # 1 and 8 in flight: raw pyzmq on asyncio, and at 1 the blocking client, each as a ratio.
    measured = {(e["in_flight"], e["payload_size"], e["impl"], e["baseline"]) for e in report["clients"]}
    pairs = (("zmsg", "raw"), ("raw-async", "raw"), ("zmsg", "raw-async"))
    assert measured == {(n, size, impl, base) for n in (1, 8) for size in (64, 20480) for impl, base in pairs} | {
        (1, size, "sync", "raw") for size in (64, 20480)}
    assert all(_positive(e["rate"]) and _positive(e["p50_us"]) for e in report["clients"])
    for entry in report["ratios"]:
        assert len(entry["rate_runs"]) == 2 and len(entry["p50_us_runs"]) == 2
        low, high = entry["rate_spread"]
        assert low <= entry["rate"] <= high and isinstance(entry["met"], bool)


def test_bench_sweep_prints_its_ratio_table() -> None:
    proc = subprocess.run([sys.executable, "-m", "zmsg", "bench", "--sweep", "--duration", "0.1",
                           "--sweep-in-flight", "2", "--sweep-payload", "1K"],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr
    assert "zmsg/raw requests/s (target >= 0.95)" in proc.stdout
    assert "zmsg/raw p50 latency (target <= 1.1)" in proc.stdout
    assert "one request in flight" not in proc.stdout  # only 2 in flight was swept


def test_bench_sweep_refuses_a_count() -> None:
    proc = subprocess.run([sys.executable, "-m", "zmsg", "bench", "--sweep", "--count", "10"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "--duration" in proc.stderr


def test_raw_asyncio_baseline_answers_every_request_with_many_in_flight() -> None:
    from zmsg.bench import procs
    from zmsg.bench.workloads import Job

    with procs.raw_server() as server:
        jobs = [Job("sweep", "echo", 300, 20, 4, 20000).as_dict(), Job("W1", "sum", 100, 10).as_dict()]
        outcomes = procs.run_worker({"impl": "raw-async", "endpoint": server.endpoint, "jobs": jobs},
                                    lambda *_: None)
    echo, total = (outcome["result"] for outcome in outcomes)
    assert echo["count"] == 300 and echo["in_flight"] == 4 and echo["payload_size"] == 20000
    assert total["count"] == 100 and echo["loop"] == "uvloop" and echo["framing"] == "raw"
    assert _positive(echo["p50_us"]) and _positive(total["p50_us"])
