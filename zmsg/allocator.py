"""glibc allocator settings for processes that move large payloads: ``tune_allocator()``.

Why: glibc serves an allocation of 128 KiB or more with its own ``mmap`` and gives freed memory
at the top of a heap back to the kernel as soon as more than 128 KiB of it is free (both limits
move up by themselves after some frees, not reliably). A process that receives, decodes,
encodes and sends 64 KiB-1 MiB payloads allocates and frees several such buffers per message,
so each of them can cost a fresh mapping and a page fault per 4 KiB touched: measured here
(``zmsg bench --sweep``, one request in flight, 1 MiB payloads) the zmsg service spent ~870 us
per 1 MiB send and ~370 us per 1 MiB encode, against ~95 us and ~35 us once the buffers stay in
the heap, which made requests/s about 4x higher (see benches/RESULTS.md). Raw pyzmq programs
gain the same way.

``tune_allocator()`` raises ``M_MMAP_THRESHOLD`` (buffers up to 8 MiB come from the heap and are
reused) and ``M_TRIM_THRESHOLD`` (up to 32 MiB of freed memory per heap stays with the process
instead of being unmapped and faulted in again). That is the whole cost: a process may keep
that much more memory after a peak. ``zmsg serve`` applies it at start; applications moving
large payloads may call it once, early. It does nothing off glibc, when the environment already
chooses these settings (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or malloc tunables
in ``GLIBC_TUNABLES``), or when ``ZMSG_TUNE_MALLOC=0``.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["tune_allocator", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 8 * 1024 * 1024
TRIM_THRESHOLD = 32 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_ENV_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_allocator(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Keep large payload buffers in the heap (glibc ``mallopt``); True when the settings were applied."""
    if os.environ.get("ZMSG_TUNE_MALLOC", "") in ("0", "no", "false", "off"):
        return False
    if any(name in os.environ for name in _ENV_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False  # the operator chose: leave it
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
    except (ValueError, OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) & bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
