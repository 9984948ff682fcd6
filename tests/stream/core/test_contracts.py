"""Schema validation: good messages decode, every kind of bad one names its reason."""

from __future__ import annotations

import json

import pytest

from stream.config import DEFAULT_EVENT_WEIGHTS
from stream.core.bounds import check_bounds, check_key, json_depth
from stream.core.contracts import (
    MAX_TS,
    InteractionEvent,
    ItemDelete,
    ItemUpsert,
    RerankRequest,
    decode_event,
    decode_item,
    decode_rerank_request,
)
from stream.errors import InvalidMessage


def raw(obj: object) -> bytes:
    return json.dumps(obj).encode()


def reason_of(fn, *args) -> str:
    with pytest.raises(InvalidMessage) as info:
        fn(*args)
    return info.value.reason


def test_event_decodes_and_normalises_ids() -> None:
    ev = decode_event(raw({"user_id": 7, "item_id": "m1", "type": "click", "ts": 10}), DEFAULT_EVENT_WEIGHTS)
    assert (ev.user_id, ev.item_id, ev.type, ev.ts, ev.weight) == ("7", "m1", "click", 10.0, 1.0)
    ev = decode_event(
        raw({"user_id": "u", "item_id": 3, "type": "rate", "ts": 1.5, "weight": 0.8}), DEFAULT_EVENT_WEIGHTS
    )
    assert ev.weight == 0.8


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe\x00", "undecodable"),
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (None, "invalid_json"),
        (raw([1, 2]), "wrong_type"),
        (raw({"item_id": "i", "type": "view", "ts": 1}), "missing_field"),
        (raw({"user_id": "u", "type": "view", "ts": 1}), "missing_field"),
        (raw({"user_id": "u", "item_id": "i", "ts": 1}), "missing_field"),
        (raw({"user_id": "u", "item_id": "i", "type": "view"}), "missing_field"),
        (raw({"user_id": 1.5, "item_id": "i", "type": "view", "ts": 1}), "wrong_type"),
        (raw({"user_id": True, "item_id": "i", "type": "view", "ts": 1}), "wrong_type"),
        (raw({"user_id": "u", "item_id": "i", "type": "view", "ts": "yesterday"}), "wrong_type"),
        (raw({"user_id": "u", "item_id": "i", "type": 3, "ts": 1}), "wrong_type"),
        (raw({"user_id": "u", "item_id": "i", "type": "view", "ts": 1, "weight": "x"}), "wrong_type"),
        (raw({"user_id": "u", "item_id": "i", "type": "teleport", "ts": 1}), "unknown_event_type"),
        (raw({"user_id": "u", "item_id": "i", "type": "view", "ts": -5}), "invalid_timestamp"),
        (raw({"user_id": "u", "item_id": "i", "type": "view", "ts": 1, "weight": -1}), "invalid_value"),
        (raw({"user_id": "", "item_id": "i", "type": "view", "ts": 1}), "invalid_value"),
        (b'{"user_id": "u", "item_id": "i", "type": "view", "ts": NaN}', "invalid_timestamp"),
    ],
)
def test_bad_events_name_their_reason(payload: bytes | None, reason: str) -> None:
    assert reason_of(decode_event, payload, DEFAULT_EVENT_WEIGHTS) == reason


def test_item_upsert_and_delete() -> None:
    item = decode_item(
        raw({"item_id": 1, "title": "Alien (1979)", "category": "Sci-Fi", "text": "space", "ts": -31536000}),
        4000,
    )
    assert isinstance(item, ItemUpsert)
    assert item.ts == -31536000.0  # born before 1970 is fine for items
    assert item.encoder_text() == "Alien (1979). Category: Sci-Fi. space"
    assert decode_item(raw({"item_id": "x", "deleted": True}), 4000) == ItemDelete("x")


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"item_id": "x"}, "missing_field"),
        ({"item_id": "x", "title": "   "}, "invalid_value"),
        ({"item_id": "x", "title": 5}, "wrong_type"),
        ({"item_id": "x", "title": "t", "deleted": "yes"}, "wrong_type"),
        ({"item_id": "x", "title": "t" * 5000}, "text_too_long"),
        ({"item_id": "x", "title": "t", "text": "w" * 4000}, "text_too_long"),
    ],
)
def test_bad_items(obj: dict, reason: str) -> None:
    assert reason_of(decode_item, raw(obj), 4000) == reason


