"""benches/instructions.py: reading callgrind's counts and reporting them, and (with valgrind
installed) one real traced pair."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benches" / "instructions.py"

ANNOTATED = """\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
263,589,760 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                    file:function
--------------------------------------------------------------------------------
196,914,743 (74.71%)  ./string/../sysdeps/x86_64/memmove-vec-unaligned-erms.S:__memcpy_avx_unaligned_erms [libc.so.6]
 19,160,184 ( 7.27%)  Python/ceval.c:PyObject_Vectorcall
    500,755 ( 0.19%)  ./string/../sysdeps/x86_64/memset-vec-unaligned-erms.S:__memset_avx2_unaligned_erms [libc.so.6]
      1,000 ( 0.00%)  ./string/../sysdeps/x86_64/multiarch/memmove-vec-unaligned-erms.S:__memmove_avx_unaligned [libc.so.6]
"""


@pytest.fixture(scope="module")
def instructions() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_instructions", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_thread_costs_splits_out_the_copies(instructions: ModuleType) -> None:
    assert instructions.thread_costs(ANNOTATED) == (263_589_760, 196_914_743 + 1_000)  # not memset
    assert instructions.thread_costs("no totals here") == (0, 0)


def test_sizes_parse_with_suffixes(instructions: ModuleType) -> None:
    assert [instructions.parse_size(s) for s in ("64", "16K", "1m")] == [64, 16384, 1 << 20]
    with pytest.raises(Exception, match="not a size"):
        instructions.parse_size("16 GB")


def test_report_pairs_each_zmsg_process_with_raw_pyzmq(instructions: ModuleType) -> None:
    count = instructions.Count
    counts = [count("client", "raw", 64, 1, 1000, 50_000.0, 0.0, 4_000.0),
              count("client", "sync", 64, 1, 1000, 40_000.0, 0.0, 3_000.0),
              count("client", "zmsg", 64, 1, 1000, 70_000.0, 0.0, 3_000.0),  # no raw-async: no ratio
              count("service", "raw", 65536, 1, 1000, 300_000.0, 200_000.0, 6_000.0),
              count("service", "zmsg", 65536, 1, 1000, 250_000.0, 200_000.0, 7_000.0)]
    text = instructions.report(counts)
    assert "| client | sync | 64 B | 1 | 40,000 | 0 | 40,000 | 3,000 |" in text
    assert "- client sync / raw, 64 B x 1: main thread 0.80x, without memcpy 0.80x" in text
    assert "- service zmsg / raw, 65,536 B x 1: main thread 0.83x, without memcpy 0.50x" in text
    assert "zmsg / raw-async" not in text


@pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("callgrind_control") is None,
                    reason="needs valgrind (callgrind): the counts come from it")
def test_one_client_and_one_service_are_counted(instructions: ModuleType, tmp_path: Path) -> None:
    client = instructions.count_client("sync", 64, 50, 1, tmp_path)
    service = instructions.count_service("zmsg", 64, 50, 1, tmp_path)
    for counted in (client, service):
        assert counted.requests == 50
        # A request costs tens of thousands of instructions; the warm-up is not counted.
        assert 5_000 < counted.main < 500_000
        assert counted.other_threads > 0
