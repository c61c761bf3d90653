"""``send`` is generic in its ``response_type``: mypy sees the awaited value's type."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).parent / "send_sample.py"
ROOT = Path(__file__).parents[2]  # mypy reads zmsg's sources (and py.typed) from the source tree


def test_mypy_types_send_by_its_response_type() -> None:
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", "/dev/null",
         "--hide-error-context", "--no-error-summary", str(SAMPLE)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    marked = [n for n, line in enumerate(SAMPLE.read_text().splitlines(), 1) if "# E:" in line]
    lines = sorted(int(e.split(":")[1]) for e in errors)
    assert lines == marked, "\n".join(errors) or result.stderr
    assert all("Incompatible types in assignment" in e for e in errors)
