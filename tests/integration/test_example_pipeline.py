"""examples/pipeline runs end to end: its service in a ``zmsg serve`` process, both clients."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline" / "main.py"


def test_the_pipeline_example_runs() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "typed reply: Invoice(id=1, customer='alice', total=120.0)" in out
    assert "whoami: alice" in out
    assert "exception handler: {'status': 404, 'message': 'no invoice 99'" in out
    assert "guard: {'status': 401" in out
    assert "sync typed reply: Invoice(id=2" in out
    # every request was timed by the interceptor (the event too, unless it was still in flight)
    timed = int(out.split("service log: ", 1)[1].split(" timed calls", 1)[0])
    assert timed >= 5 and "(trace trace-1)" in out
