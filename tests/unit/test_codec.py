"""Payload and pattern codecs: canonical routes, typed decoding, translated errors."""

from __future__ import annotations

import msgspec
import pytest

from zmsg import codec
from zmsg.codec import PayloadError


def test_dict_patterns_are_canonical_whatever_the_key_order() -> None:
    assert codec.encode_pattern({"cmd": "sum", "v": 1}) == codec.encode_pattern({"v": 1, "cmd": "sum"})
    assert codec.encode_pattern({"cmd": "sum"}) == b'{"cmd":"sum"}'
    assert codec.encode_pattern({"b": {"y": 1, "x": 2}, "a": 0}) == b'{"a":0,"b":{"x":2,"y":1}}'


def test_string_patterns_are_their_utf8_bytes() -> None:
    assert codec.encode_pattern("user_created") == b"user_created"
    assert codec.encode_pattern("ü") == "ü".encode()


@pytest.mark.parametrize("bad", [1, None, ["a"], b"bytes"])
def test_other_pattern_types_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="pattern must be a str or a dict"):
        codec.encode_pattern(bad)  # type: ignore[arg-type]


def test_unencodable_payload_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="cannot encode payload"):
        codec.encode(object())


def test_typed_decoding_names_the_bad_field() -> None:
    class User(msgspec.Struct):
        user_id: str
        age: int

    decoder = codec.typed_decoder(User)
    assert codec.decode_with(decoder, codec.encode({"user_id": "u1", "age": 3})) == User("u1", 3)
    with pytest.raises(PayloadError, match=r"Invalid payload: Expected `int`, got `str` - at `\$.age`"):
        codec.decode_with(decoder, codec.encode({"user_id": "u1", "age": "old"}))
    with pytest.raises(PayloadError, match="Malformed payload"):
        codec.decode_with(decoder, b"\xc1\xc1\xc1")


def test_garbage_is_a_payload_error_not_a_msgspec_one() -> None:
    with pytest.raises(PayloadError):
        codec.decode(b"\xc1")
