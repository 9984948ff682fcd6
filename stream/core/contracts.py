"""Input contracts: decode and validate the bytes of events, items and rerank requests.

The input contracts on the wire are msgspec Structs: :class:`EventMessage` (topic
``events``), :class:`ItemMessage` (``items``) and :class:`RerankRequestMessage`
(``rerank-requests``); the outputs are in ``core.outputs``. Their JSON Schemas, generated
from the Structs (``core.schemas``, ``streamrank schemas``), are checked in under
``schemas/``.

Input topics carry raw bytes so that every malformed message can be dead-lettered with
its original bytes; the ``decode_*`` functions are the single place where bytes become
typed records. ``msgspec.json.decode`` checks the types and the constraints a schema
states (id lengths, signs, time ranges); the checks that depend on settings (event types,
the text and candidate limits) follow. Every malformed message raises ``InvalidMessage``
with a reason of ``errors.REASONS``. Pure: no Faust, no Kafka.

Two checks need more than the value, and the agents make them around the decoders:
``bounds.check_bounds`` (size and nesting depth, before any parser runs: msgspec and Python's
json recurse into nested values, and 200,000 levels exhaust the interpreter's stack) and
``bounds.check_key`` (the message key is the id that partitions the topic; a keyless or
mismatched event would split its user's profile across partitions).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from stream.core.bounds import excerpt
from stream.errors import InvalidMessage

# An id: a string of 1..256 characters without control characters, or an integer
# (MovieLens, SQL keys) that is normalised to its decimal string. Table keys that start
# with a control character are the pipeline's own (``stream.pipeline.positions``); the
# decoders check the characters (``_text_id``), faster than msgspec's pattern would.
_CONTROL_CHARACTERS = "\\u0000-\\u001f\\u007f-\\u009f"
Id = (
    Annotated[
        str,
        Meta(min_length=1, max_length=256, extra_json_schema={"pattern": f"^[^{_CONTROL_CHARACTERS}]*$"}),
    ]
    | int
)
_MAX_ID_CHARS = 256
_CONTROL = re.compile(f"[{_CONTROL_CHARACTERS}]")

# The latest accepted time, epoch seconds: 2100-01-01T00:00:00Z. A fixed bound, so that a
# replay of historic data (MovieLens starts in 1996) and live data pass alike, and an
# absurd value (1e300) never reaches a profile; a time in milliseconds (1.7e12 today) is
# caught too. Event and request times must also be finite and not negative.
MAX_TS = 4_102_444_800.0
# The earliest accepted item time: 0001-01-01T00:00:00Z, the first instant a datetime
# holds. Items may predate 1970 (a film's release year).
MIN_ITEM_TS = -62_135_596_800.0
_SINCE_1970 = Meta(ge=0, le=MAX_TS)


# --- input messages --------------------------------------------------------------------


class EventMessage(msgspec.Struct, gc=False):
    """A user interacted with an item (topic ``events``, key ``user_id``).

    ``type`` must be one of the worker's configured event types (``STREAMRANK_EVENT_WEIGHTS``;
    by default view, click, rate, like, add_to_cart, purchase). Fields not listed are ignored.
    """

    user_id: Id
    item_id: Id
    type: Annotated[str, Meta(description="Event type, a key of the configured event weights.")]
    ts: Annotated[float, _SINCE_1970, Meta(description="Event time, epoch seconds, from 1970 to 2100.")]
    weight: Annotated[float, Meta(ge=0, description="Multiplies the type's weight (default 1).")] | None = (
        None
    )


class ItemMessage(msgspec.Struct, gc=False):
    """A catalog item was added or changed, or, with ``deleted`` true, retired (topic
    ``items``, key ``item_id``).

    An upsert needs a non-blank ``title``; title, text and category together may hold at
    most the worker's ``STREAMRANK_MAX_TEXT_CHARS`` characters. Fields not listed are ignored.
    """

    item_id: Id
    title: str | None = None
    text: Annotated[str | None, Meta(description="Free text the encoder reads after the title.")] = None
    category: str | None = None
    ts: Annotated[
        Annotated[float, Meta(ge=MIN_ITEM_TS, le=MAX_TS)] | None,
        Meta(description="Item time, epoch seconds, from year 1 to 2100; may be negative."),
    ] = None
    deleted: Annotated[bool, Meta(description="True: the item must never be recommended again.")] = False


class RerankRequestMessage(msgspec.Struct, gc=False):
    """Rerank exactly these candidates for this user (topic ``rerank-requests``, key ``user_id``).

    At most the worker's ``STREAMRANK_MAX_CANDIDATES`` candidates. Fields not listed are ignored.
    """

    request_id: Id
    user_id: Id
    candidates: list[Id]
    k: Annotated[int, Meta(gt=0, description="List length (default: the worker's top K).")] | None = None
    ts: (
        Annotated[float, _SINCE_1970, Meta(description="Request time, epoch seconds, from 1970 to 2100.")]
        | None
    ) = None


# --- decoded records -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InteractionEvent:
    """A user interacted with an item (topic ``events``, key ``user_id``)."""

    key_field: ClassVar[str] = "user_id"

    user_id: str
    item_id: str
    type: str
    ts: float
    weight: float


@dataclass(frozen=True, slots=True)
class ItemUpsert:
    """A catalog item was added or changed (topic ``items``, key ``item_id``)."""

    key_field: ClassVar[str] = "item_id"

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

    key_field: ClassVar[str] = "item_id"

    item_id: str


@dataclass(frozen=True, slots=True)
class RerankRequest:
    """Rerank exactly these candidates for this user (topic ``rerank-requests``, key ``user_id``)."""

    key_field: ClassVar[str] = "user_id"

    request_id: str
    user_id: str
    candidates: tuple[str, ...]
    k: int | None
    ts: float | None


# --- decoding --------------------------------------------------------------------------

_event_decoder = msgspec.json.Decoder(EventMessage)
_item_decoder = msgspec.json.Decoder(ItemMessage)
_rerank_decoder = msgspec.json.Decoder(RerankRequestMessage)
# msgspec's validation messages: "<what> - at `$.field`" (no path: the value itself).
_AT = re.compile(r" - at `\$\.?([^`]*)`$")


def _invalid(message: str, contract: type[msgspec.Struct]) -> InvalidMessage:
    """The reason of a value msgspec found invalid, read from msgspec's error message (its
    wording, which the reasons depend on, is pinned by tests/stream/core/test_contracts.py);
    the message is the detail."""
    found = _AT.search(message)
    path = found.group(1) if found else ""
    what = message[: found.start()] if found else message
    field = re.split(r"[.\[]", path, maxsplit=1)[0]
    if what.startswith("Object missing required field"):
        return InvalidMessage("missing_field", message)
    if not path and what.startswith("Expected `object`"):
        return InvalidMessage("wrong_type", f"value must be a JSON object: {message}")
    if what.endswith("got `null`") and field in _required_fields(contract):
        return InvalidMessage("missing_field", message)  # a required field that is null is missing
    if ", got `" in what:
        return InvalidMessage("wrong_type", message)
    if field == "ts":
        return InvalidMessage("invalid_timestamp", message)  # out of range, or not finite
    return InvalidMessage("invalid_value", message)  # a constraint: a length, a sign, a range


def _required_fields(contract: type[msgspec.Struct]) -> set[str]:
    return {f.name for f in msgspec.structs.fields(contract) if f.required}


def _non_finite(obj: Any) -> str | None:
    # The first top-level field holding NaN or an infinity, as Python's json reads them.
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, float) and not math.isfinite(value):
                return str(key)
    return None


def _malformed(raw: bytes, error: msgspec.DecodeError, contract: type[msgspec.Struct]) -> InvalidMessage:
    """The reason of a value msgspec could not parse as JSON (a rare path: no hurry)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InvalidMessage("undecodable", f"value is not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        obj = json.loads(text)
        # Python's json reads NaN and Infinity, which JSON has not: a number, but not finite.
        msgspec.convert(obj, contract)
    except msgspec.ValidationError as exc:
        return _invalid(str(exc), contract)
    except ValueError:
        return InvalidMessage("invalid_json", str(error))
    except RecursionError:  # as in _decode: a caller that skipped check_bounds
        return InvalidMessage("nesting_too_deep", "value is nested deeper than the decoder can go")
    field = _non_finite(obj)
    if field is not None:
        reason = "invalid_timestamp" if field == "ts" else "invalid_value"
        return InvalidMessage(reason, f"{excerpt(field)!r} must be a finite number")
    return InvalidMessage("invalid_json", str(error))


def _decode(decoder: msgspec.json.Decoder[Any], raw: bytes | None) -> Any:
    contract = decoder.type
    if raw is None:
        raise InvalidMessage("invalid_json", "empty message value")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), contract) from None
    except msgspec.DecodeError as exc:
        raise _malformed(raw, exc, contract) from None
    except RecursionError:
        # msgspec recurses into nested values (even ignored ones): only a caller that
        # skipped check_bounds gets here, and the value is rejected all the same.
        raise InvalidMessage("nesting_too_deep", "value is nested deeper than the decoder can go") from None


