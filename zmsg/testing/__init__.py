"""Testing zmsg services: in-memory clients (``TestClient``, ``SyncTestClient``), ``FaultyLink``
(break the network on purpose) and the pytest plugin.

Names are imported lazily (PEP 562), so the pytest plugin, which pytest imports in every run
once zmsg is installed, loads nothing heavy until a test asks for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "TestClient": "zmsg.testing.memory",
    "SyncTestClient": "zmsg.testing.memory",
    "FaultyLink": "zmsg.testing.faulty_link",
    "LinkState": "zmsg.testing.faulty_link",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from zmsg.testing.faulty_link import FaultyLink as FaultyLink, LinkState as LinkState
    from zmsg.testing.memory import SyncTestClient as SyncTestClient, TestClient as TestClient


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zmsg.testing' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
