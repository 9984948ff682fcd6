"""The stored state and the internal messages of streamrank: their one definition.

Each form is a msgspec ``Struct`` encoded as MessagePack:

- :class:`StoredProfile`: a user profile, the ``user-profiles`` table's value;
- :class:`StoredRow`: an item's published co-visitation row, the ``item-covisits`` value;
- :class:`StoredPopularity`: an item's decayed count, the ``item-popularity`` value;
- :class:`StatisticsMessage`: a batch's item-statistics increments for one owner
  partition, the ``item-interactions`` message, decoded into an :class:`IncrementsMessage`.

The Structs are ``array_like``: fields go by position, with no names on the wire. Arrays
of numbers travel as raw little-endian bytes fields (read back with ``np.frombuffer``),
never as one MessagePack float per value; a profile's history, a list of (item, time,
weight) tuples in memory, goes as MessagePack tuples, which encode several times faster
than splitting it into an id list and two arrays and decode as fast (both measured with
``streamrank bench codecs``, see docs/codecs.md). A statistics message names each row
and neighbour id once and refers to it by number: a busy batch forms tens of thousands of
pairs over a few thousand items, and an owner then decodes each id once and merges rows
keyed by the same string objects.

Every reader raises :class:`FormatError` (a ``ValueError``) on a value that is not of
its form: the values are written by streamrank's own workers, so one that cannot be
read is a defect or a value of another version.

Upgrading: these forms replaced the hand-made binary forms (magics ``SRP1``, ``SRC1``,
``SRC2``, ``SRQ1``, ``SII1``) and the JSON forms of earlier versions, and nothing reads
those any more. streamrank is 0.x: a deployment upgraded across this change starts from
fresh state under a new app id (``STREAMRANK_APP_ID``), that is new changelog topics and
a new consumer group; profiles and statistics are rebuilt from the events that follow,
or from a replay. Later changes to these forms follow the same rule until 1.0, unless
they only add trailing fields with defaults, which older values still decode to.

No Faust, no Kafka; nothing of ``stream`` is imported but for type checking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

if TYPE_CHECKING:
    from stream.core.profiles import UserProfile

# (item_id, ts, weight), as a profile's history holds them.
HistoryEntry = tuple[str, float, float]
# (row, its neighbours, their weights, held at): a row's increments as a message carries them.
RowSlice = tuple[str, Sequence[str], Sequence[float], float]

_F4, _F8, _U4 = np.dtype("<f4"), np.dtype("<f8"), np.dtype("<u4")


class FormatError(ValueError):
    """A value that is not of the stored form or message it was read as."""


class StoredProfile(msgspec.Struct, array_like=True, gc=False):
    """A user profile (``profiles.UserProfile``) as the ``user-profiles`` table stores it."""

    vector: bytes | None  # float32, little-endian; None: no interest vector yet
    mass: float
    ref_ts: float
    model_id: str
    counts: dict[str, int]
    n_events: int
    last_event_ts: float
    history: list[HistoryEntry]
    pending: list[HistoryEntry]
    # The events-topic position of the newest event applied: a replayed event at or
    # before it is recognised and skipped (-1: none recorded).
    partition: int = -1
    offset: int = -1


class StoredRow(msgspec.Struct, array_like=True, gc=False):
    """A co-visitation row as the ``item-covisits`` table stores it: the scores (float64,
    little-endian) held at ``landmark``, aligned with ``neighbours``."""

    landmark: float
    scores: bytes
    neighbours: list[str]
    # The offset of the last ``item-interactions`` message merged into the row, in its
    # owner's partition: a message replayed after an owner's crash is skipped (-1: none).
    position: int = -1


class StoredPopularity(msgspec.Struct, array_like=True, gc=False):
    """An item's decayed interaction count, held at ``ref_ts`` (``item-popularity``)."""

    score: float
    ref_ts: float
    position: int = -1  # as ``StoredRow.position``


class StatisticsMessage(msgspec.Struct, array_like=True, gc=False):
    """A batch's increments for one owner partition (topic ``item-interactions``), all
    held at ``ts``.

    Item ``items[k]`` gains ``scores[k]`` (float64). Row ``names[rows[k]]`` holds the next
    ``sizes[k]`` entries of ``neighbours`` (numbers into ``names``) and ``weights``
    (float64); numbers and sizes are uint32. Arrays are little-endian bytes.
    """

    ts: float
    items: list[str]
    scores: bytes
    names: list[str]
    rows: bytes
    sizes: bytes
    neighbours: bytes
    weights: bytes
    source: SourceRange | None = None


