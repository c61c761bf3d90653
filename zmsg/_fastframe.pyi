from collections.abc import Mapping, Sequence
from typing import Any

VERSION: int
HEADER_SIZE: int
FLAG_EXTERNAL_BODY: int
FLAG_METADATA: int
MAX_METADATA_LEN: int
MAX_METADATA_KEY_LEN: int
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
def encode_metadata(metadata: Mapping[str, str], body: bytes = b"") -> bytes: ...
def decode_metadata(body: Any) -> tuple[dict[str, str], memoryview]: ...
def new_buffer(size: int) -> bytearray: ...