def test_rerank_request() -> None:
    req = decode_rerank_request(raw({"request_id": "r1", "user_id": 5, "candidates": [1, "b"], "k": 1}), 10)
    assert req.candidates == ("1", "b") and req.k == 1 and req.ts is None


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"user_id": "u", "candidates": []}, "missing_field"),
        ({"request_id": "r", "user_id": "u", "candidates": "a,b"}, "wrong_type"),
        ({"request_id": "r", "user_id": "u", "candidates": [[1]]}, "wrong_type"),
        ({"request_id": "r", "user_id": "u", "candidates": list(range(11))}, "too_many_candidates"),
        ({"request_id": "r", "user_id": "u", "candidates": ["a"], "k": 0}, "invalid_value"),
        ({"request_id": "r", "user_id": "u", "candidates": ["a"], "k": "3"}, "wrong_type"),
    ],
)
def test_bad_rerank_requests(obj: dict, reason: str) -> None:
    assert reason_of(decode_rerank_request, raw(obj), 10) == reason


def test_unknown_reason_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown dead-letter reason"):
        InvalidMessage("bad", "x")


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        # null in a required field is no value, as a missing one
        (b'{"user_id": null, "item_id": "i", "type": "view", "ts": 1}', "missing_field", "$.user_id"),
        (b'{"user_id": "u", "item_id": "i", "type": null, "ts": 1}', "missing_field", "$.type"),
        # Python's json reads NaN and Infinity, which are not JSON numbers; neither is finite
        (b'{"user_id": "u", "item_id": "i", "type": "view", "ts": Infinity}', "invalid_timestamp", "$.ts"),
        (
            b'{"user_id": "u", "item_id": "i", "type": "view", "ts": 1, "weight": -Infinity}',
            "invalid_value",
            "",
        ),
        (b'{"user_id": "u", "item_id": "i", "type": "view", "ts": 1e999}', "invalid_timestamp", "$.ts"),
        (b'{"user_id": NaN, "item_id": "i", "type": "view", "ts": 1}', "wrong_type", "$.user_id"),
        (
            b'{"user_id": "u", "item_id": "' + b"x" * 257 + b'", "type": "view", "ts": 1}',
            "invalid_value",
            "256",
        ),
        (
            b'{"user_id": ' + b"9" * 257 + b', "item_id": "i", "type": "view", "ts": 1}',
            "invalid_value",
            "256",
        ),
        (b'{"user_id": "u", "item_id": "i", "type": "view", "ts": 1} {}', "invalid_json", "trailing"),
        (b'{"user_id": "\\ud800", "item_id": "i", "type": "view", "ts": 1}', "invalid_json", "surrogate"),
        (b'{"user_id": "u\xff", "item_id": "i", "type": "view", "ts": 1}', "undecodable", "not UTF-8"),
    ],
)
def test_typed_decoding_names_the_reason_and_the_field(payload: bytes, reason: str, detail: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_event(payload, DEFAULT_EVENT_WEIGHTS)
    assert info.value.reason == reason and detail in info.value.detail


def test_unknown_fields_are_ignored_and_null_optional_fields_are_absent() -> None:
    ev = decode_event(
        raw({"user_id": "u", "item_id": "i", "type": "view", "ts": 1, "weight": None, "extra": [1, {}]}),
        DEFAULT_EVENT_WEIGHTS,
    )
    assert ev.weight == 1.0
    item = decode_item(raw({"item_id": 5, "title": "t", "text": None, "category": None, "ts": None}), 4000)
    assert item == ItemUpsert("5", "t", "", "", None)
    req = decode_rerank_request(
        raw({"request_id": 1, "user_id": 2, "candidates": [], "k": None, "ts": None}), 10
    )
    assert (req.request_id, req.user_id, req.candidates, req.k, req.ts) == ("1", "2", (), None, None)


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"item_id": "x", "title": None}, "missing_field"),
        ({"item_id": None, "deleted": True}, "missing_field"),
        ({"item_id": "x", "deleted": None}, "wrong_type"),  # optional, but not nullable
        ({"item_id": "x", "title": "t", "ts": "1999"}, "wrong_type"),
        ({"item_id": "", "deleted": True}, "invalid_value"),
    ],
)
def test_bad_items_typed(obj: dict, reason: str) -> None:
    assert reason_of(decode_item, raw(obj), 4000) == reason


