"""The fuzz generator: seeded, every kind of every input topic, and each payload labelled
with the reason the worker's decoding path gives it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stream.chaos.fuzz import INPUT_TOPICS, FuzzPayload, InputLimits, fuzz_payloads, kinds_of
from stream.config import Settings
from stream.core.bounds import check_bounds, check_key
from stream.core.contracts import decode_event, decode_item, decode_rerank_request
from stream.errors import InvalidMessage

LIMITS = InputLimits.from_settings(Settings())


def decoders(limits: InputLimits) -> dict[str, Callable[[bytes | None], Any]]:
    weights = dict.fromkeys(limits.event_types, 1.0)
    return {
        "events": lambda raw: decode_event(raw, weights),
        "items": lambda raw: decode_item(raw, limits.max_text_chars),
        "rerank-requests": lambda raw: decode_rerank_request(raw, limits.max_candidates),
    }


def reason_given(payload: FuzzPayload, limits: InputLimits) -> str | None:
    """The reason ``context.decode_batch`` gives a message: bounds, decoder, key."""
    try:
        check_bounds(payload.value, limits.max_message_bytes, limits.max_json_depth)
        check_key(payload.key, decoders(limits)[payload.topic](payload.value))
    except InvalidMessage as exc:
        return exc.reason
    return None


def test_the_same_seed_gives_the_same_payloads() -> None:
    assert fuzz_payloads(7, 120, LIMITS) == fuzz_payloads(7, 120, LIMITS)
    assert fuzz_payloads(7, 120, LIMITS) != fuzz_payloads(8, 120, LIMITS)


def test_every_kind_of_every_topic_comes_before_any_repeats() -> None:
    kinds = {(topic, kind) for topic in INPUT_TOPICS for kind in kinds_of(topic)}
    payloads = fuzz_payloads(1, len(kinds), LIMITS)
    assert {(p.topic, p.kind) for p in payloads} == kinds
    assert {p.topic for p in fuzz_payloads(1, 50, LIMITS, topics=["items"])} == {"items"}
    with pytest.raises(ValueError, match="not input topics"):
        fuzz_payloads(1, 1, LIMITS, topics=["recommendations"])


@pytest.mark.parametrize("seed", range(4))
def test_each_payload_gets_the_reason_it_is_labelled_with(seed: int) -> None:
    for payload in fuzz_payloads(seed, 300, LIMITS):
        assert reason_given(payload, LIMITS) == payload.reason, (
            payload.topic,
            payload.kind,
            payload.value[:200],
        )


@pytest.mark.parametrize("max_text_chars", [100, 2_000_000])
def test_the_labels_follow_the_limits(max_text_chars: int) -> None:
    loose = InputLimits(4_000_000, 4, max_text_chars, 3, ("view",))
    payloads = fuzz_payloads(3, 400, loose)
    for payload in payloads:
        assert reason_given(payload, loose) == payload.reason, (payload.topic, payload.kind)
    huge = [p for p in payloads if p.kind == "huge_string"]
    assert huge and all(p.reason != "message_too_large" for p in huge)


def test_the_payloads_cover_the_reasons_of_bad_input() -> None:
    reasons = {p.reason for p in fuzz_payloads(5, 600, LIMITS)}
    assert reasons >= {
        "message_too_large",
        "nesting_too_deep",
        "undecodable",
        "invalid_json",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "invalid_timestamp",
        "unknown_event_type",
        "text_too_long",
        "too_many_candidates",
        "missing_key",
        "key_mismatch",
        None,
    }
