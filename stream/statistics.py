"""A batch's item-statistics increments: formed by the events agent, merged by each owner.

Every increment of a batch is held at one time, the batch's newest event time: a
decayed sum can be held at any time (``popularity.merge`` and ``covisit.merge_row``
move it), and one shared time lets one exponential serve every pair an event forms
instead of one per pair and row.

On the wire (topic ``item-interactions``) a batch's increments are one binary message
per owner partition (``ItemIncrements.to_bytes``): a busy batch forms tens of thousands
of co-visitation pairs, and formatting and parsing their ids and floats as JSON cost more
than forming them. Pure: no Faust, no Kafka.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from stream import covisit, popularity
from stream.covisit import CovisitParams, CovisitRow, HistoryEntry, decode_scores, encode_scores
from stream.popularity import owner_partition
from stream.records import InteractionEvent

if TYPE_CHECKING:
    from stream.catalog import ModelCatalog

# The binary message (``ItemIncrements.to_bytes``), little-endian: magic; the batch time
# (float64); for the items, the rows and the rows' neighbours, each list's length and the
# byte length of its ids (uint32 each); the three id lists, UTF-8 joined by NUL; the
# items' popularity sums (float64), the rows' sizes (uint32), the neighbours' weights
# (float64). A message whose ids cannot be joined (an id contains NUL) is sent as JSON
# (``ItemIncrements.to_message``), the form of earlier versions, which is still read.
_MESSAGE_MAGIC = b"SII1"
_MESSAGE_HEADER = struct.Struct("<dIIIIII")
_MESSAGE_START = len(_MESSAGE_MAGIC) + _MESSAGE_HEADER.size

# (row, its neighbours, their weights, held at): a row's increments as a message carries them.
RowSlice = tuple[str, Sequence[str], Sequence[float], float]


@dataclass(slots=True)
class ItemIncrements:
    """Popularity sums and co-visitation row sums of a batch, all held at ``ts``."""

    ts: float
    popularity: dict[str, float] = field(default_factory=dict)
    covisits: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def of_batch(
        cls,
        events: Sequence[InteractionEvent],
        event_weights: Mapping[str, float],
        popularity_half_life_s: float,
    ) -> ItemIncrements:
        """A batch's popularity sums, held at its newest event time (0 without events).

        Co-visitation pairs are added as each user's events are applied
        (:meth:`add_interaction`, called by ``interactions.apply_user_events``).
        """
        increments = cls(ts=max((ev.ts for ev in events), default=0.0))
        increments.add_events(events, event_weights, popularity_half_life_s)
        return increments

    def add_events(
        self, events: Iterable[InteractionEvent], event_weights: Mapping[str, float], half_life_s: float
    ) -> None:
        """Add each event's weight to its item's popularity, decayed to ``ts``."""
        ref, scores = self.ts, self.popularity
        for ev in events:
            value = event_weights[ev.type] * ev.weight * math.exp2((ev.ts - ref) / half_life_s)
            scores[ev.item_id] = scores.get(ev.item_id, 0.0) + value

    def add_interaction(
        self, history: Sequence[HistoryEntry], item_id: str, ts: float, params: CovisitParams
    ) -> None:
        """Add the co-visitation pairs of an interaction at ``ts`` to their rows, decayed to
        the batch's time (``self.ts``).

        The pairs are those of ``covisit.pair_increments(history, item_id, ts, params)``,
        each weighted by ``2^((pair time - self.ts) / half-life)``, with the same arithmetic,
        summed as they are formed: a busy batch forms tens of pairs per event, and a list
        of them to sum afterwards cost as much again.
        """
        ref, rows, half_life = self.ts, self.covisits, params.half_life_s
        backward = params.backward_weight
        own = None  # row item_id, which gains its previous items (backward pairs)
        at_event = math.exp2((ts - ref) / half_life)  # the factor of pairs held at ts: most
        for prev_id, weight, pair_ts in covisit.paired_items(history, item_id, ts, params):
            factor = at_event if pair_ts == ts else math.exp2((pair_ts - ref) / half_life)
            row = rows.get(prev_id)
            if row is None:
                rows[prev_id] = {item_id: weight * factor}
            else:
                row[item_id] = row.get(item_id, 0.0) + weight * factor
            if backward > 0.0:
                if own is None:
                    own = rows.setdefault(item_id, {})
                own[prev_id] = own.get(prev_id, 0.0) + weight * backward * factor

    def by_owner(self, partitions: int) -> dict[int, ItemIncrements]:
        """Split by the partition that owns each item (and each row), as Kafka's partitioner would."""
        out: dict[int, ItemIncrements] = {}
        owners: dict[str, int] = {}

        def part(item_id: str) -> ItemIncrements:
            owner = owners.get(item_id)
            if owner is None:
                owner = owners[item_id] = owner_partition(item_id, partitions)
            found = out.get(owner)
            if found is None:
                found = out[owner] = ItemIncrements(self.ts)
            return found

        for item_id, score in self.popularity.items():
            part(item_id).popularity[item_id] = score
        for row_id, row in self.covisits.items():
            part(row_id).covisits[row_id] = row
        return out

    def to_bytes(self) -> bytes:
        """The ``item-interactions`` message value (see ``_MESSAGE_MAGIC``)."""
        rows = self.covisits
        items, row_ids = list(self.popularity), list(rows)
        neighbours = list(chain.from_iterable(rows.values()))
        joined = [covisit.join_ids(ids) for ids in (items, row_ids, neighbours)]
        if any(ids is None for ids in joined):  # an id contains NUL
            return json.dumps(self.to_message(), separators=(",", ":")).encode("utf-8")
        items_ids, row_ids_joined, neighbour_ids = joined
        header = _MESSAGE_HEADER.pack(
            self.ts,
            len(items),
            len(items_ids),
            len(row_ids),
            len(row_ids_joined),
            len(neighbours),
            len(neighbour_ids),
        )
        weights = chain.from_iterable(row.values() for row in rows.values())
        return b"".join(
            (
                _MESSAGE_MAGIC,
                header,
                items_ids,
                row_ids_joined,
                neighbour_ids,
                np.fromiter(self.popularity.values(), dtype="<f8", count=len(items)).tobytes(),
                np.fromiter(map(len, rows.values()), dtype="<u4", count=len(row_ids)).tobytes(),
                np.fromiter(weights, dtype="<f8", count=len(neighbours)).tobytes(),
            )
        )

    def to_message(self) -> dict[str, Any]:
        """The ``item-interactions`` message as JSON (ids as lists, floats as base64
        float64), the form of earlier versions: sent when an id contains NUL."""
        rows = self.covisits
        n_neighbours = sum(len(row) for row in rows.values())
        return {
            "ts": self.ts,
            "items": list(self.popularity),
            "scores": encode_scores(self.popularity.values(), len(self.popularity)),
            "rows": list(rows),
            "sizes": [len(row) for row in rows.values()],
            "neighbours": [n for row in rows.values() for n in row],
            "weights": encode_scores((w for row in rows.values() for w in row.values()), n_neighbours),
        }


