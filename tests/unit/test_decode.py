"""Decoders: bytes of a value or key -> what expressions see; DecodeError and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from connector.decode import DECODERS, decode_base64, decode_json, decode_string, decoder_for
from connector.records import DecodeError

GOOD: list[tuple[str, bytes | str, Any]] = [
    ("json", b'{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
    ("json", '{"a": "\u00e9"}', {"a": "\u00e9"}),
    ("json", b'"just a string"', "just a string"),
    ("json", b"42", 42),
    ("string", b"caf\xc3\xa9", "caf\u00e9"),
    ("string", "already text", "already text"),
    ("string", b"", ""),
    ("bytes-base64", b"\x00\xff\x10", "AP8Q"),
    ("bytes-base64", b"", ""),
    ("bytes-base64", "hi", "aGk="),
]


@pytest.mark.parametrize(("fmt", "raw", "expected"), GOOD)
def test_decoders(fmt: str, raw: bytes | str, expected: Any) -> None:
    assert decoder_for(fmt)(raw) == expected


BAD = [
    (decode_json, b"{nope", "invalid_json"),
    (decode_json, b"", "invalid_json"),
    (decode_json, b"NaN", "invalid_json"),
    (decode_json, b'{"a": 1} trailing', "invalid_json"),
    (decode_string, b"\xff\xfe", "invalid_utf8"),
]


@pytest.mark.parametrize(("decode", "raw", "reason"), BAD)
def test_decode_errors(decode: Any, raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(raw)
    assert caught.value.reason == reason
    assert caught.value.stage == "decode"
    assert caught.value.detail


def test_base64_never_fails_and_round_trips() -> None:
    import base64

    raw = bytes(range(256))
    assert base64.b64decode(decode_base64(raw)) == raw


def test_formats_and_extension() -> None:
    assert set(DECODERS) == {"json", "string", "bytes-base64"}
    with pytest.raises(KeyError):
        decoder_for("avro")
    fake_avro = {"avro": decode_string}
    assert decoder_for("avro", fake_avro) is decode_string
    assert decoder_for("json", fake_avro) is decode_json