def _text_id(value: str | int, field: str) -> str:
    if type(value) is str:
        # Printable strings (most ids) skip the search: no control character is printable.
        if not value.isprintable() and _CONTROL.search(value):
            raise InvalidMessage("invalid_value", f"{field!r} must not hold control characters")
        return value
    text = str(value)
    if len(text) > _MAX_ID_CHARS:
        raise InvalidMessage("invalid_value", f"{field!r} must be 1..{_MAX_ID_CHARS} characters")
    return text


def decode_event(raw: bytes | None, event_weights: Mapping[str, float]) -> InteractionEvent:
    """Validate an ``events`` message (:class:`EventMessage`).

    Raises:
        InvalidMessage: with a reason from ``errors.REASONS``.
    """
    message: EventMessage = _decode(_event_decoder, raw)
    if message.type not in event_weights:
        raise InvalidMessage(
            "unknown_event_type", f"type {excerpt(message.type)!r} is not one of {sorted(event_weights)}"
        )
    return InteractionEvent(
        _text_id(message.user_id, "user_id"),
        _text_id(message.item_id, "item_id"),
        message.type,
        message.ts,
        1.0 if message.weight is None else message.weight,
    )


def decode_item(raw: bytes | None, max_text_chars: int) -> ItemUpsert | ItemDelete:
    """Validate an ``items`` message (:class:`ItemMessage`): an upsert, or a deletion."""
    message: ItemMessage = _decode(_item_decoder, raw)
    item_id = _text_id(message.item_id, "item_id")
    if message.deleted:
        return ItemDelete(item_id)
    title = message.title
    if title is None:
        raise InvalidMessage("missing_field", "field 'title' is required")
    if not title.strip():
        raise InvalidMessage("invalid_value", "'title' must not be blank")
    text, category = message.text or "", message.category or ""
    size = len(title) + len(text) + len(category)
    if size > max_text_chars:
        raise InvalidMessage(
            "text_too_long", f"title+text+category is {size} characters, limit {max_text_chars}"
        )
    return ItemUpsert(item_id, title, text, category, message.ts)


def decode_rerank_request(raw: bytes | None, max_candidates: int) -> RerankRequest:
    """Validate a ``rerank-requests`` message (:class:`RerankRequestMessage`)."""
    message: RerankRequestMessage = _decode(_rerank_decoder, raw)
    candidates = message.candidates
    if len(candidates) > max_candidates:
        raise InvalidMessage("too_many_candidates", f"{len(candidates)} candidates, limit {max_candidates}")
    ids = tuple(_text_id(c, "candidates") for c in candidates)
    return RerankRequest(
        _text_id(message.request_id, "request_id"),
        _text_id(message.user_id, "user_id"),
        ids,
        message.k,
        message.ts,
    )
