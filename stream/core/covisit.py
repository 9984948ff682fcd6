"""Item-to-item co-visitation learned in the stream: pure functions.

When a user interacts with item ``i``, each of the user's ``window`` previous items
``j`` (within ``window_s`` seconds) is paired with it: row ``j`` gains ``i`` ("after
j, people took i") and row ``i`` gains ``j`` with ``backward_weight``. Nearer pairs
count more (weight ``1 / distance``). Rows are time-decayed and bounded to the
``max_neighbours`` strongest entries, so memory is O(items x max_neighbours).

Rows use forward decay: scores are held at a per-row ``landmark`` time and an increment
at time ``t`` is scaled up by ``2^((t - landmark)/half_life)`` instead of decaying every
entry, so an update touches only the entries it changes. The row is rebased when that
factor grows large. Comparisons inside a row are unaffected by the landmark.

The workers and the evaluation call the same functions. No Faust, no Kafka, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from stream.core import formats

if TYPE_CHECKING:
    from stream.config import Settings

# Rebase a row once its increments are scaled by more than 2^REBASE_EXPONENT, long
# before float64 (max ~2^1023) could overflow.
REBASE_EXPONENT = 64.0

# (item_id, ts, weight) as in a profile's history.
HistoryEntry = tuple[str, float, float]
# (row item, neighbour item, weight, ts)
PairIncrement = tuple[str, str, float, float]


@dataclass(frozen=True, slots=True)
class CovisitParams:
    """How co-visitation pairs are formed, aged and bounded (see ``Settings`` for defaults)."""

    window: int
    window_s: float
    backward_weight: float
    half_life_s: float
    max_neighbours: int

    @classmethod
    def from_settings(cls, settings: Settings) -> CovisitParams:
        """Take the co-visitation fields of the worker settings."""
        return cls(
            window=settings.covisit_window,
            window_s=settings.covisit_window_s,
            backward_weight=settings.covisit_backward_weight,
            half_life_s=settings.covisit_half_life_s,
            max_neighbours=settings.covisit_max_neighbours,
        )


@dataclass(slots=True)
class CovisitRow:
    """One item's strongest co-visited neighbours, scores held at ``landmark``."""

    landmark: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    position: int = -1  # the last item-interactions offset merged (formats.StoredRow)

    def to_bytes(self) -> bytes:
        """The form stored in the ``item-covisits`` table (``formats.StoredRow``)."""
        values = np.fromiter(self.scores.values(), dtype=np.float64, count=len(self.scores))
        return formats.encode_row(self.landmark, list(self.scores), values, self.position)

    @classmethod
    def from_bytes(cls, data: bytes) -> CovisitRow:
        """Inverse of :meth:`to_bytes`.

        Raises:
            formats.FormatError: ``data`` is not a stored row.
        """
        return cls(*formats.decode_row(data))


def stored_row(value: bytes | None) -> CovisitRow | None:
    """An ``item-covisits`` table value as a row (None: no row stored)."""
    return None if value is None else CovisitRow.from_bytes(value)


def merge_row_entries(
    row: CovisitRow | None,
    neighbours: Iterable[str],
    values: Iterable[float],
    ts: float,
    params: CovisitParams,
) -> CovisitRow:
    """Add scores held at ``ts`` to a row (in place when given) and bound its size.

    The scores come as two aligned sequences (neighbours distinct), as a statistics
    message carries them: no dict is built per row and message. The row keeps at most
    ``max_neighbours`` entries once pruned; pruning runs when it holds twice that, so
    its cost is amortised over many updates.
    """
    if row is None or not row.scores:
        row = CovisitRow(landmark=ts, scores={})
    exponent = (ts - row.landmark) / params.half_life_s
    if exponent > REBASE_EXPONENT:
        shrink = math.exp2(-exponent)
        row.scores = {k: v * shrink for k, v in row.scores.items() if v * shrink > 0.0}
        row.landmark = ts
        exponent = 0.0
    scale = math.exp2(exponent)
    current = row.scores
    get = current.get
    for neighbour, value in zip(neighbours, values):  # noqa: B905 - aligned by the caller
        current[neighbour] = get(neighbour, 0.0) + value * scale
    if len(current) > 2 * params.max_neighbours:
        prune(row, params.max_neighbours)
    return row


def published(row: CovisitRow, max_neighbours: int) -> CovisitRow:
    """The row as stored and scored: its ``max_neighbours`` strongest entries, strongest first.

    An owner's row holds up to twice that between prunes (:func:`merge_row_entries`); what is
    written to the table, and so what every worker and the evaluation score, is bounded.
    Of equal scores the earlier entry is kept (see :func:`_strongest`).
    """
    if len(row.scores) <= max_neighbours:
        return row
    ids, values = _strongest(row, max_neighbours)
    return CovisitRow(row.landmark, dict(zip(ids, values.tolist(), strict=True)), row.position)


def published_bytes(row: CovisitRow, max_neighbours: int) -> bytes:
    """``published(row, max_neighbours).to_bytes()``, without building the cut row.

    What a statistics window writes for each row it touched: the array the cut leaves is
    the one stored.
    """
    return formats.encode_row(row.landmark, *_strongest(row, max_neighbours), row.position)


def _strongest(row: CovisitRow, max_neighbours: int) -> tuple[list[str], np.ndarray]:
    """A row's ids and scores (float64), cut to its ``max_neighbours`` strongest entries,
    strongest first, when it holds more; as they are otherwise.

    A stable argsort of the scores as an array, so of equal scores the earlier entry is
    kept: a fraction of the cost of sorting the row's items, and this runs for most rows
    of every statistics window.
    """
    scores = row.scores
    values = np.fromiter(scores.values(), dtype="<f8", count=len(scores))
    ids = list(scores)
    if len(ids) > max_neighbours:
        order = np.argsort(-values, kind="stable")[:max_neighbours]
        values = values[order]
        ids = [ids[i] for i in order.tolist()]
    return ids, values


def prune(row: CovisitRow, max_neighbours: int) -> None:
    """Keep the ``max_neighbours`` strongest entries of a row (in place)."""
    row.scores = published(row, max_neighbours).scores
