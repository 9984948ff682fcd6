"""A batch's item-statistics increments: formed by the events agent, merged by each owner.

Every increment of a batch is held at one time, the batch's newest event time: a
decayed sum can be held at any time (``popularity.merge`` and ``covisit.merge_row_entries``
move it), and one shared time lets one exponential serve every pair an event forms
instead of one per pair and row.

On the wire (topic ``item-interactions``) a batch's increments are one message per owner
partition, whose form ``stream.core.formats`` defines (``StatisticsMessage``; decoded by
``decode_message`` into an ``IncrementsMessage``). Pure: no Faust, no Kafka.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from stream.core import formats
from stream.core.contracts import InteractionEvent
from stream.core.covisit import CovisitParams, HistoryEntry
from stream.core.pairs import PairSums, UserInteractions, form_pairs, run_starts


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
        self._users: list[UserInteractions] = []
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
        (:meth:`add_user_interactions`, called by ``batch.apply_user_events``).
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

        The pairs are those of ``pairs.pair_increments`` for each interaction and the
        history just before it, each weighted by ``2^((pair time - self.ts) /
        half-life)``: see ``pairs.form_pairs``, which forms the batch's pairs together.
        """
        if self._users and (params, history_size) != (self._params, self._history_size):
            raise ValueError("a batch's interactions are paired with one set of parameters")
        if self._pairs is not None and not self._users:
            raise ValueError("these increments were given as sums")
        self._params, self._history_size = params, history_size
        self._users.append((list(history), list(interactions)))
        self._pairs = None

    def pair_sums(self) -> PairSums:
        """The co-visitation sums of every interaction added so far, by (row, neighbour)."""
        if self._pairs is None:
            if self._params is None:
                self._pairs = PairSums.of_rows({})
            else:
                self._pairs = form_pairs(self._users, self._params, self.ts, self._history_size)
        return self._pairs

    def messages_by_owner(
        self, owner_of: Callable[[str], int], source: formats.SourceRange | None = None
    ) -> dict[int, bytes]:
        """The ``item-interactions`` message of each owner partition with increments.

        ``source`` names the events summed, so that an owner recognises the message if it
        is sent again (``window.StatisticsWindow``).

        One message per partition and batch, not one per item, keeps produce calls few.
        Each item and each row goes to the partition ``owner_of`` gives its id (Kafka's
        partitioner, ``kafka.partitioner.owner_partition``), so every forwarder routes an
        item to the same single owner.
        """
        items_by_owner: dict[int, dict[str, float]] = {}
        for item_id, score in self.popularity.items():
            items_by_owner.setdefault(owner_of(item_id), {})[item_id] = score
        rows = _RowsPart.of_sums(self.pair_sums())
        rows_by_owner = rows.by_owner([owner_of(row_id) for row_id in rows.row_ids()])
        owners = dict.fromkeys([*items_by_owner, *rows_by_owner])
        no_rows = _RowsPart()
        return {
            owner: _message_bytes(
                self.ts, items_by_owner.get(owner, {}), rows_by_owner.get(owner, no_rows), source
            )
            for owner in owners
        }

    def to_bytes(self) -> bytes:
        """The ``item-interactions`` message of every increment, whichever its owner."""
        return _message_bytes(self.ts, self.popularity, _RowsPart.of_sums(self.pair_sums()))


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


def _message_bytes(
    ts: float, popularity: Mapping[str, float], rows: _RowsPart, source: formats.SourceRange | None = None
) -> bytes:
    """The message (``formats.StatisticsMessage``) of ``popularity`` and ``rows``."""
    return formats.encode_increments(
        ts, popularity, rows.names, rows.rows, rows.sizes, rows.neighbours, rows.values, source
    )
