"""The output contracts as they go on the wire: recommendations and dead letters."""

from __future__ import annotations

import base64
import json

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
        "emitted_ts": 6.0,
    }
    top_k = json.loads(encode_recommendation("u", items, profile_events=3, **{**fields, "event_ts": None}))
    assert "request_id" not in top_k
    assert (top_k["event_ts"], top_k["profile_events"], top_k["items"][1]["score"]) == (None, 3, 0.0)


def test_a_dead_letter_keeps_the_original_bytes_as_text_or_base64() -> None:
    binary = json.loads(encode_dead_letter("events", 2, 41, InvalidMessage("undecodable", "x"), b"\xff\x00"))
    assert binary["payload_encoding"] == "base64"
    assert base64.b64decode(binary["payload"]) == b"\xff\x00"
    assert (binary["source_topic"], binary["partition"], binary["offset"]) == ("events", 2, 41)
    assert binary["reason"] == "undecodable" and "undecodable" in binary["error"]
    error = InvalidMessage("invalid_json", "y")
    text = json.loads(encode_dead_letter("items", 0, 1, error, b"{oops"))
    assert text["payload"] == "{oops" and text["payload_encoding"] == "utf-8"
    empty = json.loads(encode_dead_letter("items", 0, 1, error, None))
    assert list(empty) == ["source_topic", "partition", "offset", "reason", "error", "payload"]
    assert empty["payload"] is None
