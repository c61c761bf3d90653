"""Hypothesis drives a live service process with hostile frames; it must not crash or leak."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import msgspec
import pytest
import zmq
from hypothesis import HealthCheck, given, settings, strategies as st

from zmsg.protocol import KIND_REPLY, KIND_REQUEST, BatchBuilder, parse_frames

HEADER = struct.Struct("<BBHIQIHH")
PATTERNS = [b"echo", b'{"cmd":"sum"}', b"$zmsg.info", b"nope", b""]

header_fields = st.tuples(
    st.sampled_from([0, 1, 1, 1, 2, 255]),  # version, mostly right
    st.integers(0, 255),  # kind, any
    st.integers(0, 0xFFFF),  # flags
    st.one_of(st.integers(0, 64), st.just(2**32 - 1), st.integers(0, 2**32 - 1)),  # declared body length
    st.integers(0, 2**64 - 1),  # correlation id
    st.integers(0, 2**32 - 1),  # ttl
    st.one_of(st.integers(0, 16), st.just(65535)),  # declared pattern length
    st.sampled_from([0, 0, 0, 1]),  # reserved
)
record = st.tuples(header_fields, st.sampled_from(PATTERNS), st.binary(max_size=64))
message = st.lists(
    st.one_of(
        record.map(lambda r: HEADER.pack(*r[0]) + r[1] + r[2]),
        st.binary(max_size=100),
    ),
    min_size=1, max_size=4,
).map(lambda parts: [b"".join(parts)] + ([b"x" * 10] if len(parts[0]) % 3 == 0 else []))


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _ping(sock: zmq.Socket, cid: int) -> object:
    batch = BatchBuilder()
    batch.add(KIND_REQUEST, 0, cid, 0, b"echo", msgspec.msgpack.encode(cid))
    sock.send_multipart(batch.take())
    while True:
        assert sock.poll(10_000), "the service stopped answering"
        for kind, _f, rcid, _t, _p, body in parse_frames(sock.recv_multipart()):
            # Only the reply: hypothesis draws correlation ids from constants it finds in the
            # source (2000 is one), so a hostile record's error can carry the ping's id too.
            if rcid == cid and kind == KIND_REPLY:
                return msgspec.msgpack.decode(body)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_hostile_frames_never_crash_or_leak(math_service) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(math_service.endpoint)
    try:
        assert _ping(sock, 1) == 1
        for _ in range(3):  # warm-up: allocator pools and caches settle
            for frames in [[os.urandom(50)] for _ in range(2000)]:
                sock.send_multipart(frames)
            assert _ping(sock, 2) == 2
        fds, rss = _fd_count(math_service.pid), _rss_kib(math_service.pid)
        sent = 0

        @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(frames=message)
        def hammer(frames: list[bytes]) -> None:
            nonlocal sent
            sock.send_multipart(frames)
            sent += 1
            if sent % 500 == 0:
                assert _ping(sock, 1000 + sent) == 1000 + sent

        hammer()
        assert _ping(sock, 3) == 3
        assert math_service.proc.poll() is None, "the service died"
        assert _fd_count(math_service.pid) <= fds
        grown = _rss_kib(math_service.pid) - rss
        assert grown < 16 * 1024, f"RSS grew by {grown} KiB over {sent} hostile messages"
    finally:
        sock.close(linger=0)
