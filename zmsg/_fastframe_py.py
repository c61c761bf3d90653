"""Pure-Python twin of ``zmsg._fastframe``: the readable specification of the wire format.

A ZeroMQ message is a list of frames. Frame 0 (after any ROUTER identity frames) is a *batch*:
records laid back to back, each a 24-byte little-endian header, the pattern bytes and the body
bytes. A record whose FLAG_EXTERNAL_BODY bit is set carries no body inside the batch; its body is
the next unused frame of the message (so large payloads travel without being copied into the
batch). See docs/protocol.md for the meaning of every field.

Header layout (struct ``<BBHIQIHH``)::

    offset size field
    0      1    version          (1)
    1      1    kind
    2      2    flags
    4      4    body_len
    8      8    correlation_id
    16     4    ttl_ms           (remaining time budget of a request, 0 = none)
    20     2    pattern_len
    22     2    reserved         (must be 0)

A record whose FLAG_METADATA bit is set starts its body (inline or external) with a metadata
section; records without the bit are untouched, so metadata costs nothing when unused::

    u16 section_len                      (bytes of entries that follow, at most 65535)
    entries, back to back, each:
        u8  key_len   (1..255)  key      (UTF-8)
        u16 value_len           value    (UTF-8)

The payload is what follows the section. Keys are unique within a section.

This module and the Cython one must agree byte for byte; a differential test checks it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from zmsg.errors import FrameError

VERSION = 1
HEADER_SIZE = 24
FLAG_EXTERNAL_BODY = 0x0001
FLAG_METADATA = 0x0002
MAX_METADATA_LEN = 0xFFFF
MAX_METADATA_KEY_LEN = 0xFF
MAX_PATTERN_LEN = 0xFFFF
MAX_BODY_LEN = 0xFFFFFFFF
MAX_ID = 0xFFFFFFFFFFFFFFFF

_HEADER = struct.Struct("<BBHIQIHH")
_U16 = struct.Struct("<H")

Record = tuple[int, int, int, int, bytes, Any]


def pack_header(kind: int, flags: int, correlation_id: int, ttl_ms: int, pattern_len: int, body_len: int) -> bytes:
    """Pack one record header; raises ValueError (via struct) for out-of-range fields."""
    _check_ranges(kind, flags, correlation_id, ttl_ms, pattern_len, body_len)
    return _HEADER.pack(VERSION, kind, flags, body_len, correlation_id, ttl_ms, pattern_len, 0)


def unpack_header(data: bytes, offset: int = 0) -> tuple[int, int, int, int, int, int, int]:
    """Return (version, kind, flags, body_len, correlation_id, ttl_ms, pattern_len)."""
    if len(data) - offset < HEADER_SIZE:
        raise FrameError(f"truncated header: {len(data) - offset} bytes, need {HEADER_SIZE}")
    version, kind, flags, body_len, cid, ttl_ms, pattern_len, _reserved = _HEADER.unpack_from(data, offset)
    return version, kind, flags, body_len, cid, ttl_ms, pattern_len


def append_record(
    buf: bytearray, kind: int, flags: int, correlation_id: int, ttl_ms: int, pattern: bytes, body: bytes
) -> None:
    """Append a complete record (header, pattern, body) to a batch being built."""
    buf += pack_header(kind, flags & ~FLAG_EXTERNAL_BODY, correlation_id, ttl_ms, len(pattern), len(body))
    buf += pattern
    buf += body


def append_external(
    buf: bytearray, kind: int, flags: int, correlation_id: int, ttl_ms: int, pattern: bytes, body_len: int
) -> None:
    """Append a record whose body travels as its own frame after the batch."""
    buf += pack_header(kind, flags | FLAG_EXTERNAL_BODY, correlation_id, ttl_ms, len(pattern), body_len)
    buf += pattern


def parse_frames(frames: Sequence[Any], start: int = 0) -> list[Record]:
    """Parse the batch at ``frames[start]`` and resolve external bodies from later frames.

    Returns ``(kind, flags, correlation_id, ttl_ms, pattern, body)`` tuples. On a fault raises
    FrameError carrying the records parsed before it and the faulty record's id when known.
    """
    if start >= len(frames):
        raise FrameError("message has no batch frame")
    data = frames[start]
    if type(data) is not bytes:
        # A bytearray (BatchBuilder.take) or a zmq.Frame (a zero-copy receive): the compiled twin
        # reads any buffer and returns bytes; so does this one, at the cost of one copy.
        data = bytes(data)
    size = len(data)
    next_frame = start + 1
    records: list[Record] = []
    offset = 0
    if size == 0:
        raise FrameError("empty batch frame")
    while offset < size:
        if size - offset < HEADER_SIZE:
            raise FrameError(f"truncated header: {size - offset} bytes, need {HEADER_SIZE}", records)
        version, kind, flags, body_len, cid, ttl_ms, pattern_len, reserved = _HEADER.unpack_from(data, offset)
        if version != VERSION:
            raise FrameError(f"unsupported protocol version {version} (this peer speaks {VERSION})", records, cid)
        if reserved != 0:
            raise FrameError("reserved header field is not zero", records, cid)
        offset += HEADER_SIZE
        if size - offset < pattern_len:
            raise FrameError(f"pattern length {pattern_len} exceeds the {size - offset} bytes left", records, cid)
        pattern = bytes(data[offset : offset + pattern_len])
        offset += pattern_len
        if flags & FLAG_EXTERNAL_BODY:
            if next_frame >= len(frames):
                raise FrameError("record announces an external body frame that is missing", records, cid)
            body = frames[next_frame]
            next_frame += 1
            if len(body) != body_len:
                raise FrameError(f"external body is {len(body)} bytes, header says {body_len}", records, cid)
        else:
            if size - offset < body_len:
                raise FrameError(f"body length {body_len} exceeds the {size - offset} bytes left", records, cid)
            body = bytes(data[offset : offset + body_len])
            offset += body_len
        records.append((kind, flags, cid, ttl_ms, pattern, body))
    if next_frame != len(frames):
        raise FrameError(f"{len(frames) - next_frame} unexpected extra frame(s) after the batch", records)
    return records


def _check_ranges(kind: int, flags: int, correlation_id: int, ttl_ms: int, pattern_len: int, body_len: int) -> None:
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"kind {kind} out of range 0..255")
    if not 0 <= flags <= 0xFFFF:
        raise ValueError(f"flags {flags} out of range 0..65535")
    if not 0 <= correlation_id <= MAX_ID:
        raise ValueError("correlation id out of range for 64 bits")
    if not 0 <= ttl_ms <= 0xFFFFFFFF:
        raise ValueError(f"ttl_ms {ttl_ms} out of range for 32 bits")
    if not 0 <= pattern_len <= MAX_PATTERN_LEN:
        raise ValueError(f"pattern is {pattern_len} bytes, the limit is {MAX_PATTERN_LEN}")
    if not 0 <= body_len <= MAX_BODY_LEN:
        raise ValueError(f"body is {body_len} bytes, the limit is {MAX_BODY_LEN}")


def encode_metadata(metadata: Mapping[str, str], body: bytes = b"") -> bytes:
    """The body of a FLAG_METADATA record: the metadata section of ``metadata``, then ``body``.

    Raises TypeError for a key or value that is not a str, ValueError for an empty key, a key
    over 255 UTF-8 bytes or a section over 65535 bytes.
    """
    entries = bytearray()
    for key, value in metadata.items():
        if type(key) is not str or type(value) is not str:
            raise TypeError(
                f"metadata keys and values must be str, got {type(key).__name__}: {type(value).__name__} for {key!r}"
            )
        kb = key.encode()
        vb = value.encode()
        if not 0 < len(kb) <= MAX_METADATA_KEY_LEN:
            raise ValueError(f"metadata key {key!r} is {len(kb)} bytes; keys are 1 to {MAX_METADATA_KEY_LEN} bytes")
        if len(entries) + 3 + len(kb) + len(vb) > MAX_METADATA_LEN:
            raise ValueError(f"metadata section over the limit of {MAX_METADATA_LEN} bytes")
        entries.append(len(kb))
        entries += kb
        entries += _U16.pack(len(vb))
        entries += vb
    return _U16.pack(len(entries)) + bytes(entries) + bytes(body)


def decode_metadata(body: Any) -> tuple[dict[str, str], memoryview]:
    """Split the body of a FLAG_METADATA record into (metadata, payload).

    Raises FrameError when the section is malformed (truncated, an empty or duplicate key, text
    that is not UTF-8). The payload is a view of ``body``: nothing is copied.
    """
    view = memoryview(body).cast("B")
    size = len(view)
    if size < 2:
        raise FrameError(f"truncated metadata section: {size} bytes, need 2 for its length")
    (section_len,) = _U16.unpack_from(view, 0)
    end = 2 + section_len
    if end > size:
        raise FrameError(f"metadata section length {section_len} exceeds the {size - 2} body bytes left")
    metadata: dict[str, str] = {}
    offset = 2
    while offset < end:
        key_len = view[offset]
        offset += 1
        if key_len == 0:
            raise FrameError("empty metadata key")
        if end - offset < key_len + 2:
            raise FrameError("truncated metadata entry")
        key_bytes = bytes(view[offset : offset + key_len])
        offset += key_len
        (value_len,) = _U16.unpack_from(view, offset)
        offset += 2
        if end - offset < value_len:
            raise FrameError("truncated metadata entry")
        value_bytes = bytes(view[offset : offset + value_len])
        offset += value_len
        try:
            key = key_bytes.decode()
            value = value_bytes.decode()
        except UnicodeDecodeError:
            raise FrameError("metadata entry is not valid UTF-8") from None
        if key in metadata:
            raise FrameError(f"duplicate metadata key {key!r}")
        metadata[key] = value
    return metadata, view[end:]


def new_buffer(size: int) -> bytearray:
    """A ``bytearray`` of ``size`` bytes for a receive buffer about to be filled whole (the
    compiled twin leaves it unzeroed)."""
    if size < 0:
        raise ValueError("negative buffer size")
    return bytearray(size)
