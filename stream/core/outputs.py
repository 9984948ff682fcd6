"""Output contracts: the ``recommendations`` and ``dead-letters`` messages, encoded once.

Both are msgspec Structs encoded straight to JSON bytes: a worker sends one list per
user per batch, and building a dict for ``json.dumps`` cost it twice the time
(``docs/codecs.md``). Their JSON Schemas are generated with the inputs'
(``core.schemas``). Pure: no Faust, no Kafka.
"""

from __future__ import annotations

import base64
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
    emitted_ts: Annotated[float, Meta(description="Wall-clock time the list was sent, epoch seconds.")]


class DeadLetter(msgspec.Struct, kw_only=True, gc=False):
    """A message that could not be processed (topic ``dead-letters``), with its original
    bytes: as UTF-8 text, or base64 when they are not UTF-8; ``payload`` is null for an
    empty (null) value, and ``payload_encoding`` is then absent."""

    source_topic: str
    partition: int
    offset: int
    reason: Literal[REASONS]
    error: str
    payload: str | None
    payload_encoding: Literal["utf-8", "base64"] | UnsetType = UNSET


_json_encoder = msgspec.json.Encoder()


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
) -> bytes:
    """A ``recommendations`` message value, JSON bytes (scores rounded to 6 decimals).

    ``profile_events`` is how many of the user's events the list reflects: a client (or
    the online evaluation) can tell which of its events a list already takes into account.
    """
    message = Recommendation(
        user_id=user_id,
        request_id=UNSET if request_id is None else request_id,
        items=[RecommendedItem(it.item_id, round(it.score, 6), it.reason) for it in items],
        model=model,
        event_ts=event_ts,
        profile_events=profile_events,
        emitted_ts=emitted_ts,
    )
    return _json_encoder.encode(message)


def encode_dead_letter(
    source_topic: str, partition: int, offset: int, error: InvalidMessage, raw: bytes | None
) -> bytes:
    """A ``dead-letters`` message value, JSON bytes, keeping the original bytes."""
    if raw is None:
        payload, encoding = None, UNSET
    else:
        try:
            payload, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    message = DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        reason=error.reason,
        error=str(error),
        payload=payload,
        payload_encoding=encoding,
    )
    return _json_encoder.encode(message)
