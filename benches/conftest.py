"""Micro-benchmarks of zmsg's hot path (pytest-benchmark). Not part of the default test run.

Run: ``pytest benches/ --benchmark-only`` (add ``--benchmark-columns=min,median,ops`` for a
compact table). Framing benchmarks run on both twins: ``cython`` (zmsg._fastframe) and
``python`` (zmsg._fastframe_py).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from zmsg import _fastframe_py

TWINS = [pytest.param(importlib.import_module("zmsg._fastframe"), id="cython"),
         pytest.param(_fastframe_py, id="python")]


@pytest.fixture(params=TWINS)
def ff(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module
