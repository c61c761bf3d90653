"""The sweep's ratio arithmetic and its ratio table, on made-up numbers (no sockets, no timing)."""

from __future__ import annotations

from typing import Any

import pytest

from zmsg.bench.stats import median_interval, verdict
from zmsg.bench.sweep import TARGETS, clients_table, point_ratios, ratio_table, target_summary


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
    rate_block, p50_block, summary = text.split("\n\n")
    assert summary.startswith("target met by the medians at 1 of 2 points (--repeat 5 or more")
    assert "requests/s" in rate_block and "p50" in p50_block
    assert "64 B" in rate_block and "1 KiB" in rate_block
    rate_rows = rate_block.splitlines()[3:]
    assert rate_rows[0].split() == ["1", "0.80", "!", "-"]  # "-": the point not measured
    assert "3.05 (3.00-3.10)" in rate_rows[1] and "!" not in rate_rows[1]


def test_clients_table_shows_every_client_measured_at_a_small_window() -> None:
    raw, loop, zmsg = [_run(100, 10)], [_run(88, 11.5)], [_run(90, 11)]
    sweep = {"clients": [
        {"in_flight": 8, "payload_size": 64, "impl": "raw-async", "baseline": "raw", **point_ratios(loop, raw)},
        {"in_flight": 1, "payload_size": 16384, "impl": "zmsg", "baseline": "raw", **point_ratios(zmsg, raw)},
        {"in_flight": 1, "payload_size": 16384, "impl": "raw-async", "baseline": "raw", **point_ratios(loop, raw)},
        {"in_flight": 1, "payload_size": 16384, "impl": "zmsg", "baseline": "raw-async", **point_ratios(zmsg, loop)},
    ]}
    title, header, _rule, row1, row8 = clients_table(sweep).splitlines()
    assert "small windows" in title
    assert "ClientProxy / raw asyncio" in header and "SyncClientProxy" not in header  # not measured: no column
    assert row1.split() == ["1", "16", "KiB", "0.90", "/", "1.10", "!", "0.88", "/", "1.15", "!", "1.02", "/", "0.96"]
    assert row8.split() == ["8", "64", "B", "-", "0.88", "/", "1.15", "!", "-"]  # by window, then payload
    assert clients_table({"clients": []}) == ""


def test_median_interval_is_the_narrowest_order_statistic_pair_with_the_coverage() -> None:
    # 3 runs: only the range, which holds the median 75 % of the time (1 - 2 / 2**3).
    assert median_interval([1.2, 0.8, 1.0]) == (0.8, 1.2, 0.75)
    # 10 runs: 2nd..9th holds it 97.9 % of the time; 3rd..8th only 89 %, short of 90 %.
    low, high, coverage = median_interval([float(v) for v in range(10, 0, -1)])
    assert (low, high) == (2.0, 9.0) and coverage == pytest.approx(1 - 2 * 11 / 1024)
    assert median_interval([1.0, 2.0, 3.0], confidence=0.5) == (1.0, 3.0, 0.75)  # k=2 would be the median alone: 0 %
    assert median_interval([5.0]) == (5.0, 5.0, 0.0)
    with pytest.raises(ValueError):
        median_interval([])


def test_verdict_needs_both_intervals_on_the_right_side() -> None:
    assert verdict((0.96, 1.2), (0.9, 1.05), 0.95, 1.10) == "met"
    assert verdict((0.80, 0.94), (0.9, 1.05), 0.95, 1.10) == "missed"  # requests/s wholly short
    assert verdict((0.96, 1.2), (1.11, 1.3), 0.95, 1.10) == "missed"  # p50 wholly over
    assert verdict((0.90, 1.00), (0.9, 1.05), 0.95, 1.10) == "unclear"
    assert verdict((0.96, 1.2), (1.0, 1.2), 0.95, 1.10) == "unclear"


def test_point_ratios_give_a_verdict_from_five_repeats_and_the_summary_names_the_points() -> None:
    raw = [_run(100, 10)] * 5
    three = point_ratios([_run(99, 10)] * 3, raw[:3])
    assert three["met"] is True and "verdict" not in three  # 75 %: too few repeats to judge the noise
    clear = point_ratios([_run(r, 10) for r in (97, 99, 100, 101, 104)], raw)
    assert clear["verdict"] == "met" and clear["coverage"] == pytest.approx(1 - 2 / 32)
    assert clear["rate_interval"] == [0.97, 1.04]
    noisy = point_ratios([_run(r, 10) for r in (80, 90, 93, 99, 110)], raw)
    assert noisy["met"] is False and noisy["verdict"] == "unclear"
    short = point_ratios([_run(r, 10) for r in (80, 85, 90, 91, 94)], raw)
    assert short["verdict"] == "missed"
    entries = [{"in_flight": 1, "payload_size": 16384, **noisy}, {"in_flight": 8, "payload_size": 64, **clear},
               {"in_flight": 64, "payload_size": 1 << 20, **short}]
    assert target_summary(entries) == (
        "target met by the medians at 1 of 3 points; beyond the noise (intervals of the median, coverage >= 94%): "
        "met at 1, missed at 1 (64 x 1 MiB), unclear at 1 (1 x 16 KiB)")
    assert target_summary([]) == ""
    small = {"clients": [{"in_flight": 1, "payload_size": size, "impl": "zmsg", "baseline": "raw", **e}
                         for size, e in ((64, noisy), (1024, clear), (4096, short))]}
    rows = clients_table(small).splitlines()[3:]
    assert [row.split()[-1] for row in rows] == ["?", "1.00", "!"]  # unclear, met (no mark), missed
