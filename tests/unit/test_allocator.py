"""``tune_allocator`` applies glibc settings once, and stays out of the way when told to."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import zmsg
from zmsg.allocator import tune_allocator

_GLIBC = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc") if hasattr(os, "confstr") else False


def _tune_in_child(**env: str) -> str:
    """Run tune_allocator() in a fresh interpreter (mallopt is process-wide: not in this one)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "ZMSG_TUNE"))}
    proc = subprocess.run([sys.executable, "-c", "import zmsg; print(zmsg.tune_allocator())"],
                          env={**clean, **env}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_exported() -> None:
    assert zmsg.tune_allocator is tune_allocator and "tune_allocator" in zmsg.__all__


@pytest.mark.skipif(not _GLIBC, reason="mallopt settings exist on glibc only")
def test_applied_on_glibc() -> None:
    assert _tune_in_child() == "True"


@pytest.mark.parametrize("env", [{"ZMSG_TUNE_MALLOC": "0"}, {"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}])
def test_left_alone_when_the_environment_decides(env: dict[str, str]) -> None:
    assert _tune_in_child(**env) == "False"
