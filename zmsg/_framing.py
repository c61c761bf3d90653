"""Picks the framing implementation: compiled ``_fastframe`` when built, else the Python twin.

Set ``ZMSG_NO_EXTENSIONS=1`` to force the pure-Python twin (tests and benchmarks use it to
compare the two). ``IMPLEMENTATION`` says which one is in use.
"""

from __future__ import annotations

import os

EXTENSIONS_DISABLED = os.environ.get("ZMSG_NO_EXTENSIONS", "") not in ("", "0")
"""``ZMSG_NO_EXTENSIONS`` is set: no compiled module is used (framing here, socket options in
zmsg.transport.sockopt)."""

if EXTENSIONS_DISABLED:
    from zmsg import _fastframe_py as _impl

    IMPLEMENTATION = "python"
else:
    try:
        from zmsg import _fastframe as _impl  # type: ignore[no-redef]

        IMPLEMENTATION = "cython"
    except ImportError:  # pragma: no cover - only where the extension was not built
        from zmsg import _fastframe_py as _impl

        IMPLEMENTATION = "python"

VERSION: int = _impl.VERSION
HEADER_SIZE: int = _impl.HEADER_SIZE
FLAG_EXTERNAL_BODY: int = _impl.FLAG_EXTERNAL_BODY
FLAG_METADATA: int = _impl.FLAG_METADATA
MAX_METADATA_LEN: int = _impl.MAX_METADATA_LEN
MAX_PATTERN_LEN: int = _impl.MAX_PATTERN_LEN
pack_header = _impl.pack_header
unpack_header = _impl.unpack_header
append_record = _impl.append_record
append_external = _impl.append_external
parse_frames = _impl.parse_frames
new_buffer = _impl.new_buffer
encode_metadata = _impl.encode_metadata
decode_metadata = _impl.decode_metadata

__all__ = [
    "IMPLEMENTATION",
    "EXTENSIONS_DISABLED",
    "VERSION",
    "HEADER_SIZE",
    "FLAG_EXTERNAL_BODY",
    "FLAG_METADATA",
    "MAX_METADATA_LEN",
    "MAX_PATTERN_LEN",
    "pack_header",
    "unpack_header",
    "append_record",
    "append_external",
    "parse_frames",
    "encode_metadata",
    "decode_metadata",
    "new_buffer",
]
