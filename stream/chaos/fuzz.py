"""Fuzzed input: labelled bad messages, and oddly valid ones, for each input topic.

:func:`fuzz_payloads` is pure and seeded: the same seed and limits give the same payloads.
Each :class:`FuzzPayload` names the input topic it is for (``events``, ``items``,
``rerank-requests``), its key and value as a producer sends them, its kind, and the
dead-letter reason a worker must give it (``errors.REASONS``), or None for a payload that
is valid however odd (a right-to-left mark or an emoji in an id) and must be processed.

The reasons are stated from the contracts (``core.contracts``) and the worker's limits
(:class:`InputLimits`), not computed by the decoders they check.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from stream.chaos.fuzz_material import InputLimits, Kind, Made, dump, key_field, keyed, valid_message
from stream.core.contracts import MAX_TS

INPUT_TOPICS = ("events", "items", "rerank-requests")
# A "1 MB string": as large as the producers' and brokers' default limits let through.
_HUGE_VALUE_BYTES = 1_000_000
# Ids with control characters: invalid (a NUL starts the pipeline's own table keys).
_CONTROL_IDS = ("nul\x00inside", "\x00statistics-intent:0", "tab\tand\nnewline", "del\x7f", "c1\x85")
# Odd but valid ids: invisible and direction marks, combining marks, astral characters, a
# line separator, a noncharacter.
_ODD_IDS = (
    "\u202eright-to-left",
    "\ufeffbom-first",
    "zero\u200bwidth",
    "e\u0301\u0301\u0301combining",
    "😀🚀",
    "line\u2028separator",
    "\uffff",
    "中文标识",
)


@dataclass(frozen=True, slots=True)
class FuzzPayload:
    """One fuzzed message: where it goes, what it is, and what the worker must make of it."""

    topic: str
    key: bytes | None
    value: bytes | None
    kind: str
    reason: str | None


def fuzz_payloads(
    seed: int, count: int, limits: InputLimits, topics: Sequence[str] = INPUT_TOPICS
) -> list[FuzzPayload]:
    """``count`` fuzzed payloads for ``topics``, every kind of every topic in turn (in a
    shuffled order), so that ``count`` at least the number of kinds covers them all.

    Args:
        seed: Seeds the only random source: the same seed gives the same payloads.
        count: How many payloads.
        limits: The limits of the worker they are for (:meth:`InputLimits.from_settings`).
        topics: Input topics among :data:`INPUT_TOPICS`.
    """
    unknown = set(topics) - set(INPUT_TOPICS)
    if unknown:
        raise ValueError(f"not input topics: {sorted(unknown)}; choose among {INPUT_TOPICS}")
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    kinds = [(topic, name, make) for topic in topics for name, make in kinds_of(topic).items()]
    payloads: list[FuzzPayload] = []
    while len(payloads) < count:
        rng.shuffle(kinds)
        for topic, name, make in kinds[: count - len(payloads)]:
            key, value, reason = make(rng, limits, topic)
            payloads.append(FuzzPayload(topic, key, value, name, reason))
    return payloads


def kinds_of(topic: str) -> dict[str, Kind]:
    """The kinds of fuzzed payload for an input topic, by name."""
    return {**_COMMON_KINDS, **_TOPIC_KINDS[topic]}


# --- kinds of every topic ---------------------------------------------------------------------


def _random_bytes(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, _ = valid_message(rng, limits, topic)
    # 0xff is never UTF-8; no bracket, so that the nesting check cannot speak first.
    noise = rng.randbytes(rng.randint(0, 1024)).translate(bytes.maketrans(b"[{", b"()"))
    return key.encode(), b"\xff" + noise, "undecodable"


def _invalid_utf8_in_a_string(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    raw = dump(message)
    quote = raw.index(b'": "') + 4  # inside the first string value
    return key.encode(), raw[:quote] + b"\xc3\x28" + raw[quote:], "undecodable"


def _truncated_json(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    raw = dump(message)
    return key.encode(), raw[: rng.randint(1, len(raw) - 1)], "invalid_json"


def _trailing_garbage(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    return key.encode(), dump(message) + rng.choice([b" x", b"\n{}", b",", b" null"]), "invalid_json"


def _byte_order_mark(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    return key.encode(), b"\xef\xbb\xbf" + dump(message), "invalid_json"


def _raw_control_character(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    raw = dump(message)
    quote = raw.index(b'": "') + 4  # JSON strings must escape control characters
    return key.encode(), raw[:quote] + bytes([rng.randint(0, 31)]) + raw[quote:], "invalid_json"


def _lone_surrogate(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    field = key_field(topic)
    raw = dump({**message, field: "x"}).replace(b'"x"', b'"\\ud800"', 1)
    return key.encode(), raw, "invalid_json"


def _empty_value(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, _ = valid_message(rng, limits, topic)
    return key.encode(), rng.choice([None, b"", b"   "]), "invalid_json"


def _not_an_object(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    value = rng.choice([[1, 2], "a string", 42, None, True, list(message.values())[:1]])
    return key.encode(), dump(value), "wrong_type"


def _deeply_nested(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    head = dump(message)[:-1] + b', "nested": '
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a": ', b"}")])
    room = (limits.max_message_bytes - len(head) - 2) // (len(opener) + len(closer))
    depth = max(min(rng.choice([1000, 10_000, 200_000]), room), limits.max_json_depth + 1)
    closed = rng.random() < 0.5  # or left open, as a truncated message is
    value = head + opener * depth + (b"1" + closer * depth if closed else b"") + b"}"
    reason = "message_too_large" if len(value) > limits.max_message_bytes else "nesting_too_deep"
    return key.encode(), value, reason


def _huge_string(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    field = rng.choice(["title", "text"] if topic == "items" else ["note", key_field(topic)])
    filler = _HUGE_VALUE_BYTES - len(dump(message)) - len(field) - 6
    huge = {**message, field: "x" * filler}
    value = dump(huge)
    if len(value) > limits.max_message_bytes:
        return key.encode(), value, "message_too_large"
    # Under a larger limit the content speaks: an id too long, or a text too long.
    if field == "note":
        return key.encode(), value, None
    if topic != "items":
        return key.encode(), value, "invalid_value"
    chars = sum(len(huge.get(name) or "") for name in ("title", "text", "category"))
    return key.encode(), value, "text_too_long" if chars > limits.max_text_chars else None


def _missing_field(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    required = {
        "events": ["user_id", "item_id", "type", "ts"],
        "items": ["item_id", "title"],
        "rerank-requests": ["request_id", "user_id", "candidates"],
    }[topic]
    field = rng.choice(required)
    message = (
        {**message, field: None} if rng.random() < 0.3 else {k: v for k, v in message.items() if k != field}
    )
    return keyed(key, message, "missing_field")


def _wrong_type(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    field, value = rng.choice(
        {
            "events": [("user_id", True), ("user_id", 1.5), ("ts", "noon"), ("type", 3), ("weight", "x")],
            "items": [("title", 5), ("deleted", "yes"), ("ts", "1999"), ("item_id", False)],
            "rerank-requests": [("candidates", "a,b"), ("k", "3"), ("k", True), ("request_id", 2.5)],
        }[topic]
    )
    return keyed(key, {**message, field: value}, "wrong_type")


def _not_finite(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    value = rng.choice([float("nan"), float("inf"), float("-inf")])
    if topic == "events" and rng.random() < 0.5:
        return keyed(key, {**message, "weight": value}, "invalid_value")  # NaN is not >= 0 either
    return keyed(key, {**message, "ts": value}, "invalid_timestamp")


def _absurd_timestamp(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    too_early = [-1e300] if topic == "items" else [-1.0, -1e300]
    ts = rng.choice([1e300, 1.7e12, MAX_TS * 10, *too_early])  # 1.7e12: milliseconds
    return keyed(key, {**message, "ts": ts}, "invalid_timestamp")


def _id_too_long(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    _, message = valid_message(rng, limits, topic)
    field = key_field(topic)
    long_id = "i" * 257 if rng.random() < 0.5 else "9" * 300  # a string, or an integer
    value = long_id if long_id[0] == "i" else int(long_id)
    return keyed(long_id, {**message, field: value}, "invalid_value")


def _empty_id(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    return keyed(key, {**message, key_field(topic): ""}, "invalid_value")


def _missing_key(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    _, message = valid_message(rng, limits, topic)
    return rng.choice([None, b""]), dump(message), "missing_key"


def _key_mismatch(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    others = [
        f"{key}-other",
        key.upper(),
        f" {key}",
        str(message.get("item_id")),
        str(message.get("user_id")),
    ]
    other = rng.choice([candidate for candidate in others if candidate != key])
    return other.encode(), dump(message), "key_mismatch"


def _control_character_in_id(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    _, message = valid_message(rng, limits, topic)
    odd = rng.choice(_CONTROL_IDS)
    if topic == "rerank-requests" and rng.random() < 0.5:
        return keyed(message["user_id"], {**message, "candidates": ["fuzz-item-1", odd]}, "invalid_value")
    return keyed(odd, {**message, key_field(topic): odd}, "invalid_value")


def _odd_id_with_a_plain_key(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    odd = f"{rng.choice(_ODD_IDS)}-{key}"
    return keyed(key, {**message, key_field(topic): odd}, "key_mismatch")


def _odd_but_valid_id(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    odd = f"{rng.choice(_ODD_IDS)}-{key}"
    return keyed(odd, {**message, key_field(topic): odd}, None)


def _integer_id(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    _, message = valid_message(rng, limits, topic)
    number = rng.randrange(10**12)
    return keyed(str(number), {**message, key_field(topic): number}, None)


_COMMON_KINDS: dict[str, Kind] = {
    "random_bytes": _random_bytes,
    "invalid_utf8_in_a_string": _invalid_utf8_in_a_string,
    "truncated_json": _truncated_json,
    "trailing_garbage": _trailing_garbage,
    "byte_order_mark": _byte_order_mark,
    "raw_control_character": _raw_control_character,
    "lone_surrogate": _lone_surrogate,
    "empty_value": _empty_value,
    "not_an_object": _not_an_object,
    "deeply_nested": _deeply_nested,
    "huge_string": _huge_string,
    "missing_field": _missing_field,
    "wrong_type": _wrong_type,
    "not_finite": _not_finite,
    "absurd_timestamp": _absurd_timestamp,
    "id_too_long": _id_too_long,
    "empty_id": _empty_id,
    "missing_key": _missing_key,
    "key_mismatch": _key_mismatch,
    "control_character_in_id": _control_character_in_id,
    "odd_id_with_a_plain_key": _odd_id_with_a_plain_key,
    "odd_but_valid_id": _odd_but_valid_id,
    "integer_id": _integer_id,
}


# --- kinds of one topic -----------------------------------------------------------------------


def _unknown_event_type(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    return keyed(
        key, {**message, "type": rng.choice(["teleport", "VIEW", "", "view "])}, "unknown_event_type"
    )


def _negative_weight(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    return keyed(key, {**message, "weight": -rng.uniform(0.001, 1e9)}, "invalid_value")


def _text_too_long(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    title = "t" * (limits.max_text_chars + 1)
    value = dump({**message, "title": title})
    return (
        key.encode(),
        value,
        "message_too_large" if len(value) > limits.max_message_bytes else "text_too_long",
    )


def _blank_title(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    return keyed(key, {**message, "title": rng.choice([" ", "\t\n", "\u3000"])}, "invalid_value")


def _deletion(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, _ = valid_message(rng, limits, topic)
    return keyed(key, {"item_id": key, "deleted": True}, None)


def _too_many_candidates(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    candidates = [str(n) for n in range(limits.max_candidates + 1)]
    value = dump({**message, "candidates": candidates})
    reason = "message_too_large" if len(value) > limits.max_message_bytes else "too_many_candidates"
    return key.encode(), value, reason


def _list_length_zero(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    key, message = valid_message(rng, limits, topic)
    return keyed(key, {**message, "k": rng.choice([0, -3])}, "invalid_value")


def _request_keyed_by_its_request_id(rng: random.Random, limits: InputLimits, topic: str) -> Made:
    _, message = valid_message(rng, limits, topic)
    return keyed(message["request_id"], message, "key_mismatch")


_TOPIC_KINDS: dict[str, dict[str, Kind]] = {
    "events": {"unknown_event_type": _unknown_event_type, "negative_weight": _negative_weight},
    "items": {"text_too_long": _text_too_long, "blank_title": _blank_title, "deletion": _deletion},
    "rerank-requests": {
        "too_many_candidates": _too_many_candidates,
        "list_length_zero": _list_length_zero,
        "request_keyed_by_its_request_id": _request_keyed_by_its_request_id,
    },
}
