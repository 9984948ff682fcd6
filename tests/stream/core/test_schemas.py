"""The JSON Schemas of the message contracts: checked in as generated, and agreeing with
the decoders and encoders on sample messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from stream.config import DEFAULT_EVENT_WEIGHTS
from stream.core.contracts import decode_event, decode_item, decode_rerank_request
from stream.core.outputs import RankedItem, encode_dead_letter, encode_recommendation
from stream.core.schemas import json_schemas, schema_files
from stream.errors import InvalidMessage
from stream.tools.cli import main

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def validator(topic: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{topic}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_checked_in_schemas_are_what_the_contracts_generate() -> None:
    expected = schema_files()
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(expected)
    for name, text in expected.items():
        assert (SCHEMAS / name).read_text(encoding="utf-8") == text, (
            f"schemas/{name} is stale: run `streamrank schemas` and commit the result"
        )


def test_the_schemas_command_writes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--out", str(tmp_path / "out")]) == 0
    written = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir()}
    assert written == schema_files()
    assert len(capsys.readouterr().out.splitlines()) == len(json_schemas())


VALID: dict[str, list[dict[str, Any]]] = {
    "events": [
        {"user_id": 7, "item_id": "m1", "type": "click", "ts": 10},
        {"user_id": "u", "item_id": 3, "type": "rate", "ts": 1.5, "weight": 0.8, "extra": "ignored"},
        {"user_id": "u", "item_id": "i", "type": "view", "ts": 0, "weight": None},
    ],
    "items": [
        {"item_id": 1, "title": "Alien (1979)", "category": "Sci-Fi", "text": "space", "ts": -31536000},
        {"item_id": "x", "title": "t", "text": None, "category": None, "ts": None},
        {"item_id": "x", "deleted": True},
        {"item_id": "x", "deleted": True, "title": None},
    ],
    "rerank-requests": [
        {"request_id": "r1", "user_id": 5, "candidates": [1, "b"], "k": 1},
        {"request_id": 9, "user_id": "u", "candidates": [], "k": None, "ts": 3.5},
    ],
}
INVALID: dict[str, list[dict[str, Any] | list[int]]] = {
    "events": [
        [1, 2],
        {"item_id": "i", "type": "view", "ts": 1},
        {"user_id": None, "item_id": "i", "type": "view", "ts": 1},
        {"user_id": True, "item_id": "i", "type": "view", "ts": 1},
        {"user_id": 1.5, "item_id": "i", "type": "view", "ts": 1},
        {"user_id": "", "item_id": "i", "type": "view", "ts": 1},
        {"user_id": "u" * 257, "item_id": "i", "type": "view", "ts": 1},
        {"user_id": "u", "item_id": "i", "type": "view", "ts": -5},
        {"user_id": "u", "item_id": "i", "type": "view", "ts": "yesterday"},
        {"user_id": "u", "item_id": "i", "type": "view", "ts": 1, "weight": -1},
        {"user_id": "u", "item_id": "i", "type": "view", "ts": 1e300},
        {"user_id": "u", "item_id": "i", "type": "view", "ts": 1_700_000_000_000},  # milliseconds
        {"user_id": "\x00statistics-intent:0", "item_id": "i", "type": "view", "ts": 1},
    ],
    "items": [
        {"item_id": "x"},
        {"item_id": "x", "title": None},
        {"item_id": "x", "title": "   "},
        {"item_id": "x", "title": 5},
        {"item_id": "x", "title": "t", "deleted": "yes"},
        {"item_id": "x", "deleted": False},
        {"deleted": True},
        {"item_id": "x", "title": "t", "ts": 1e300},
        {"item_id": "x", "title": "t", "ts": -1e300},
    ],
    "rerank-requests": [
        {"user_id": "u", "candidates": []},
        {"request_id": "r", "user_id": "u", "candidates": "a,b"},
        {"request_id": "r", "user_id": "u", "candidates": [[1]]},
        {"request_id": "r", "user_id": "u", "candidates": [None]},
        {"request_id": "r", "user_id": "u", "candidates": ["a"], "k": 0},
        {"request_id": "r", "user_id": "u", "candidates": ["a"], "k": "3"},
        {"request_id": "r", "user_id": "u", "candidates": ["a"], "k": True},
        {"request_id": "r", "user_id": "u", "candidates": ["a"], "ts": 1e300},
    ],
}
DECODERS = {
    "events": lambda raw: decode_event(raw, DEFAULT_EVENT_WEIGHTS),
    "items": lambda raw: decode_item(raw, 4000),
    "rerank-requests": lambda raw: decode_rerank_request(raw, 1000),
}


@pytest.mark.parametrize(("topic", "message"), [(t, m) for t, ms in VALID.items() for m in ms])
def test_valid_input_messages_pass_the_schema_and_the_decoder(topic: str, message: dict[str, Any]) -> None:
    validator(topic).validate(message)
    DECODERS[topic](json.dumps(message).encode())


@pytest.mark.parametrize(("topic", "message"), [(t, m) for t, ms in INVALID.items() for m in ms])
def test_invalid_input_messages_fail_the_schema_and_the_decoder(topic: str, message: Any) -> None:
    assert not validator(topic).is_valid(message)
    with pytest.raises(InvalidMessage):
        DECODERS[topic](json.dumps(message).encode())


def test_encoded_recommendations_pass_their_schema() -> None:
    check = validator("recommendations")
    items = [RankedItem("i", 0.5, "similar"), RankedItem("j", 0.25, "trending")]
    for request_id in (None, "r1"):
        for event_ts in (None, 12.0):
            encoded = encode_recommendation(
                "u",
                items,
                model="m",
                event_ts=event_ts,
                emitted_ts=13.0,
                request_id=request_id,
                profile_events=2,
            )
            check.validate(json.loads(encoded))
    assert not check.is_valid({"user_id": "u", "items": [], "model": "m", "emitted_ts": 1.0})
    bad_item = {"item_id": "i", "score": "high", "reason": "similar"}
    wrong = {"user_id": "u", "items": [bad_item], "model": "m", "event_ts": None, "profile_events": 0}
    assert not check.is_valid({**wrong, "emitted_ts": 1.0})


def test_encoded_dead_letters_pass_their_schema() -> None:
    check = validator("dead-letters")
    for raw in (b"{oops", b"\xff\x00", None, b"x" * 100_000):
        encoded = encode_dead_letter(
            "events", 2, 41, InvalidMessage("invalid_json", "x"), raw, max_bytes=20_000
        )
        check.validate(json.loads(encoded))
    letter = json.loads(encode_dead_letter("events", 2, 41, InvalidMessage("undecodable", "x"), b"\xff"))
    assert not check.is_valid({**letter, "reason": "made_up"})
    assert not check.is_valid({**letter, "payload_encoding": "latin-1"})
