"""Payload and pattern encoding with msgspec: encoders and decoders are built once and reused.

Bodies are MessagePack. Patterns are route names: a str is used as its UTF-8 bytes, a dict is
canonicalised to compact JSON with sorted keys, so ``{"cmd": "sum", "v": 1}`` and
``{"v": 1, "cmd": "sum"}`` name the same route. msgspec's own exceptions stop here: callers get
``PayloadError`` (undecodable or invalid body) or a ``TypeError`` that names the offending type.
"""

from __future__ import annotations

from typing import Any

import msgspec

from zmsg.errors import MessageTooLarge, PayloadError, RpcException

__all__ = [
    "Pattern",
    "PayloadError",
    "encode_pattern",
    "pattern_repr",
    "encode",
    "decode",
    "typed_decoder",
    "error_object",
    "refusal_object",
    "NOT_RUN",
    "too_large",
    "rpc_exception",
    "INTERNAL_ERROR",
]

Pattern = str | dict[str, Any]


_json_sorted = msgspec.json.Encoder(order="sorted")
_pattern_cache: dict[str, bytes] = {}
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()

INTERNAL_ERROR: dict[str, Any] = {"status": 500, "message": "Internal server error"}


def encode_pattern(pattern: Pattern) -> bytes:
    """The route bytes of a pattern (cached for strings, canonical JSON for dicts)."""
    if type(pattern) is str:
        cached = _pattern_cache.get(pattern)
        if cached is None:
            cached = pattern.encode()
            if len(_pattern_cache) < 4096:
                _pattern_cache[pattern] = cached
        return cached
    if isinstance(pattern, dict):
        try:
            return _json_sorted.encode(pattern)
        except TypeError as exc:
            raise TypeError(f"a dict pattern must be JSON-serialisable: {exc}") from None
    if isinstance(pattern, str):
        return pattern.encode()
    raise TypeError(f"a pattern must be a str or a dict, not {type(pattern).__name__}")


def pattern_repr(pattern: bytes) -> str:
    """A human-readable form of route bytes for error messages and logs."""
    return pattern.decode("utf-8", errors="replace")


def encode(value: Any) -> bytes:
    try:
        return _encoder.encode(value)
    except TypeError as exc:
        raise TypeError(f"cannot encode payload: {exc}") from None
    except OverflowError as exc:
        raise TypeError(f"cannot encode payload: {exc}") from None


def decode(body: Any) -> Any:
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"Malformed payload: {exc}") from None


def typed_decoder(tp: Any) -> msgspec.msgpack.Decoder[Any]:
    """A decoder validating against ``tp`` (a msgspec Struct, builtin or typing construct)."""
    return msgspec.msgpack.Decoder(tp)


def decode_with(decoder: msgspec.msgpack.Decoder[Any], body: Any) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise PayloadError(f"Invalid payload: {exc}") from None
    except msgspec.DecodeError as exc:
        raise PayloadError(f"Malformed payload: {exc}") from None


def too_large(route: bytes, body: bytes, limit: int) -> MessageTooLarge:
    """The error for a payload over ``limit`` (callers test the size inline: it is a hot path)."""
    return MessageTooLarge(
        f"message for {pattern_repr(route)!r} is {len(body)} bytes, over max_message_size={limit}"
    )


def error_object(status: int, message: str) -> dict[str, Any]:
    return {"status": status, "message": message}


NOT_RUN = "not_run"
"""Key of an error object whose ``True`` says the service refused the request without running
it, so the client may send it again (docs/protocol.md, "Errors")."""


def refusal_object(status: int, message: str) -> dict[str, Any]:
    """An error object for a request the service did not run (clients re-send it)."""
    return {"status": status, "message": message, NOT_RUN: True}


def rpc_exception(body: Any) -> RpcException:
    """Rebuild the ``RpcException`` a service sent as an error record (shared by every client).

    A body that does not decode, or is neither a str nor a dict, still becomes an RpcException,
    so a caller only ever has one type to catch for a remote error.
    """
    try:
        error = decode(body)
    except PayloadError:
        return RpcException({"status": 502, "message": "undecodable error object from the service"})
    if not isinstance(error, (str, dict)):
        error = {"status": 500, "message": str(error)}
    return RpcException(error)
