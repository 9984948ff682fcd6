"""A batch's item-statistics increments: formed by the events agent, merged by each owner.

Every increment of a batch is held at one time, the batch's newest event time: a
decayed sum can be held at any time (``popularity.merge`` and ``covisit.merge_row``
move it), and one shared time lets one exponential serve every pair an event forms
instead of one per pair and row.

On the wire (topic ``item-interactions``) the ids travel as JSON lists and the values
as base64 float64 arrays: a busy batch forms tens of thousands of co-visitation pairs,
and formatting and parsing that many floats as JSON text cost more than forming them.
Pure: no Faust, no Kafka.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream import covisit, popularity
from stream.covisit import CovisitParams, CovisitRow, HistoryEntry, decode_scores, encode_scores
from stream.popularity import owner_partition
from stream.records import InteractionEvent


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

    def to_message(self) -> dict[str, Any]:
        """The ``item-interactions`` message value."""
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


def popularity_entries(value: Mapping[str, Any]) -> Iterator[tuple[str, float, float]]:
    """``(item, score, held at)`` of an ``item-interactions`` message.

    Also reads the earlier form, ``{"items": {item: {"score", "ref_ts"}}}``, so that a
    worker upgraded with messages of the old form still in the topic loses none.
    """
    items = value.get("items", ())
    if isinstance(items, Mapping):
        for item_id, entry in items.items():
            yield item_id, float(entry["score"]), float(entry["ref_ts"])
        return
    ts = float(value["ts"])
    for item_id, score in zip(items, decode_scores(value["scores"]), strict=True):
        yield item_id, score, ts


def covisit_entries(value: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, float], float]]:
    """``(row, {neighbour: weight}, held at)`` of an ``item-interactions`` message (either form)."""
    for row_id, neighbours, weights, ts in covisit_slices(value):
        yield row_id, dict(zip(neighbours, weights, strict=True)), ts


def covisit_slices(value: Mapping[str, Any]) -> Iterator[tuple[str, Sequence[str], Sequence[float], float]]:
    """``(row, neighbours, weights, held at)`` of an ``item-interactions`` message (either
    form), each row's neighbours distinct and aligned with its weights."""
    legacy = value.get("covisits")
    if isinstance(legacy, Mapping):
        for row_id, entry in legacy.items():
            scores = entry["scores"]
            yield row_id, [str(k) for k in scores], [float(v) for v in scores.values()], float(entry["ts"])
        return
    if "rows" not in value:
        return
    ts = float(value["ts"])
    neighbours: Sequence[str] = value["neighbours"]
    weights = decode_scores(value["weights"])
    if len(weights) != len(neighbours):
        raise ValueError(f"{len(neighbours)} neighbours but {len(weights)} weights")
    sizes: Sequence[int] = value["sizes"]
    if sum(sizes) != len(neighbours):
        raise ValueError(f"rows of {sum(sizes)} neighbours in all but {len(neighbours)} neighbours")
    start = 0
    for row_id, size in zip(value["rows"], sizes, strict=True):
        end = start + size
        yield row_id, neighbours[start:end], weights[start:end], ts
        start = end


def merge_message(
    value: Mapping[str, Any],
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
    for item_id, add_score, add_ts in popularity_entries(value):
        score, ref_ts = merged.get(item_id) or stored_popularity(item_id)
        merged[item_id] = popularity.merge(score, ref_ts, add_score, add_ts, popularity_half_life_s)
    for row_id, neighbours, weights, ts in covisit_slices(value):
        row = rows.get(row_id) or stored_row(row_id)
        rows[row_id] = covisit.merge_row_entries(row, neighbours, weights, ts, covisit_params)
