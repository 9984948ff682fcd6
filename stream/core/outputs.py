"""Output contracts: the ``recommendations`` and ``dead-letters`` messages, encoded once.

Both are msgspec Structs encoded straight to JSON bytes: a worker sends one list per
user per batch, and building a dict for ``json.dumps`` cost it twice the time
(``docs/codecs.md``). Their JSON Schemas are generated with the inputs'
(``core.schemas``). Pure: no Faust, no Kafka.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from stream.errors import REASONS, InvalidMessage


class RecommendedItem(msgspec.Struct, gc=False):
    """One entry of a recommendation list."""

    item_id: str
    score: float
    reason: str


class Recommendation(msgspec.Struct, kw_only=True, gc=False):
    """A recommendation list (topic ``recommendations``, key ``user_id``): a top-K list
    after the user's events, or the answer to a rerank request (``request_id``)."""

    user_id: str
    request_id: str | UnsetType = UNSET
    items: list[RecommendedItem]
    model: Annotated[str, Meta(description="The model whose item vectors ranked the list.")]
    event_ts: Annotated[float | None, Meta(description="Newest event (or request) time the list answers.")]
    profile_events: Annotated[int, Meta(ge=0, description="How many of the user's events the list reflects.")]
    input_partition: Annotated[
        int | None,
        Meta(description="Events partition of the newest event the list reflects (null: none)."),
    ] = None
    input_offset: Annotated[
        int | None,
        Meta(
            description="Offset of the newest event the list reflects (null: none); with "
            "user_id and input_partition it identifies a list sent again after a restart."
        ),
    ] = None
    emitted_ts: Annotated[float, Meta(description="Wall-clock time the list was sent, epoch seconds.")]


class DeadLetter(msgspec.Struct, kw_only=True, gc=False):
    """A message that could not be processed (topic ``dead-letters``), with its original
    bytes: as UTF-8 text, or base64 when they are not UTF-8; ``payload`` is null for an
    empty (null) value, and ``payload_encoding`` is then absent. A value too large for a
    dead letter is cut to its first bytes (``payload_truncated``); its size and digest are
    still those of the whole original."""

    source_topic: str
    partition: int
    offset: int
    reason: Literal[REASONS]
    error: Annotated[str, Meta(description="The reason and what was wrong, at most 1000 characters.")]
    payload: str | None
    payload_encoding: Literal["utf-8", "base64"] | UnsetType = UNSET
    payload_size: Annotated[int, Meta(ge=0, description="Bytes of the original value (0 for null).")]
    payload_sha256: Annotated[
        str | None, Meta(description="SHA-256 of the original value, hex; null for a null value.")
    ]
    payload_truncated: Annotated[
        bool, Meta(description="True: payload holds only the first bytes of the original value.")
    ]


_json_encoder = msgspec.json.Encoder()
# Details are short; a longer error (an exception's message) is cut to keep letters small.
_MAX_ERROR_CHARS = 1000


@dataclass(frozen=True, slots=True)
class RankedItem:
    """One entry of a ranked list, as ranking produces it."""

    item_id: str
    score: float
    reason: str


def encode_recommendation(
    user_id: str,
    items: list[RankedItem],
    *,
    model: str,
    event_ts: float | None,
    emitted_ts: float,
    request_id: str | None = None,
    profile_events: int = 0,
    input_position: tuple[int, int] | None = None,
) -> bytes:
    """A ``recommendations`` message value, JSON bytes (scores rounded to 6 decimals).

    ``profile_events`` is how many of the user's events the list reflects: a client (or
    the online evaluation) can tell which of its events a list already takes into account.
    ``input_position`` is the events-topic ``(partition, offset)`` of the newest of them:
    lists are sent at least once, and a consumer drops one it has seen by it.
    """
    message = Recommendation(
        user_id=user_id,
        request_id=UNSET if request_id is None else request_id,
        items=[RecommendedItem(it.item_id, round(it.score, 6), it.reason) for it in items],
        model=model,
        event_ts=event_ts,
        profile_events=profile_events,
        emitted_ts=emitted_ts,
        input_partition=None if input_position is None else input_position[0],
        input_offset=None if input_position is None else input_position[1],
    )
    return _json_encoder.encode(message)


def encode_dead_letter(
    source_topic: str,
    partition: int,
    offset: int,
    error: InvalidMessage,
    raw: bytes | None,
    *,
    max_bytes: int | None = None,
) -> bytes:
    """A ``dead-letters`` message value, JSON bytes, keeping the original bytes.

    Args:
        source_topic: The topic the message was read from.
        partition: Its partition.
        offset: Its offset.
        error: Why it is rejected.
        raw: Its value.
        max_bytes: The most bytes the value may take (it must fit the producer's and the
            broker's limits): a payload that does not fit is cut to its first bytes.
            None: never cut.
    """
    detail = str(error)
    if len(detail) > _MAX_ERROR_CHARS:
        detail = detail[: _MAX_ERROR_CHARS - 3] + "..."
    message = DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        reason=error.reason,
        error=detail,
        payload=None,
        payload_size=0,
        payload_sha256=None,
        payload_truncated=False,
    )
    if raw is None:
        return _json_encoder.encode(message)
    message.payload_size = len(raw)
    message.payload_sha256 = hashlib.sha256(raw).hexdigest()
    try:
        message.payload, message.payload_encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        message.payload, message.payload_encoding = base64.b64encode(raw).decode("ascii"), "base64"
    encoded = _json_encoder.encode(message)
    if max_bytes is None or len(encoded) <= max_bytes:
        return encoded
    is_text = message.payload_encoding == "utf-8"
    message.payload, message.payload_truncated = "", True
    room = max_bytes - len(_json_encoder.encode(message))
    message.payload = _text_prefix(raw, room) if is_text else _base64_prefix(raw, room)
    return _json_encoder.encode(message)


def _base64_prefix(raw: bytes, room: int) -> str:
    """The base64 of the longest prefix of ``raw`` whose encoding takes at most ``room`` bytes."""
    return base64.b64encode(raw[: max(room, 0) // 4 * 3]).decode("ascii")


def _text_prefix(raw: bytes, room: int) -> str:
    """The longest prefix of UTF-8 ``raw``, as text, whose JSON string takes at most ``room``
    bytes between its quotes (escapes make a byte take up to six)."""
    keep = min(len(raw), max(room, 0))  # every byte takes at least one
    while keep > 0:
        # A character cut at the end is dropped: the rest of raw is valid UTF-8.
        text = raw[:keep].decode("utf-8", errors="ignore")
        size = len(_json_encoder.encode(text)) - 2
        if size <= room:
            return text
        # Each byte cut takes at least one off (but for a character cut in two): cutting the
        # excess fits; when escapes make that all, scaling by them keeps more.
        keep = max(keep * room // size, keep - (size - room) - 3)
    return ""