@dataclass(frozen=True, slots=True)
class IncrementsMessage:
    """A decoded ``item-interactions`` message: what an owner merges.

    Row ``rows[k]`` holds the next ``sizes[k]`` entries of ``neighbours`` and ``weights``.
    Every sum is held at ``ts``, except in messages of the earliest JSON form, which held
    each item and row at its own time (``item_ts``, ``row_ts``).
    """

    ts: float
    items: Sequence[str]
    scores: Sequence[float]
    rows: Sequence[str] = ()
    sizes: Sequence[int] = ()
    neighbours: Sequence[str] = ()
    weights: Sequence[float] = ()
    item_ts: Sequence[float] | None = None
    row_ts: Sequence[float] | None = None

    def popularity_entries(self) -> Iterator[tuple[str, float, float]]:
        """``(item, decayed sum, held at)`` of each item."""
        times = repeat(self.ts) if self.item_ts is None else self.item_ts
        # Not strict: repeat() is endless, and check() has compared the lengths.
        return zip(self.items, self.scores, times, strict=False)

    def covisit_slices(self) -> Iterator[RowSlice]:
        """``(row, neighbours, weights, held at)`` of each row, sliced as they are merged."""
        times = repeat(self.ts) if self.row_ts is None else self.row_ts
        neighbours, weights = self.neighbours, self.weights
        start = 0
        for row_id, size, ts in zip(self.rows, self.sizes, times, strict=False):
            end = start + size
            yield row_id, neighbours[start:end], weights[start:end], ts
            start = end

    def check(self) -> IncrementsMessage:
        """This message, once its parts are found to agree; else ValueError."""
        if len(self.scores) != len(self.items):
            raise ValueError(f"{len(self.items)} items but {len(self.scores)} scores")
        if len(self.weights) != len(self.neighbours):
            raise ValueError(f"{len(self.neighbours)} neighbours but {len(self.weights)} weights")
        for times, entries in ((self.item_ts, self.items), (self.row_ts, self.rows)):
            if times is not None and len(times) != len(entries):
                raise ValueError(f"{len(entries)} entries but {len(times)} times")
        least = min(self.sizes, default=0)
        if len(self.sizes) != len(self.rows) or least < 0:
            raise ValueError(f"{len(self.rows)} rows but {len(self.sizes)} sizes, the least {least}")
        total = sum(self.sizes)
        if total != len(self.neighbours):
            raise ValueError(f"rows of {total} neighbours in all but {len(self.neighbours)} neighbours")
        return self


def decode_message(raw: bytes) -> IncrementsMessage:
    """An ``item-interactions`` message value: binary, or JSON (either earlier form).

    Raises:
        ValueError: the value is neither, or its parts disagree (lengths, row sizes).
    """
    if raw[: len(_MESSAGE_MAGIC)] == _MESSAGE_MAGIC:
        return _decode_binary(raw).check()
    value = json.loads(raw)
    if not isinstance(value, Mapping):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    try:
        return _decode_json(value).check()
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"a JSON message without a valid {exc}") from exc


