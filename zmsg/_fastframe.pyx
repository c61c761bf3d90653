# cython: language_level=3, embedsignature=True, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of ``zmsg._fastframe_py``: record header packing and batch parsing.

The hot path of zmsg is per record: every request, reply and event is appended to a batch and
parsed out of one. This module does that in C with no Python-level struct calls. It imports no
zmq, asyncio or msgspec. The pure-Python twin is the specification; both must agree byte for
byte (tests/unit/test_framing.py runs every framing test on both, plus a differential test).
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

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

DEF C_HEADER_SIZE = 24
DEF C_VERSION = 1
DEF C_FLAG_EXTERNAL_BODY = 1


cdef inline uint16_t _rd16(const uint8_t* p) noexcept nogil:
    return <uint16_t>p[0] | (<uint16_t>p[1] << 8)


cdef inline uint32_t _rd32(const uint8_t* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _rd64(const uint8_t* p) noexcept nogil:
    return <uint64_t>_rd32(p) | (<uint64_t>_rd32(p + 4) << 32)


cdef inline void _wr16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF


cdef inline void _wr32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline void _wr64(uint8_t* p, uint64_t v) noexcept nogil:
    _wr32(p, <uint32_t>(v & 0xFFFFFFFFu))
    _wr32(p + 4, <uint32_t>(v >> 32))


cdef inline void _write_header(uint8_t* p, uint8_t kind, uint16_t flags, uint32_t body_len,
                               uint64_t cid, uint32_t ttl_ms, uint16_t pattern_len) noexcept nogil:
    p[0] = C_VERSION
    p[1] = kind
    _wr16(p + 2, flags)
    _wr32(p + 4, body_len)
    _wr64(p + 8, cid)
    _wr32(p + 16, ttl_ms)
    _wr16(p + 20, pattern_len)
    p[22] = 0
    p[23] = 0


cdef int _check_ranges(object kind, object flags, object correlation_id, object ttl_ms,
                       Py_ssize_t pattern_len, object body_len) except -1:
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
    return 0


def pack_header(kind, flags, correlation_id, ttl_ms, pattern_len, body_len):
    """Pack one record header; raises ValueError for out-of-range fields."""
    _check_ranges(kind, flags, correlation_id, ttl_ms, pattern_len, body_len)
    out = PyBytes_FromStringAndSize(NULL, C_HEADER_SIZE)
    _write_header(<uint8_t*>PyBytes_AS_STRING(out), kind, flags, body_len, correlation_id, ttl_ms, pattern_len)
    return out


def unpack_header(data, Py_ssize_t offset=0):
    """Return (version, kind, flags, body_len, correlation_id, ttl_ms, pattern_len)."""
    cdef const uint8_t[:] view = data
    if view.shape[0] - offset < C_HEADER_SIZE:
        raise FrameError(f"truncated header: {view.shape[0] - offset} bytes, need {C_HEADER_SIZE}")
    cdef const uint8_t* p = &view[offset]
    return (p[0], p[1], _rd16(p + 2), _rd32(p + 4), _rd64(p + 8), _rd32(p + 16), _rd16(p + 20))


cdef inline void _append(bytearray buf, uint8_t kind, uint16_t flags, uint64_t cid, uint32_t ttl_ms,
                         const uint8_t* pattern, Py_ssize_t pattern_len,
                         const uint8_t* body, Py_ssize_t body_len, uint32_t declared_body_len) except *:
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buf)
    PyByteArray_Resize(buf, start + C_HEADER_SIZE + pattern_len + body_len)
    cdef uint8_t* p = <uint8_t*>PyByteArray_AS_STRING(buf) + start
    _write_header(p, kind, flags, declared_body_len, cid, ttl_ms, <uint16_t>pattern_len)
    if pattern_len:
        memcpy(p + C_HEADER_SIZE, pattern, pattern_len)
    if body_len:
        memcpy(p + C_HEADER_SIZE + pattern_len, body, body_len)


