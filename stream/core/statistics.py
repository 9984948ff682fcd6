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
from itertools import accumulate, repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.core import covisit, popularity
from stream.core.contracts import InteractionEvent
from stream.core.covisit import (
    CovisitParams,
    CovisitRow,
    HistoryEntry,
    PairSums,
    decode_scores,
    encode_scores,
    run_starts,
)
from stream.core.popularity import owner_partition

if TYPE_CHECKING:
    from stream.core.catalog import ModelCatalog

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


class ItemIncrements:
    """Popularity sums and co-visitation pair sums of a batch, all held at ``ts``.

    Users' interactions are recorded as they are applied (:meth:`add_user_interactions`)
    and paired together, with array operations, when the sums are first read
    (:meth:`pair_sums`).
    """

    __slots__ = ("_history_size", "_pairs", "_params", "_users", "popularity", "ts")

    def __init__(
        self,
        ts: float,
        popularity: dict[str, float] | None = None,
        covisits: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        """Args:
        ts: the time every sum is held at (a batch's newest event time).
        popularity: popularity sums by item.
        covisits: co-visitation sums given as ``{row: {neighbour: value}}``, instead of
            interactions to pair.
        """
        self.ts = ts
        self.popularity: dict[str, float] = {} if popularity is None else popularity
        self._users: list[covisit.UserInteractions] = []
        self._params: CovisitParams | None = None
        self._history_size: int | None = None
        self._pairs: PairSums | None = None if covisits is None else PairSums.of_rows(covisits)

    @classmethod
    def of_batch(
        cls,
        events: Sequence[InteractionEvent],
        event_weights: Mapping[str, float],
        popularity_half_life_s: float,
    ) -> ItemIncrements:
        """A batch's popularity sums, held at its newest event time (0 without events).

        Co-visitation pairs are added as each user's events are applied
        (:meth:`add_user_interactions`, called by ``interactions.apply_user_events``).
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

    def add_user_interactions(
        self,
        history: Sequence[HistoryEntry],
        interactions: Sequence[tuple[str, float]],
        params: CovisitParams,
        history_size: int | None = None,
    ) -> None:
        """Add the co-visitation pairs of a user's interactions, ``(item_id, ts)`` in time
        order, applied one after another after ``history`` (kept to its last
        ``history_size`` entries as they are; None: unbounded).

        The pairs are those of ``covisit.pair_increments`` for each interaction and the
        history just before it, each weighted by ``2^((pair time - self.ts) /
        half-life)``: see ``covisit.form_pairs``, which forms the batch's pairs together.
        """
        if self._users and (params, history_size) != (self._params, self._history_size):
            raise ValueError("a batch's interactions are paired with one set of parameters")
        if self._pairs is not None and not self._users:
            raise ValueError("these increments were given as sums")
        self._params, self._history_size = params, history_size
        self._users.append((list(history), list(interactions)))
        self._pairs = None

    def add_interaction(
        self, history: Sequence[HistoryEntry], item_id: str, ts: float, params: CovisitParams
    ) -> None:
        """Add the co-visitation pairs of one interaction at ``ts`` after ``history``."""
        self.add_user_interactions(history, [(item_id, ts)], params)

    def pair_sums(self) -> PairSums:
        """The co-visitation sums of every interaction added so far, by (row, neighbour)."""
        if self._pairs is None:
            if self._params is None:
                self._pairs = PairSums.of_rows({})
            else:
                self._pairs = covisit.form_pairs(self._users, self._params, self.ts, self._history_size)
        return self._pairs

    @property
    def covisits(self) -> dict[str, dict[str, float]]:
        """The co-visitation sums as ``{row: {neighbour: value}}``, rows in the order formed."""
        return self.pair_sums().to_rows()

    def messages_by_owner(self, partitions: int) -> dict[int, bytes]:
        """The ``item-interactions`` message of each owner partition with increments.

        One message per partition and batch, not one per item, keeps produce calls few.
        Each item and each row goes to the partition Kafka's partitioner gives its id, so
        every forwarder routes an item to the same single owner.
        """
        items_by_owner: dict[int, dict[str, float]] = {}
        for item_id, score in self.popularity.items():
            items_by_owner.setdefault(owner_partition(item_id, partitions), {})[item_id] = score
        rows = _RowsPart.of_sums(self.pair_sums())
        rows_by_owner = rows.by_owner([owner_partition(row_id, partitions) for row_id in rows.row_ids()])
        owners = dict.fromkeys([*items_by_owner, *rows_by_owner])
        no_rows = _RowsPart()
        return {
            owner: _message_bytes(self.ts, items_by_owner.get(owner, {}), rows_by_owner.get(owner, no_rows))
            for owner in owners
        }

    def to_bytes(self) -> bytes:
        """The ``item-interactions`` message value of every increment (see ``_MESSAGE_MAGIC``)."""
        return _message_bytes(self.ts, self.popularity, _RowsPart.of_sums(self.pair_sums()))

    def to_message(self) -> dict[str, Any]:
        """The ``item-interactions`` message as JSON (ids as lists, floats as base64
        float64), the form of earlier versions: sent when an id contains NUL."""
        return _json_message(self.ts, self.popularity, _RowsPart.of_sums(self.pair_sums()))


@dataclass(frozen=True, slots=True)
class _RowsPart:
    """Co-visitation rows as a message carries them: row ``names[rows[k]]`` holds the next
    ``sizes[k]`` entries of ``neighbours`` (numbers into ``names``) and ``values``.

    Ids stay numbers until a message is formed: reordering numbers costs a fraction of
    reordering strings.
    """

    names: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    neighbours: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))

    @classmethod
    def of_sums(cls, sums: PairSums) -> _RowsPart:
        starts = run_starts(sums.rows)
        names = np.empty(len(sums.names), dtype=object)
        names[:] = sums.names
        sizes = np.diff(np.asarray([*starts, len(sums.rows)], dtype=np.int64))
        return cls(names, sums.rows[starts], sizes, sums.neighbours, sums.values)

    def row_ids(self) -> list[str]:
        return self.names[self.rows].tolist()

    def neighbour_ids(self) -> list[str]:
        return self.names[self.neighbours].tolist()

    def by_owner(self, row_owners: list[int]) -> dict[int, _RowsPart]:
        """Split by each row's owner (``row_owners``, aligned with the rows), in order."""
        if len(set(row_owners)) <= 1:
            return {row_owners[0]: self} if row_owners else {}
        owners = np.asarray(row_owners, dtype=np.int64)
        entry_owners = np.repeat(owners, self.sizes)
        parts: dict[int, _RowsPart] = {}
        for owner in sorted(set(row_owners)):  # a mask per owner: partitions are few
            rows, entries = owners == owner, entry_owners == owner
            parts[owner] = _RowsPart(
                self.names, self.rows[rows], self.sizes[rows], self.neighbours[entries], self.values[entries]
            )
        return parts


def _message_bytes(ts: float, popularity: Mapping[str, float], rows: _RowsPart) -> bytes:
    """The binary message of ``popularity`` and ``rows``, or its JSON when an id has NUL."""
    items, row_ids, neighbour_ids = list(popularity), rows.row_ids(), rows.neighbour_ids()
    joined = [covisit.join_ids(ids) for ids in (items, row_ids, neighbour_ids)]
    if any(ids is None for ids in joined):  # an id contains NUL
        return json.dumps(_json_message(ts, popularity, rows), separators=(",", ":")).encode("utf-8")
    items_joined, rows_joined, neighbours_joined = joined
    header = _MESSAGE_HEADER.pack(
        ts,
        len(items),
        len(items_joined),
        len(row_ids),
        len(rows_joined),
        len(neighbour_ids),
        len(neighbours_joined),
    )
    return b"".join(
        (
            _MESSAGE_MAGIC,
            header,
            items_joined,
            rows_joined,
            neighbours_joined,
            np.fromiter(popularity.values(), dtype="<f8", count=len(items)).tobytes(),
            rows.sizes.astype("<u4").tobytes(),
            rows.values.astype("<f8").tobytes(),
        )
    )


def _json_message(ts: float, popularity: Mapping[str, float], rows: _RowsPart) -> dict[str, Any]:
    return {
        "ts": ts,
        "items": list(popularity),
        "scores": encode_scores(popularity.values(), len(popularity)),
        "rows": rows.row_ids(),
        "sizes": rows.sizes.tolist(),
        "neighbours": rows.neighbour_ids(),
        "weights": encode_scores(rows.values.tolist(), len(rows.values)),
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
