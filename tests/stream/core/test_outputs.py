"""The output contracts as they go on the wire: recommendations and dead letters."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from stream.core.outputs import RankedItem, encode_dead_letter, encode_recommendation
from stream.errors import InvalidMessage


def test_a_recommendation_rounds_scores_and_names_its_request_only_when_it_answers_one() -> None:
    items = [RankedItem("i", 0.1234567, "trending"), RankedItem("j", 1e-9, "similar")]
    fields = {"model": "m", "event_ts": 5.0, "emitted_ts": 6.0}
    assert json.loads(encode_recommendation("u", items[:1], request_id="r", **fields)) == {
        "user_id": "u",
        "request_id": "r",
        "items": [{"item_id": "i", "score": 0.123457, "reason": "trending"}],
        "model": "m",
        "event_ts": 5.0,
        "profile_events": 0,
        "input_partition": None,
        "input_offset": None,
        "emitted_ts": 6.0,
    }
    top_k = json.loads(
        encode_recommendation(
            "u", items, profile_events=3, input_position=(2, 41), **{**fields, "event_ts": None}
        )
    )
    assert "request_id" not in top_k
    assert (top_k["event_ts"], top_k["profile_events"], top_k["items"][1]["score"]) == (None, 3, 0.0)
    assert (top_k["input_partition"], top_k["input_offset"]) == (2, 41)  # by which a repeat is known


def test_a_dead_letter_keeps_the_original_bytes_as_text_or_base64() -> None:
    binary = json.loads(encode_dead_letter("events", 2, 41, InvalidMessage("undecodable", "x"), b"\xff\x00"))
    assert binary["payload_encoding"] == "base64"
    assert base64.b64decode(binary["payload"]) == b"\xff\x00"
    assert (binary["source_topic"], binary["partition"], binary["offset"]) == ("events", 2, 41)
    assert binary["reason"] == "undecodable" and "undecodable" in binary["error"]
    error = InvalidMessage("invalid_json", "y")
    text = json.loads(encode_dead_letter("items", 0, 1, error, b"{oops"))
    assert text["payload"] == "{oops" and text["payload_encoding"] == "utf-8"
    assert (text["payload_size"], text["payload_truncated"]) == (5, False)
    assert text["payload_sha256"] == hashlib.sha256(b"{oops").hexdigest()
    empty = json.loads(encode_dead_letter("items", 0, 1, error, None))
    assert list(empty) == [
        "source_topic",
        "partition",
        "offset",
        "reason",
        "error",
        "payload",
        "payload_size",
        "payload_sha256",
        "payload_truncated",
    ]
    assert (empty["payload"], empty["payload_size"], empty["payload_sha256"]) == (None, 0, None)


ONE_MEGABYTE = 1_000_000


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user_id": "' + b"u" * ONE_MEGABYTE + b'"}',  # text
        b"\x01" * ONE_MEGABYTE,  # text whose every byte JSON escapes to six
        "é€😀".encode() * (ONE_MEGABYTE // 9),  # multi-byte characters, none cut in two
        bytes(range(256)) * (ONE_MEGABYTE // 256),  # not UTF-8: base64
    ],
    ids=["ascii", "escaped", "multibyte", "binary"],
)
@pytest.mark.parametrize("max_bytes", [16_384, 900_000])
def test_a_dead_letter_of_a_huge_value_fits_its_limit_and_keeps_the_start(raw: bytes, max_bytes: int) -> None:
    error = InvalidMessage("message_too_large", "value is 1000000 bytes")
    encoded = encode_dead_letter("events", 0, 7, error, raw, max_bytes=max_bytes)
    assert max_bytes * 0.75 < len(encoded) <= max_bytes  # cut, but not more than needed
    letter = json.loads(encoded)
    kept = (
        base64.b64decode(letter["payload"])
        if letter["payload_encoding"] == "base64"
        else letter["payload"].encode("utf-8")
    )
    assert letter["payload_truncated"] and raw.startswith(kept) and len(kept) > 0
    assert letter["payload_size"] == len(raw)
    assert letter["payload_sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_dead_letter_that_fits_is_whole_and_a_long_error_is_cut() -> None:
    raw = b"x" * 10_000
    letter = json.loads(
        encode_dead_letter("items", 0, 1, InvalidMessage("invalid_json", "y"), raw, max_bytes=20_000)
    )
    assert letter["payload"] == raw.decode() and not letter["payload_truncated"]
    error = InvalidMessage("processing_failed", "z" * 50_000)
    assert len(json.loads(encode_dead_letter("items", 0, 1, error, b"{}"))["error"]) == 1000