def _decode_binary(raw: bytes) -> IncrementsMessage:
    if len(raw) < _MESSAGE_START:
        raise ValueError(f"a message of {len(raw)} bytes, shorter than its header")
    ts, n_items, items_len, n_rows, rows_len, n_neighbours, neighbours_len = _MESSAGE_HEADER.unpack_from(
        raw, len(_MESSAGE_MAGIC)
    )
    # Where each part ends: the three id lists, then the three arrays.
    ends = list(
        accumulate(
            (items_len, rows_len, neighbours_len, 8 * n_items, 4 * n_rows, 8 * n_neighbours),
            initial=_MESSAGE_START,
        )
    )
    if ends[-1] != len(raw):
        raise ValueError(f"a message of {len(raw)} bytes, {ends[-1]} by its header")
    items, rows, neighbours = (covisit.split_ids(raw[ends[i] : ends[i + 1]]) for i in range(3))
    if (len(items), len(rows), len(neighbours)) != (n_items, n_rows, n_neighbours):
        raise ValueError("a message whose id lists do not match its header")
    view = memoryview(raw)
    return IncrementsMessage(
        ts,
        items,
        np.frombuffer(view[ends[3] : ends[4]], dtype="<f8").tolist(),
        rows,
        np.frombuffer(view[ends[4] : ends[5]], dtype="<u4").tolist(),
        neighbours,
        np.frombuffer(view[ends[5] : ends[6]], dtype="<f8").tolist(),
    )


def _decode_json(value: Mapping[str, Any]) -> IncrementsMessage:
    items = value.get("items", ())
    if not isinstance(items, Mapping):  # the form of ``ItemIncrements.to_message``
        return IncrementsMessage(
            float(value["ts"]),
            items,
            decode_scores(value["scores"]),
            value.get("rows", ()),
            value.get("sizes", ()),
            value.get("neighbours", ()),
            decode_scores(value["weights"]) if "rows" in value else (),
        )
    # The earliest form: {"items": {item: {"score", "ref_ts"}}, "covisits": {row: {"ts",
    # "scores": {neighbour: weight}}}}, each sum held at its own time.
    covisits: Mapping[str, Any] = value.get("covisits") or {}
    rows = [entry["scores"] for entry in covisits.values()]
    return IncrementsMessage(
        0.0,
        list(items),
        [float(entry["score"]) for entry in items.values()],
        list(covisits),
        [len(scores) for scores in rows],
        [str(n) for scores in rows for n in scores],
        [float(w) for scores in rows for w in scores.values()],
        item_ts=[float(entry["ref_ts"]) for entry in items.values()],
        row_ts=[float(entry["ts"]) for entry in covisits.values()],
    )


def merge_message(
    message: IncrementsMessage,
    merged: dict[str, tuple[float, float]],
    rows: dict[str, CovisitRow],
    stored_popularity: Callable[[str], tuple[float, float]],
    stored_row: Callable[[str], CovisitRow | None],
    popularity_half_life_s: float,
    covisit_params: CovisitParams,
) -> None:
    """Merge one ``item-interactions`` message into a window's sums, in place.

    ``merged`` holds each item's decayed popularity ``(score, held at)`` and ``rows`` each
    co-visitation row; an entry the window has not touched yet starts from its stored
    value (``stored_popularity``, ``stored_row``), as the item's owner keeps it.
    """
    for item_id, add_score, add_ts in message.popularity_entries():
        score, ref_ts = merged.get(item_id) or stored_popularity(item_id)
        merged[item_id] = popularity.merge(score, ref_ts, add_score, add_ts, popularity_half_life_s)
    for row_id, neighbours, weights, ts in message.covisit_slices():
        row = rows.get(row_id) or stored_row(row_id)
        rows[row_id] = covisit.merge_row_entries(row, neighbours, weights, ts, covisit_params)


def write_window(
    merged: Mapping[str, tuple[float, float]],
    rows: Mapping[str, CovisitRow],
    popularity_table: MutableMapping[str, bytes],
    covisit_table: MutableMapping[str, bytes],
    catalog: ModelCatalog,
    max_neighbours: int,
) -> Iterator[tuple[bool, str, bytes]]:
    """Write one window's merged entries to the statistics tables and this worker's catalog.

    Yields ``(is a co-visitation row, key, value stored)`` after each write, so that the
    owner can pause between writes. Rows are cut to ``max_neighbours`` as published.
    """
    for item_id, (score, ref_ts) in merged.items():
        entry = popularity_table[item_id] = popularity.encode_entry(score, ref_ts)
        catalog.set_popularity(item_id, score, ref_ts)
        yield False, item_id, entry
    for row_id, row in rows.items():
        entry = covisit_table[row_id] = covisit.published_bytes(row, max_neighbours)
        catalog.set_covisits(row_id, entry)  # decoded if a ranking reads it, as replayed rows
        yield True, row_id, entry