def append_record(bytearray buf, int kind, int flags, correlation_id, ttl_ms, bytes pattern, body):
    """Append a complete record (header, pattern, body) to a batch being built."""
    cdef Py_ssize_t plen = PyBytes_GET_SIZE(pattern)
    cdef const uint8_t[:] bview
    cdef const uint8_t* bptr
    cdef Py_ssize_t blen
    if type(body) is bytes:
        bptr = <const uint8_t*>PyBytes_AS_STRING(body)
        blen = PyBytes_GET_SIZE(body)
    else:
        bview = body
        blen = bview.shape[0]
        bptr = &bview[0] if blen else NULL
    if not (0 <= kind <= 0xFF and 0 <= flags <= 0xFFFF and plen <= MAX_PATTERN_LEN and blen <= MAX_BODY_LEN):
        _check_ranges(kind, flags, correlation_id, ttl_ms, plen, blen)
    _append(buf, kind, flags & ~C_FLAG_EXTERNAL_BODY, correlation_id, ttl_ms,
            <const uint8_t*>PyBytes_AS_STRING(pattern), plen, bptr, blen, <uint32_t>blen)


def append_external(bytearray buf, int kind, int flags, correlation_id, ttl_ms, bytes pattern, body_len):
    """Append a record whose body travels as its own frame after the batch."""
    cdef Py_ssize_t plen = PyBytes_GET_SIZE(pattern)
    _check_ranges(kind, flags, correlation_id, ttl_ms, plen, body_len)
    _append(buf, kind, flags | C_FLAG_EXTERNAL_BODY, correlation_id, ttl_ms,
            <const uint8_t*>PyBytes_AS_STRING(pattern), plen, NULL, 0, body_len)


def parse_frames(frames, Py_ssize_t start=0):
    """Parse the batch at ``frames[start]`` and resolve external bodies from later frames.

    Returns ``(kind, flags, correlation_id, ttl_ms, pattern, body)`` tuples. On a fault raises
    FrameError carrying the records parsed before it and the faulty record's id when known.
    """
    cdef Py_ssize_t nframes = len(frames)
    if start >= nframes:
        raise FrameError("message has no batch frame")
    data = frames[start]
    cdef const uint8_t[:] view
    cdef const uint8_t* base
    cdef Py_ssize_t size
    if type(data) is bytes:
        base = <const uint8_t*>PyBytes_AS_STRING(data)
        size = PyBytes_GET_SIZE(data)
    else:
        view = data
        size = view.shape[0]
        base = &view[0] if size else NULL
    if size == 0:
        raise FrameError("empty batch frame")
    cdef list records = []
    cdef Py_ssize_t offset = 0
    cdef Py_ssize_t next_frame = start + 1
    cdef const uint8_t* p
    cdef uint16_t flags, pattern_len
    cdef uint32_t body_len
    cdef uint64_t cid
    while offset < size:
        if size - offset < C_HEADER_SIZE:
            raise FrameError(f"truncated header: {size - offset} bytes, need {C_HEADER_SIZE}", records)
        p = base + offset
        flags = _rd16(p + 2)
        body_len = _rd32(p + 4)
        cid = _rd64(p + 8)
        pattern_len = _rd16(p + 20)
        if p[0] != C_VERSION:
            raise FrameError(f"unsupported protocol version {p[0]} (this peer speaks {C_VERSION})", records, cid)
        if p[22] != 0 or p[23] != 0:
            raise FrameError("reserved header field is not zero", records, cid)
        offset += C_HEADER_SIZE
        if size - offset < pattern_len:
            raise FrameError(f"pattern length {pattern_len} exceeds the {size - offset} bytes left", records, cid)
        pattern = PyBytes_FromStringAndSize(<const char*>(base + offset), pattern_len)
        offset += pattern_len
        if flags & C_FLAG_EXTERNAL_BODY:
            if next_frame >= nframes:
                raise FrameError("record announces an external body frame that is missing", records, cid)
            body = frames[next_frame]
            next_frame += 1
            if len(body) != body_len:
                raise FrameError(f"external body is {len(body)} bytes, header says {body_len}", records, cid)
        else:
            if <uint64_t>(size - offset) < body_len:
                raise FrameError(f"body length {body_len} exceeds the {size - offset} bytes left", records, cid)
            body = PyBytes_FromStringAndSize(<const char*>(base + offset), body_len)
            offset += body_len
        records.append((p[1], flags, cid, _rd32(p + 16), pattern, body))
    if next_frame != nframes:
        raise FrameError(f"{nframes - next_frame} unexpected extra frame(s) after the batch", records)
    return records


