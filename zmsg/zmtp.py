"""ZMTP 3.1 with the NULL mechanism, sans I/O: the bytes a ZeroMQ peer sends and expects on TCP.

zmsg's asyncio client can speak ZeroMQ's wire protocol itself (``zmsg.transport.zmtp_dealer``)
instead of handing each message to libzmq's I/O thread: at one request in flight that saves two
thread wake-ups per round trip (the main thread waking the I/O thread to send, the I/O thread
waking the main thread on the reply), the largest cost of a call on small machines. This module
is the protocol alone (greeting, commands, frames), so that it is tested without sockets and
shared by whatever drives it. References: ZeroMQ RFC 23 (ZMTP 3.0) and RFC 37 (ZMTP 3.1).

Only what a DEALER talking to a ROUTER needs: the NULL mechanism (CURVE stays with libzmq), the
READY and ERROR commands, PING/PONG heartbeats, and multi-frame messages. Receiving reads into
one reusable buffer; a frame of ``LARGE_FRAME`` bytes or more is read straight into a buffer of
its own (no second copy), which is handed out as it is.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from zmsg._framing import new_buffer

__all__ = [
    "ZmtpError",
    "GREETING_SIZE",
    "LARGE_FRAME",
    "READ_SIZE",
    "LARGE_READ_START",
    "greeting",
    "parse_greeting",
    "command",
    "ready_command",
    "parse_command",
    "parse_properties",
    "ping_command",
    "pong_command",
    "message_chunks",
    "Reader",
]

GREETING_SIZE = 64
_SIGNATURE_HEAD = b"\xff"
_SIGNATURE_TAIL = 0x7F
_MAJOR, _MINOR = 3, 1
_NULL = b"NULL".ljust(20, b"\x00")

_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04
_RESERVED_FLAGS = 0xF8

LARGE_FRAME = 32 * 1024
"""Frames of this size or more are read into a buffer of their own, handed out uncopied (zmsg
sends bodies of 32 KiB or more as frames of their own; smaller ones ride in batch frames)."""
READ_SIZE = 32 * 1024
"""The most one read puts in the shared buffer while messages are small: a whole batch frame of
inline bodies in one read (each read costs a system call and a trip through the protocol's
callbacks; benches/instructions.py, 1 x 16 KiB: 198k instructions per request with 16 KiB
reads, 167k with 32 KiB)."""
LARGE_READ_START = 8 * 1024
"""The first read after a message that had a large frame (libzmq reads 8 KiB): a large frame's
header arrives with at most this much of its body, which is copied, and the rest is read in
place in one more read either way (1 x 64 KiB: 304k instructions per request with 32 KiB first
reads, 240k with 8 KiB)."""
_BUFFER_SIZE = 256 * 1024
_SANE_MESSAGE_SIZE = 1 << 40  # without max_message_size: a size no peer means (a broken stream)
_LONG_SIZE = struct.Struct(">Q")
_TTL = struct.Struct(">H")
_PROPERTY_SIZE = struct.Struct(">I")


class ZmtpError(Exception):
    """The peer broke ZMTP (or refused us): the connection cannot go on.

    ``auth`` is True when the peer refused the handshake with an ERROR command (a ZAP denial:
    ZeroMQ's address allow-list), which waiting will not fix; otherwise the stream was not ZMTP
    as this side speaks it (another protocol, a mechanism other than NULL, a malformed frame) or
    a message was larger than allowed.
    """

    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


def greeting() -> bytes:
    """This side's 64-byte greeting: ZMTP 3.1, NULL mechanism, as a client."""
    return _SIGNATURE_HEAD + b"\x00" * 8 + bytes([_SIGNATURE_TAIL, _MAJOR, _MINOR]) + _NULL + b"\x00" + b"\x00" * 31


def _check_signature(data: bytes | bytearray | memoryview) -> None:
    """The first 10 bytes of a greeting (ZeroMQ's signature): enough to refuse another protocol."""
    if data[0] != 0xFF or data[9] & 0x01 != 0x01:
        raise ZmtpError("the peer does not speak ZMTP (no ZeroMQ signature)")


def parse_greeting(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """The peer's ZMTP version ``(major, minor)``; ZmtpError unless it is ZMTP 3 with NULL."""
    if len(data) < GREETING_SIZE:
        raise ZmtpError(f"greeting is {len(data)} bytes, need {GREETING_SIZE}")
    _check_signature(data)
    major, minor = data[10], data[11]
    if major < 3:
        raise ZmtpError(f"the peer speaks ZMTP {major}.{minor}; 3.0 or later is needed")
    mechanism = bytes(data[12:32]).rstrip(b"\x00")
    if mechanism != b"NULL":
        name = mechanism.decode("ascii", "replace")
        raise ZmtpError(f"the peer wants the {name} security mechanism; this client speaks NULL "
                        "(configure security on both sides, or on neither)", auth=mechanism == b"CURVE")
    return major, minor


def command(name: bytes, data: bytes = b"") -> bytes:
    """A command frame: ``name`` (at most 255 bytes) and its data."""
    body = bytes([len(name)]) + name + data
    return _frame_header(len(body), _COMMAND) + body


def ready_command(socket_type: bytes, properties: dict[bytes, bytes] | None = None) -> bytes:
    """READY with ``Socket-Type`` and any other metadata properties."""
    props = {b"Socket-Type": socket_type, **(properties or {})}
    return command(b"READY", b"".join(bytes([len(k)]) + k + _PROPERTY_SIZE.pack(len(v)) + v
                                      for k, v in props.items()))


def ping_command(ttl: float, context: bytes = b"") -> bytes:
    """PING asking the peer to drop us if it hears nothing for ``ttl`` seconds (0: no limit)."""
    return command(b"PING", _TTL.pack(min(0xFFFF, max(0, int(ttl * 10)))) + context[:16])


def pong_command(context: bytes = b"") -> bytes:
    return command(b"PONG", context[:16])


def parse_command(body: bytes) -> tuple[bytes, bytes]:
    """``(name, data)`` of a command frame's body."""
    if not body:
        raise ZmtpError("empty command frame")
    size = body[0]
    if len(body) < 1 + size:
        raise ZmtpError(f"command name of {size} bytes exceeds its {len(body) - 1}-byte frame")
    return bytes(body[1:1 + size]), bytes(body[1 + size:])


def parse_properties(data: bytes) -> dict[bytes, bytes]:
    """The metadata of a READY command (names are case-insensitive: returned lowercased)."""
    props: dict[bytes, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        size = data[pos]
        pos += 1
        if pos + size + 4 > end:
            raise ZmtpError("truncated property in READY")
        name = data[pos:pos + size].lower()
        pos += size
        (value_size,) = _PROPERTY_SIZE.unpack_from(data, pos)
        pos += 4
        if pos + value_size > end:
            raise ZmtpError(f"property {name!r} announces {value_size} bytes, {end - pos} left")
        props[name] = data[pos:pos + value_size]
        pos += value_size
    return props


def _frame_header(size: int, flags: int = 0) -> bytes:
    if size < 256:
        return bytes((flags, size))
    return bytes((flags | _LONG,)) + _LONG_SIZE.pack(size)


_JOIN_BELOW = 16 * 1024  # smaller frames are copied after their header: one buffer, one iovec


def message_chunks(frames: Sequence[Any]) -> list[Any]:
    """The byte chunks of one message, for ``writelines``: each frame after its header, small
    frames joined to it (a copy is cheaper than another buffer to write), large ones as they are."""
    chunks: list[Any] = []
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        size = frame.nbytes if type(frame) is memoryview else len(frame)
        header = _frame_header(size, _MORE if index < last else 0)
        if size < _JOIN_BELOW:
            chunks.append(header + frame)
        else:
            chunks.append(header)
            chunks.append(frame)
    return chunks


class Reader:
    """Turns the received byte stream into the greeting, commands and messages, in order.

    The transport asks ``buffer()`` where to put the next bytes and reports ``received(n)``,
    which returns what became complete: ``("message", frames)`` and ``("command", name, data)``
    items (the greeting is checked on the way and never returned). Frames under
    ``LARGE_FRAME`` come out as ``bytes``; larger ones as the ``bytearray`` they were read into.
    ``max_message_size`` (bytes, <= 0: none) bounds a whole message, like ZMQ_MAXMSGSIZE;
    going over it breaks the stream before the body is read, as anything malformed does
    (``failure``).
    """

    __slots__ = ("max_message_size", "failure", "_buf", "_view", "_start", "_end", "_greeted", "_frames",
                 "_message_size", "_large", "_large_filled", "_large_more", "_read_size", "_had_large")

    def __init__(self, max_message_size: int = -1) -> None:
        self.max_message_size = max_message_size
        self.failure: ZmtpError | None = None  # why the stream is broken (nothing is read after)
        self._buf = bytearray(_BUFFER_SIZE)
        self._view = memoryview(self._buf)  # the buffer is never resized: one view, sliced
        self._start = 0  # first byte not parsed yet
        self._end = 0  # end of the bytes received
        self._greeted = False
        self._frames: list[Any] = []  # frames of the message being received
        self._message_size = 0
        self._large: bytearray | None = None  # a large frame's own buffer, while it fills
        self._large_filled = 0
        self._large_more = False
        self._read_size = READ_SIZE  # LARGE_READ_START while messages carry large frames
        self._had_large = False  # the message being received has a large frame

    def buffer(self) -> memoryview:
        """Where the transport should write the bytes it receives next (never empty)."""
        large = self._large
        if large is not None:
            return memoryview(large)[self._large_filled:]
        if _BUFFER_SIZE - self._end < LARGE_FRAME:
            # Unparsed bytes are less than one small frame: move them to the front, so that a
            # read always has room for a whole small frame.
            remaining = self._end - self._start
            self._view[:remaining] = self._view[self._start:self._end]
            self._start, self._end = 0, remaining
        return self._view[self._end:self._end + self._read_size]

    def received(self, nbytes: int) -> list[tuple[Any, ...]]:
        """``nbytes`` were written where ``buffer()`` said: what they completed. When they
        broke the stream, ``failure`` says why, and what came before the fault is returned."""
        out: list[tuple[Any, ...]] = []
        if self.failure is not None:
            return out
        large = self._large
        if large is not None:
            self._large_filled += nbytes
            if self._large_filled == len(large):
                self._large = None
                self._frame_done(large, self._large_more, out)
            return out
        self._end += nbytes
        try:
            self._parse(out)
        except ZmtpError as exc:
            self.failure = exc
        return out

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        """Everything ``data`` completes (for tests and for transports that hand out bytes);
        raises the ZmtpError when it broke the stream."""
        out: list[tuple[Any, ...]] = []
        view = memoryview(data)
        while view:
            target = self.buffer()
            n = min(len(target), len(view))
            target[:n] = view[:n]
            view = view[n:]
            out += self.received(n)
            if self.failure is not None:
                raise self.failure
        return out

    def _parse(self, out: list[tuple[Any, ...]]) -> None:
        buf, view, pos, end = self._buf, self._view, self._start, self._end
        if not self._greeted:
            if end - pos < GREETING_SIZE:
                if end - pos >= 10:
                    _check_signature(view[pos:pos + 10])  # another protocol: say so now, not never
                return
            parse_greeting(buf[pos:pos + GREETING_SIZE])
            pos += GREETING_SIZE
            self._greeted = True
        while end - pos >= 2:
            flags = buf[pos]
            if flags & _LONG:
                if end - pos < 9:
                    break
                (size,) = _LONG_SIZE.unpack_from(buf, pos + 1)
                body_at = pos + 9
            else:
                size = buf[pos + 1]
                body_at = pos + 2
            if flags & _RESERVED_FLAGS:
                raise ZmtpError(f"frame flags {flags:#04x} use reserved bits")
            if flags & _COMMAND:
                # A command may come between two frames of a message: libzmq's heartbeat puts its
                # PING wherever its timer fires. It is handled, and the message goes on.
                if flags & _MORE:
                    raise ZmtpError("a command frame has the MORE flag")
                if size >= LARGE_FRAME:
                    raise ZmtpError(f"command frame of {size} bytes")
            else:
                total = self._message_size + size
                limit = self.max_message_size if self.max_message_size > 0 else _SANE_MESSAGE_SIZE
                if total > limit:
                    raise ZmtpError(f"message of more than {limit} bytes (max_message_size)")
                self._message_size = total
                if size >= LARGE_FRAME:
                    # Its own buffer, filled by the transport directly; what already came is copied.
                    large = new_buffer(size)
                    self._had_large = True
                    have = min(size, end - body_at)
                    large[:have] = view[body_at:body_at + have]
                    pos = body_at + have
                    if have < size:
                        self._large, self._large_filled, self._large_more = large, have, bool(flags & _MORE)
                        break
                    self._frame_done(large, bool(flags & _MORE), out)
                    continue
            if end - body_at < size:
                break
            body = bytes(view[body_at:body_at + size])  # one copy (a bytearray slice would be two)
            pos = body_at + size
            if flags & _COMMAND:
                name, data = parse_command(body)
                out.append(("command", name, data))
            else:
                self._frame_done(body, bool(flags & _MORE), out)
        if pos == end:
            pos = end = 0  # all parsed: start over at the front, no copy needed
        self._start, self._end = pos, end

    def _frame_done(self, frame: Any, more: bool, out: list[tuple[Any, ...]]) -> None:
        self._frames.append(frame)
        if not more:
            frames, self._frames = self._frames, []
            self._message_size = 0
            # Expect the next message to be like this one: large frames -> a short first read.
            self._read_size = LARGE_READ_START if self._had_large else READ_SIZE
            self._had_large = False
            out.append(("message", frames))
