"""``ZMQ_EVENTS`` and ``ZMQ_RCVMORE`` without pyzmq's per-call option lookup, where it is safe.

The compiled ``zmsg._fastsock`` calls libzmq's ``zmq_getsockopt`` through a pointer resolved
here, once: from the libzmq *already loaded* in this process by pyzmq (``RTLD_NOLOAD``: never a
second copy), and only when that library reports the version pyzmq reports. Anything else (no
extension, ``ZMSG_NO_EXTENSIONS=1``, not Linux, another layout of pyzmq) uses pyzmq's
``Socket.get``; ``IMPLEMENTATION`` says which one is in use. The values are the same either way.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

import zmq
from zmq.backend import Socket as _BackendSocket

from zmsg._framing import EXTENSIONS_DISABLED

__all__ = ["events", "rcvmore", "IMPLEMENTATION", "POLLIN", "POLLOUT"]

_EVENTS = int(zmq.EVENTS)
# What ``events`` returns is tested against these: plain ints, because pyzmq's constants are
# enum flags and ``&`` on them is a Python-level call (~0.6-0.8 us each time).
POLLIN = int(zmq.POLLIN)
POLLOUT = int(zmq.POLLOUT)
_RCVMORE = int(zmq.RCVMORE)
_get = _BackendSocket.get


def _pyzmq_events(sock: Any) -> int:
    return _get(sock, _EVENTS)  # type: ignore[return-value]  # an int option


def _pyzmq_rcvmore(sock: Any) -> int:
    return _get(sock, _RCVMORE)  # type: ignore[return-value]  # an int option


def _loaded_libzmq() -> ctypes.CDLL | None:
    """The libzmq pyzmq loaded (found in this process's mappings), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libzmq" in line and "/" in line}
    except OSError:
        return None
    if len(paths) != 1:
        return None  # none mapped, or two copies: do not guess which one pyzmq uses
    try:
        return ctypes.CDLL(paths.pop(), mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except (OSError, AttributeError):
        return None


_Readers = tuple[Callable[[Any], int], Callable[[Any], int], str]
_PYZMQ: _Readers = (_pyzmq_events, _pyzmq_rcvmore, "pyzmq")


def _resolve() -> _Readers:
    if EXTENSIONS_DISABLED:
        return _PYZMQ
    try:
        from zmsg import _fastsock
    except ImportError:  # pragma: no cover - only where the extension was not built
        return _PYZMQ
    lib = _loaded_libzmq()
    if lib is None:
        return _PYZMQ
    try:
        major, minor, patch = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        lib.zmq_version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
        address = ctypes.cast(lib.zmq_getsockopt, ctypes.c_void_p).value
    except AttributeError:
        return _PYZMQ
    if (major.value, minor.value, patch.value) != zmq.zmq_version_info() or not address:
        return _PYZMQ
    _fastsock.bind(address)
    return _fastsock.events, _fastsock.rcvmore, "native"


events, rcvmore, IMPLEMENTATION = _resolve()
