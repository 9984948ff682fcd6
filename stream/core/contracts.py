"""Message contracts: decode and validate input bytes, build output payloads.

Input topics carry raw bytes so that every malformed message can be dead-lettered with
its original bytes; these functions are the single place where bytes become typed
records. Pure: no Faust, no Kafka.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stream.errors import InvalidMessage


@dataclass(frozen=True, slots=True)
class InteractionEvent:
    """A user interacted with an item (topic ``events``, key ``user_id``)."""

    user_id: str
    item_id: str
    type: str
    ts: float
    weight: float


@dataclass(frozen=True, slots=True)
class ItemUpsert:
    """A catalog item was added or changed (topic ``items``, key ``item_id``)."""

    item_id: str
    title: str
    text: str
    category: str
    ts: float | None

    def encoder_text(self) -> str:
        """The text the encoder sees: title, then category, then free text."""
        parts = [self.title]
        if self.category:
            parts.append(f"Category: {self.category}")
        if self.text:
            parts.append(self.text)
        return ". ".join(parts)


@dataclass(frozen=True, slots=True)
class ItemDelete:
    """A catalog item was retired and must never be recommended again."""

    item_id: str


@dataclass(frozen=True, slots=True)
class RerankRequest:
    """Rerank exactly these candidates for this user (topic ``rerank-requests``)."""

    request_id: str
    user_id: str
    candidates: tuple[str, ...]
    k: int | None
    ts: float | None


def _load_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidMessage("invalid_json", "empty message value")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage("undecodable", f"value is not UTF-8 ({exc.reason})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessage("invalid_json", f"{exc.msg} at position {exc.pos}") from None
    if not isinstance(obj, dict):
        raise InvalidMessage("wrong_type", f"value must be a JSON object, got {type(obj).__name__}")
    return obj


def _require(obj: Mapping[str, Any], field: str) -> Any:
    if field not in obj or obj[field] is None:
        raise InvalidMessage("missing_field", f"field {field!r} is required")
    return obj[field]


def _id(obj: Mapping[str, Any], field: str) -> str:
    value = _require(obj, field)
    # Integer ids are common (MovieLens, SQL keys); they are normalised to strings.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidMessage("wrong_type", f"{field!r} must be a string or integer")
    text = str(value)
    if not text or len(text) > 256:
        raise InvalidMessage("invalid_value", f"{field!r} must be 1..256 characters")
    return text


def _number(obj: Mapping[str, Any], field: str, *, required: bool) -> float | None:
    if not required and obj.get(field) is None:
        return None
    value = _require(obj, field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidMessage("wrong_type", f"{field!r} must be a number")
    if not math.isfinite(value):
        raise InvalidMessage("invalid_value", f"{field!r} must be finite")
    return float(value)


def _timestamp(
    obj: Mapping[str, Any], field: str, *, required: bool, allow_negative: bool = False
) -> float | None:
    ts = _number(obj, field, required=required)
    if ts is not None and ts < 0 and not allow_negative:
        raise InvalidMessage("invalid_value", f"{field!r} must be epoch seconds >= 0")
    return ts


def _string(obj: Mapping[str, Any], field: str, *, required: bool) -> str:
    value = obj.get(field)
    if value is None:
        if required:
            raise InvalidMessage("missing_field", f"field {field!r} is required")
        return ""
    if not isinstance(value, str):
        raise InvalidMessage("wrong_type", f"{field!r} must be a string")
    return value


def decode_event(raw: bytes | None, event_weights: Mapping[str, float]) -> InteractionEvent:
    """Validate an ``events`` message.

    Raises:
        InvalidMessage: with a reason from ``errors.REASONS``.
    """
    obj = _load_object(raw)
    user_id = _id(obj, "user_id")
    item_id = _id(obj, "item_id")
    event_type = _string(obj, "type", required=True)
    if event_type not in event_weights:
        raise InvalidMessage(
            "unknown_event_type",
            f"type {event_type!r} is not one of {sorted(event_weights)}",
        )
    ts = _timestamp(obj, "ts", required=True)
    weight = _number(obj, "weight", required=False)
    if weight is not None and weight < 0:
        raise InvalidMessage("invalid_value", "'weight' must be >= 0")
    return InteractionEvent(user_id, item_id, event_type, float(ts or 0.0), 1.0 if weight is None else weight)


def decode_item(raw: bytes | None, max_text_chars: int) -> ItemUpsert | ItemDelete:
    """Validate an ``items`` message (an upsert, or ``{"item_id", "deleted": true}``)."""
    obj = _load_object(raw)
    item_id = _id(obj, "item_id")
    deleted = obj.get("deleted", False)
    if not isinstance(deleted, bool):
        raise InvalidMessage("wrong_type", "'deleted' must be a boolean")
    if deleted:
        return ItemDelete(item_id)
    title = _string(obj, "title", required=True)
    if not title.strip():
        raise InvalidMessage("invalid_value", "'title' must not be blank")
    text = _string(obj, "text", required=False)
    category = _string(obj, "category", required=False)
    size = len(title) + len(text) + len(category)
    if size > max_text_chars:
        raise InvalidMessage(
            "text_too_long", f"title+text+category is {size} characters, limit {max_text_chars}"
        )
    # Items may be born before 1970 (a film's release date): negative ts is valid.
    ts = _timestamp(obj, "ts", required=False, allow_negative=True)
    return ItemUpsert(item_id, title, text, category, ts)


def decode_rerank_request(raw: bytes | None, max_candidates: int) -> RerankRequest:
    """Validate a ``rerank-requests`` message."""
    obj = _load_object(raw)
    request_id = _id(obj, "request_id")
    user_id = _id(obj, "user_id")
    candidates = _require(obj, "candidates")
    if not isinstance(candidates, list):
        raise InvalidMessage("wrong_type", "'candidates' must be a list of item ids")
    if len(candidates) > max_candidates:
        raise InvalidMessage("too_many_candidates", f"{len(candidates)} candidates, limit {max_candidates}")
    ids = tuple(_id({"candidate": c}, "candidate") for c in candidates)
    k = obj.get("k")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
        raise InvalidMessage("wrong_type", "'k' must be an integer")
    if k is not None and k <= 0:
        raise InvalidMessage("invalid_value", "'k' must be > 0")
    return RerankRequest(request_id, user_id, ids, k, _timestamp(obj, "ts", required=False))


@dataclass(frozen=True, slots=True)
class RankedItem:
    """One entry of a recommendation list."""

    item_id: str
    score: float
    reason: str


def recommendation_payload(
    user_id: str,
    items: list[RankedItem],
    *,
    model: str,
    event_ts: float | None,
    emitted_ts: float,
    request_id: str | None = None,
    profile_events: int = 0,
) -> dict[str, Any]:
    """Build a ``recommendations`` message value.

    ``profile_events`` is how many of the user's events the list reflects: a client (or
    the online evaluation) can tell which of its events a list already takes into account.
    """
    payload: dict[str, Any] = {"user_id": user_id}
    if request_id is not None:
        payload["request_id"] = request_id
    payload["items"] = [
        {"item_id": it.item_id, "score": round(it.score, 6), "reason": it.reason} for it in items
    ]
    payload["model"] = model
    payload["event_ts"] = event_ts
    payload["profile_events"] = profile_events
    payload["emitted_ts"] = emitted_ts
    return payload


def dead_letter_payload(
    source_topic: str, partition: int, offset: int, error: InvalidMessage, raw: bytes | None
) -> dict[str, Any]:
    """Build a ``dead-letters`` message value, keeping the original bytes."""
    payload: dict[str, Any] = {
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "reason": error.reason,
        "error": str(error),
    }
    if raw is None:
        payload["payload"] = None
        return payload
    try:
        payload["payload"] = raw.decode("utf-8")
        payload["payload_encoding"] = "utf-8"
    except UnicodeDecodeError:
        payload["payload"] = base64.b64encode(raw).decode("ascii")
        payload["payload_encoding"] = "base64"
    return payload
