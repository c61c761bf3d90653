"""The sweep's ratio arithmetic and its ratio table, on made-up numbers (no sockets, no timing)."""

from __future__ import annotations

from typing import Any

from zmsg.bench.sweep import TARGETS, point_ratios, ratio_table, window1_table


def _run(rate: float, p50: float) -> dict[str, Any]:
    return {"rate": rate, "p50_us": p50, "p99_us": 2 * p50}


def test_point_ratios_pair_the_runs_and_report_median_and_spread() -> None:
    zruns = [_run(100, 10), _run(90, 12), _run(120, 9)]
    rruns = [_run(100, 10), _run(100, 10), _run(100, 10)]
    ratios = point_ratios(zruns, rruns)
    assert ratios["rate_runs"] == [1.0, 0.9, 1.2]
    assert ratios["rate"] == 1.0 and ratios["rate_spread"] == [0.9, 1.2]
    assert ratios["p50_us"] == 1.0 and ratios["p50_us_spread"] == [0.9, 1.2]
    assert ratios["met"] is True


def test_point_ratios_skip_failed_runs_and_judge_both_targets() -> None:
    ratios = point_ratios([_run(90, 10), {"error": "boom"}], [_run(100, 10), _run(100, 10)])
    assert ratios["rate_runs"] == [0.9]
    assert ratios["rate"] < TARGETS["rate"] and ratios["met"] is False
    slow = point_ratios([_run(100, 12)], [_run(100, 10)])
    assert slow["p50_us"] > TARGETS["p50_us"] and slow["met"] is False


def test_ratio_table_has_one_cell_per_point_and_marks_misses() -> None:
    sweep = {
        "in_flight": [1, 8],
        "payload_sizes": [64, 1024],
        "ratios": [
            {"in_flight": 1, "payload_size": 64, **point_ratios([_run(80, 12)], [_run(100, 10)])},
            {"in_flight": 8, "payload_size": 1024,
             **point_ratios([_run(300, 5), _run(310, 6)], [_run(100, 10), _run(100, 10)])},
        ],
    }
    text = ratio_table(sweep)
    rate_block, p50_block = text.split("\n\n")
    assert "requests/s" in rate_block and "p50" in p50_block
    assert "64 B" in rate_block and "1 KiB" in rate_block
    rate_rows = rate_block.splitlines()[3:]
    assert rate_rows[0].split() == ["1", "0.80", "!", "-"]  # "-": the point not measured
    assert "3.05 (3.00-3.10)" in rate_rows[1] and "!" not in rate_rows[1]


def test_window1_table_shows_every_client_measured_at_one_in_flight() -> None:
    raw, loop, zmsg = [_run(100, 10)], [_run(88, 11.5)], [_run(90, 11)]
    sweep = {"window1": [
        {"payload_size": 16384, "impl": "zmsg", "baseline": "raw", **point_ratios(zmsg, raw)},
        {"payload_size": 16384, "impl": "raw-async", "baseline": "raw", **point_ratios(loop, raw)},
        {"payload_size": 16384, "impl": "zmsg", "baseline": "raw-async", **point_ratios(zmsg, loop)},
    ]}
    title, header, _rule, row = window1_table(sweep).splitlines()
    assert "one request in flight" in title
    assert "ClientProxy / raw asyncio" in header and "SyncClientProxy" not in header  # not measured: no column
    assert row.split() == ["16", "KiB", "0.90", "/", "1.10", "0.88", "/", "1.15", "1.02", "/", "0.96"]
    assert window1_table({"window1": []}) == ""