def encode_metadata(metadata, body=b""):
    """The body of a FLAG_METADATA record: the metadata section of ``metadata``, then ``body``.

    Raises TypeError for a key or value that is not a str, ValueError for an empty key, a key
    over 255 UTF-8 bytes or a section over 65535 bytes.
    """
    cdef list pairs = []
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t klen, vlen
    for key, value in metadata.items():
        if type(key) is not str or type(value) is not str:
            raise TypeError(
                f"metadata keys and values must be str, got {type(key).__name__}: {type(value).__name__} for {key!r}"
            )
        kb = (<str>key).encode()
        vb = (<str>value).encode()
        klen = PyBytes_GET_SIZE(kb)
        vlen = PyBytes_GET_SIZE(vb)
        if not 0 < klen <= MAX_METADATA_KEY_LEN:
            raise ValueError(f"metadata key {key!r} is {klen} bytes; keys are 1 to {MAX_METADATA_KEY_LEN} bytes")
        if total + 3 + klen + vlen > MAX_METADATA_LEN:
            raise ValueError(f"metadata section over the limit of {MAX_METADATA_LEN} bytes")
        total += 3 + klen + vlen
        pairs.append((kb, vb))
    cdef const uint8_t[:] bview
    cdef const uint8_t* bptr = NULL
    cdef Py_ssize_t blen
    if type(body) is bytes:
        bptr = <const uint8_t*>PyBytes_AS_STRING(body)
        blen = PyBytes_GET_SIZE(body)
    else:
        bview = body
        blen = bview.shape[0]
        if blen:
            bptr = &bview[0]
    out = PyBytes_FromStringAndSize(NULL, 2 + total + blen)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    _wr16(p, <uint16_t>total)
    p += 2
    for kb, vb in pairs:
        klen = PyBytes_GET_SIZE(kb)
        vlen = PyBytes_GET_SIZE(vb)
        p[0] = <uint8_t>klen
        memcpy(p + 1, PyBytes_AS_STRING(kb), klen)
        p += 1 + klen
        _wr16(p, <uint16_t>vlen)
        if vlen:
            memcpy(p + 2, PyBytes_AS_STRING(vb), vlen)
        p += 2 + vlen
    if blen:
        memcpy(p, bptr, blen)
    return out


def decode_metadata(body):
    """Split the body of a FLAG_METADATA record into (metadata, payload).

    Raises FrameError when the section is malformed (truncated, an empty or duplicate key, text
    that is not UTF-8). The payload is a view of ``body``: nothing is copied.
    """
    pyview = memoryview(body).cast("B")
    cdef const uint8_t[:] view = pyview
    cdef Py_ssize_t size = view.shape[0]
    if size < 2:
        raise FrameError(f"truncated metadata section: {size} bytes, need 2 for its length")
    cdef const uint8_t* base = &view[0]
    cdef Py_ssize_t section_len = _rd16(base)
    cdef Py_ssize_t end = 2 + section_len
    if end > size:
        raise FrameError(f"metadata section length {section_len} exceeds the {size - 2} body bytes left")
    cdef dict metadata = {}
    cdef Py_ssize_t offset = 2
    cdef Py_ssize_t key_len, value_len
    while offset < end:
        key_len = base[offset]
        offset += 1
        if key_len == 0:
            raise FrameError("empty metadata key")
        if end - offset < key_len + 2:
            raise FrameError("truncated metadata entry")
        value_len = _rd16(base + offset + key_len)
        if end - offset - key_len - 2 < value_len:
            raise FrameError("truncated metadata entry")
        try:
            key = PyUnicode_DecodeUTF8(<const char*>(base + offset), key_len, NULL)
            value = PyUnicode_DecodeUTF8(<const char*>(base + offset + key_len + 2), value_len, NULL)
        except UnicodeDecodeError:
            raise FrameError("metadata entry is not valid UTF-8") from None
        offset += key_len + 2 + value_len
        if key in metadata:
            raise FrameError(f"duplicate metadata key {key!r}")
        metadata[key] = value
    return metadata, pyview[end:]


def new_buffer(Py_ssize_t size):
    """A ``bytearray`` of ``size`` bytes, not zeroed: a receive buffer about to be filled whole
    (zeroing 1 MiB first costs as much as copying it)."""
    if size < 0:
        raise ValueError("negative buffer size")
    return PyByteArray_FromStringAndSize(NULL, size)
