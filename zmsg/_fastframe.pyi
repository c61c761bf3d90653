from collections.abc import Sequence
from typing import Any

VERSION: int
HEADER_SIZE: int
FLAG_EXTERNAL_BODY: int
MAX_PATTERN_LEN: int
MAX_BODY_LEN: int
MAX_ID: int

Record = tuple[int, int, int, int, bytes, Any]

def pack_header(kind: int, flags: int, correlation_id: int, ttl_ms: int, pattern_len: int, body_len: int) -> bytes: ...
def unpack_header(data: bytes, offset: int = 0) -> tuple[int, int, int, int, int, int, int]: ...
def append_record(
    buf: bytearray, kind: int, flags: int, correlation_id: int, ttl_ms: int, pattern: bytes, body: bytes
) -> None: ...
def append_external(
    buf: bytearray, kind: int, flags: int, correlation_id: int, ttl_ms: int, pattern: bytes, body_len: int
) -> None: ...
def parse_frames(frames: Sequence[Any], start: int = 0) -> list[Record]: ...