def test_a_deletion_needs_no_title() -> None:
    assert decode_item(raw({"item_id": 3, "deleted": True, "title": None}), 4000) == ItemDelete("3")


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"request_id": "r", "user_id": "u", "candidates": ["a", None]}, "missing_field"),
        ({"request_id": "r", "user_id": "u", "candidates": None}, "missing_field"),
        ({"request_id": "r", "user_id": "u", "candidates": ["a", ""]}, "invalid_value"),
        ({"request_id": "r", "user_id": "u", "candidates": ["a"], "k": True}, "wrong_type"),
        ({"request_id": "r", "user_id": "u", "candidates": ["a"], "k": 2.0}, "wrong_type"),
        ({"request_id": "r", "user_id": "u", "candidates": ["a"], "ts": -1}, "invalid_timestamp"),
    ],
)
def test_bad_rerank_requests_typed(obj: dict, reason: str) -> None:
    assert reason_of(decode_rerank_request, raw(obj), 10) == reason


# --- time ranges ---------------------------------------------------------------------------


@pytest.mark.parametrize("ts", [1e300, MAX_TS + 1, 1.7e12, -1e-9])
def test_event_and_request_times_out_of_range_are_invalid_timestamps(ts: float) -> None:
    event = raw({"user_id": "u", "item_id": "i", "type": "view", "ts": ts})
    assert reason_of(decode_event, event, DEFAULT_EVENT_WEIGHTS) == "invalid_timestamp"
    request = raw({"request_id": "r", "user_id": "u", "candidates": ["a"], "ts": ts})
    assert reason_of(decode_rerank_request, request, 10) == "invalid_timestamp"


def test_times_from_historic_replays_to_live_data_pass() -> None:
    for ts in (0.0, 828_000_000.0, 1_700_000_000.5, MAX_TS):  # 1970, MovieLens' first year, now, 2100
        assert (
            decode_event(raw({"user_id": "u", "item_id": "i", "type": "view", "ts": ts}), {"view": 1}).ts
            == ts
        )
    film_of_1902 = decode_item(raw({"item_id": "m", "title": "A Trip to the Moon", "ts": -2145916800}), 4000)
    assert isinstance(film_of_1902, ItemUpsert) and film_of_1902.ts == -2145916800


@pytest.mark.parametrize("ts", ["1e300", "-1e300", "NaN", "1e999"])
def test_item_times_out_of_range_are_invalid_timestamps(ts: str) -> None:
    message = b'{"item_id": "m", "title": "t", "ts": ' + ts.encode() + b"}"
    assert reason_of(decode_item, message, 4000) == "invalid_timestamp"


# --- size, depth and keys --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"{}", 1),
        (b'{"a": [{"b": [1]}]}', 4),
        (b'{"a": "[[[[{{{{", "b": [1]}', 2),  # brackets in strings are text
        (b'{"a": "\\"[[[[", "b": [1]}', 2),  # an escaped quote does not end the string
        (b'{"a": "\\\\", "b": [[1]]}', 3),  # an escaped backslash does not escape the quote
        (b'{"a": "[[[[', 1),  # an unterminated string's content is not counted
        (b"[" * 200_000 + b"]" * 200_000, 200_000),
    ],
)
def test_json_depth_counts_nesting_outside_strings(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * 1001, "message_too_large"),
        (b'{"user_id": "u", "extra": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nesting_too_deep"),
        (b'{"user_id": "u", "extra": ' + b'{"a": ' * 9 + b"1" + b"}" * 9 + b"}", "nesting_too_deep"),
    ],
)
def test_bounds_reject_large_and_deep_values_before_parsing(payload: bytes, reason: str) -> None:
    assert reason_of(check_bounds, payload, 1000 if reason == "message_too_large" else 10**6, 8) == reason


