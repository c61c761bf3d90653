"""benches/ab_trees.py: variants parsed, paired ratios reported, and one short real round."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ab_trees", ROOT / "benches" / "ab_trees.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_variant_is_a_tree_and_settings(ab: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "zmsg").mkdir()
    (tmp_path / "zmsg" / "__init__.py").write_text("")
    variant = ab.Variant.parse(f"old={tmp_path}:ZMSG_SERVE_REPLY_HWM=1000,ZMSG_NO_EXTENSIONS=1")
    assert variant.name == "old"
    assert variant.env == {"PYTHONPATH": str(tmp_path.resolve()), "ZMSG_SERVE_REPLY_HWM": "1000",
                           "ZMSG_NO_EXTENSIONS": "1"}
    assert ab.Variant.parse("installed=.").env == {}
    for bad in ("noequals", "x=", f"x={tmp_path / 'missing'}", "x=.:NOVALUE"):
        with pytest.raises(argparse.ArgumentTypeError):
            ab.Variant.parse(bad)
    assert [ab.parse_size(s) for s in ("64", "16K", "1m")] == [64, 16384, 1 << 20]


def test_ratios_are_paired_by_round(ab: ModuleType) -> None:
    def run(rate: float, p50: float) -> dict[str, float]:
        return {"rate": rate, "p50_us": p50, "cpu_s": 0.001, "count": 10, "service_cpu_us": 50.0}

    # Round 2 is twice as fast for everyone: per-round ratios stay 0.9, medians of rates do not.
    rows = {"a": [run(900, 110), run(1800, 55)], "raw": [run(1000, 100), run(2000, 50)]}
    text = ab.report(rows)
    a_line = next(line for line in text.splitlines() if line.startswith("a "))
    assert a_line.split()[-2:] == ["0.90", "1.10"]


def test_one_short_round_runs_every_variant_and_raw(ab: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert ab.main(["x=.", "y=.:ZMSG_SERVE_REPLY_HWM=64", "--impl", "sync", "--payload", "1K",
                    "--seconds", "0.2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[2:]]
    assert names == ["x", "y", "raw"]
    with pytest.raises(SystemExit):
        ab.main(["raw=.", "--rounds", "1"])  # reserved name