class SourceRange(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The events a statistics message sums: those of ``events`` partition ``partition``
    with offsets in ``(after, through]``, less those already applied to their profiles."""

    partition: int
    after: int
    through: int


class IncrementsMessage(msgspec.Struct, frozen=True):
    """A decoded ``item-interactions`` message: what an owner merges, every sum held at ``ts``.

    Row ``rows[k]`` holds the next ``sizes[k]`` entries of ``neighbours`` and ``weights``.
    """

    ts: float
    items: Sequence[str]
    scores: Sequence[float]
    rows: Sequence[str] = ()
    sizes: Sequence[int] = ()
    neighbours: Sequence[str] = ()
    weights: Sequence[float] = ()
    source: SourceRange | None = None  # None: merged unconditionally

    def popularity_entries(self) -> Iterator[tuple[str, float, float]]:
        """``(item, decayed sum, held at)`` of each item."""
        # Not strict: repeat() is endless; the decoder has compared the other lengths.
        return zip(self.items, self.scores, repeat(self.ts), strict=False)

    def covisit_slices(self) -> Iterator[RowSlice]:
        """``(row, neighbours, weights, held at)`` of each row, sliced as they are merged."""
        ts, neighbours, weights = self.ts, self.neighbours, self.weights
        start = 0
        for row_id, size in zip(self.rows, self.sizes, strict=True):
            end = start + size
            yield row_id, neighbours[start:end], weights[start:end], ts
            start = end


def _enc_hook(value: Any) -> Any:
    # numpy scalars (a float64 that reached a history entry or a count) as Python numbers.
    if isinstance(value, np.generic):
        return value.item()
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)  # every stored form's
_profile_decoder = msgspec.msgpack.Decoder(StoredProfile)
_row_decoder = msgspec.msgpack.Decoder(StoredRow)
_popularity_decoder = msgspec.msgpack.Decoder(StoredPopularity)
_message_decoder = msgspec.msgpack.Decoder(StatisticsMessage)


# A position in an array-like Struct, as msgspec's errors give it: "`$[7]...`".
_POSITION = re.compile(r"`\$\[(\d+)\]")


def decode_struct(decoder: msgspec.msgpack.Decoder[Any], data: bytes, what: str) -> Any:
    """``data`` decoded by ``decoder``; else a FormatError naming the field at fault."""
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError included
        fields = decoder.type.__struct_fields__

        def field_name(found: re.Match[str]) -> str:  # array-like: the fields go by position
            position = int(found.group(1))
            return f"`$.{fields[position]}" if position < len(fields) else found.group(0)

        message = _POSITION.sub(field_name, str(exc))
        raise FormatError(f"not {what} ({len(data)} bytes): {message}") from None


def _array(data: bytes, dtype: np.dtype[Any], what: str) -> np.ndarray:
    if len(data) % dtype.itemsize:
        raise FormatError(f"{what} of {len(data)} bytes, not a whole number of {dtype.itemsize}-byte values")
    return np.frombuffer(data, dtype=dtype)


# --- user profiles ---------------------------------------------------------------------


def encode_profile(profile: UserProfile) -> bytes:
    """A profile's stored form (``UserProfile.to_bytes``)."""
    vector = profile.vector
    return encoder.encode(
        StoredProfile(
            None if vector is None else np.ascontiguousarray(vector, dtype=_F4).tobytes(),
            float(profile.mass),
            float(profile.ref_ts),
            profile.model_id,
            profile.counts,
            int(profile.n_events),
            float(profile.last_event_ts),
            profile.history,
            profile.pending,
            int(profile.partition),
            int(profile.offset),
        )
    )


def decode_profile(data: bytes) -> dict[str, Any]:
    """The fields of a stored profile, by ``UserProfile`` field name (``UserProfile.from_bytes``)."""
    stored: StoredProfile = decode_struct(_profile_decoder, data, "a stored user profile")
    vector = (
        None if stored.vector is None else _array(stored.vector, _F4, "a profile vector").astype(np.float32)
    )
    return {
        "vector": vector,
        "mass": stored.mass,
        "ref_ts": stored.ref_ts,
        "model_id": stored.model_id,
        "history": stored.history,
        "pending": stored.pending,
        "counts": stored.counts,
        "n_events": stored.n_events,
        "last_event_ts": stored.last_event_ts,
        "partition": stored.partition,
        "offset": stored.offset,
    }


# --- co-visitation rows ----------------------------------------------------------------


def encode_row(landmark: float, neighbours: list[str], scores: np.ndarray, position: int = -1) -> bytes:
    """A row's stored form: ``neighbours`` and their ``scores`` (float64), held at
    ``landmark``, merged through ``item-interactions`` offset ``position``."""
    values = np.ascontiguousarray(scores, dtype=_F8)
    if len(values) != len(neighbours):
        raise ValueError(f"{len(neighbours)} neighbours but {len(values)} scores")
    return encoder.encode(StoredRow(float(landmark), values.tobytes(), neighbours, int(position)))


def _read_row(data: bytes) -> tuple[StoredRow, np.ndarray]:
    stored: StoredRow = decode_struct(_row_decoder, data, "a stored co-visitation row")
    scores = _array(stored.scores, _F8, "row scores")
    if len(scores) != len(stored.neighbours):
        raise FormatError(f"a row of {len(scores)} scores names {len(stored.neighbours)} neighbours")
    return stored, scores


def row_arrays(data: bytes) -> tuple[list[str], np.ndarray]:
    """A stored row's neighbour ids and scores (float64), without building its dict."""
    stored, scores = _read_row(data)
    return stored.neighbours, scores


def decode_row(data: bytes) -> tuple[float, dict[str, float], int]:
    """``(landmark, {neighbour: score}, position)`` of a stored row (``CovisitRow.from_bytes``)."""
    stored, scores = _read_row(data)
    return stored.landmark, dict(zip(stored.neighbours, scores.tolist(), strict=True)), stored.position


# --- popularity entries ----------------------------------------------------------------


def encode_popularity(score: float, ref_ts: float, position: int = -1) -> bytes:
    """An item's decayed count as stored in the ``item-popularity`` table (about 24 bytes)."""
    # The bytes of StoredPopularity(...), an array-like Struct, without building it.
    return encoder.encode((score, ref_ts, position))


def decode_popularity(data: bytes) -> tuple[float, float, int]:
    """``(score, ref_ts, position)`` of a stored popularity entry."""
    stored: StoredPopularity = decode_struct(_popularity_decoder, data, "a stored popularity entry")
    return stored.score, stored.ref_ts, stored.position


# --- item-statistics messages ----------------------------------------------------------


def encode_increments(
    ts: float,
    popularity: Mapping[str, float],
    names: np.ndarray,
    rows: np.ndarray,
    sizes: np.ndarray,
    neighbours: np.ndarray,
    weights: np.ndarray,
    source: SourceRange | None = None,
) -> bytes:
    """One ``item-interactions`` message: items' popularity sums and co-visitation rows.

    Args:
        source: the events the sums are of, by which an owner recognises a message sent
            again after its sender's crash (None: always merged).
        names: ids (an object array) that ``rows`` and ``neighbours`` number (int64);
            only those the message uses are sent.
        sizes: each row's number of entries of ``neighbours`` and ``weights`` (float64).
    """
    used = np.zeros(len(names), dtype=bool)
    used[rows] = True
    used[neighbours] = True
    # Renumbered in the order of ``names``: a mask and a running count, no sort.
    number = np.cumsum(used, dtype=np.int64) - 1
    return encoder.encode(
        StatisticsMessage(
            float(ts),
            list(popularity),
            np.fromiter(popularity.values(), dtype=_F8, count=len(popularity)).tobytes(),
            names[used].tolist(),
            number[rows].astype(_U4).tobytes(),
            np.asarray(sizes).astype(_U4).tobytes(),
            number[neighbours].astype(_U4).tobytes(),
            np.asarray(weights).astype(_F8).tobytes(),
            source,
        )
    )


def decode_message(raw: bytes) -> IncrementsMessage:
    """An ``item-interactions`` message value.

    Raises:
        FormatError: the value is not a message, or its parts disagree (lengths, row
            sizes, numbers beyond its names).
    """
    wire: StatisticsMessage = decode_struct(_message_decoder, raw, "an item-statistics message")
    scores = _array(wire.scores, _F8, "popularity scores")
    if len(scores) != len(wire.items):
        raise FormatError(f"{len(wire.items)} items but {len(scores)} scores")
    rows = _array(wire.rows, _U4, "row numbers")
    sizes = _array(wire.sizes, _U4, "row sizes")
    neighbours = _array(wire.neighbours, _U4, "neighbour numbers")
    weights = _array(wire.weights, _F8, "neighbour weights")
    if len(sizes) != len(rows):
        raise FormatError(f"{len(rows)} rows but {len(sizes)} sizes")
    if len(weights) != len(neighbours):
        raise FormatError(f"{len(neighbours)} neighbours but {len(weights)} weights")
    total = int(sizes.sum(dtype=np.int64))
    if total != len(neighbours):
        raise FormatError(f"rows of {total} neighbours in all but {len(neighbours)} neighbours")
    names = np.empty(len(wire.names), dtype=object)
    names[:] = wire.names
    largest = max(int(rows.max(initial=0)), int(neighbours.max(initial=0)))
    if (len(rows) or len(neighbours)) and largest >= len(names):
        raise FormatError(f"id number {largest} of a message naming {len(names)} ids")
    return IncrementsMessage(
        wire.ts,
        wire.items,
        scores.tolist(),
        names[rows].tolist(),
        sizes.tolist(),
        names[neighbours].tolist(),
        weights.tolist(),
        wire.source,
    )