def test_bounds_let_valid_and_bracket_heavy_strings_through() -> None:
    check_bounds(None, 10, 2)
    check_bounds(raw({"user_id": "u", "item_id": "i", "type": "view", "ts": 1}), 1000, 2)
    check_bounds(raw({"request_id": "r", "user_id": "u", "candidates": ["[[[[[[", "{{{{{{"]}), 1000, 2)
    check_bounds(raw({"x": [[[[[[[[1]]]]]]]]}), 1000, 9)


def test_deep_nesting_without_the_bounds_is_still_a_named_reason() -> None:
    deep = b'{"user_id": "u", "item_id": "i", "type": "view", "ts": 1, "x": ' + b"[" * 200_000
    assert reason_of(decode_event, deep, DEFAULT_EVENT_WEIGHTS) == "nesting_too_deep"
    nested_extra = b'{"item_id": "m", "title": "t", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    assert reason_of(decode_item, nested_extra, 10) == "nesting_too_deep"  # msgspec recursed


@pytest.mark.parametrize(
    ("key", "record", "reason"),
    [
        (None, InteractionEvent("u1", "i", "view", 1.0, 1.0), "missing_key"),
        (b"", InteractionEvent("u1", "i", "view", 1.0, 1.0), "missing_key"),
        (b"u2", InteractionEvent("u1", "i", "view", 1.0, 1.0), "key_mismatch"),
        (b"i", InteractionEvent("u1", "i", "view", 1.0, 1.0), "key_mismatch"),
        (b"\xff", InteractionEvent("u1", "i", "view", 1.0, 1.0), "key_mismatch"),
        (b"u1", ItemDelete("m1"), "key_mismatch"),
        (b"u1", RerankRequest("r", "u2", (), None, None), "key_mismatch"),
    ],
)
def test_a_key_must_be_the_id_that_partitions_the_topic(
    key: bytes | None, record: object, reason: str
) -> None:
    assert reason_of(check_key, key, record) == reason


def test_matching_keys_pass_and_integer_ids_match_their_decimal_keys() -> None:
    check_key(b"7", decode_event(raw({"user_id": 7, "item_id": "m", "type": "view", "ts": 1}), {"view": 1}))
    check_key(b"m1", decode_item(raw({"item_id": "m1", "deleted": True}), 10))
    check_key(
        "ü".encode(), decode_rerank_request(raw({"request_id": 1, "user_id": "ü", "candidates": []}), 10)
    )


def test_details_quote_only_an_excerpt_of_a_huge_value() -> None:
    with pytest.raises(InvalidMessage) as info:
        check_key(b"k" * 100_000, InteractionEvent("u" * 256, "i", "view", 1.0, 1.0))
    assert len(info.value.detail) < 300
    huge_type = raw({"user_id": "u", "item_id": "i", "type": "t" * 100_000, "ts": 1})
    with pytest.raises(InvalidMessage) as info:
        decode_event(huge_type, DEFAULT_EVENT_WEIGHTS)
    assert info.value.reason == "unknown_event_type" and len(info.value.detail) < 300


@pytest.mark.parametrize(
    "odd", ["a\x00b", "\x00statistics-intent:0", "tab\there", "new\nline", "del\x7f", "c1\x85"]
)
def test_ids_with_control_characters_are_invalid(odd: str) -> None:
    event = raw({"user_id": odd, "item_id": "i", "type": "view", "ts": 1})
    assert reason_of(decode_event, event, DEFAULT_EVENT_WEIGHTS) == "invalid_value"
    assert reason_of(decode_item, raw({"item_id": odd, "deleted": True}), 10) == "invalid_value"
    request = raw({"request_id": "r", "user_id": "u", "candidates": ["a", odd]})
    assert reason_of(decode_rerank_request, request, 10) == "invalid_value"


@pytest.mark.parametrize(
    "odd", ["\u202eright-to-left", "\ufeffbom", "zero\u200bwidth", "e\u0301", "😀", "\u2028", "中文"]
)
def test_odd_but_printable_or_format_characters_make_valid_ids(odd: str) -> None:
    event = decode_event(
        raw({"user_id": odd, "item_id": odd, "type": "view", "ts": 1}), DEFAULT_EVENT_WEIGHTS
    )
    assert event.user_id == event.item_id == odd
