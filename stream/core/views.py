"""What ranking reads: array views of the catalog and of one user's profile.

``CatalogIndex`` builds both from its arrays; evaluation tools build them from their own
state. Plain numpy containers: no Faust, no Kafka, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class CatalogView:
    """Arrays describing the catalog rows at one moment (row i = ``item_ids[i]``).

    ``vectors`` rows without a vector are zero; ``active`` marks rows that may be
    recommended (have a vector of the current model, not deleted); ``deleted`` marks
    retired items, which are never returned, not even as rerank candidates.
    """

    item_ids: Sequence[str]
    vectors: np.ndarray  # (n, dim) float32, unit rows
    active: np.ndarray  # (n,) bool
    deleted: np.ndarray  # (n,) bool
    item_ts: np.ndarray  # (n,) float64, NaN when unknown
    popularity: np.ndarray  # (n,) float64 decayed score held at popularity_ref_ts
    popularity_ref_ts: np.ndarray  # (n,) float64
    # ``time_groups(item_ts)`` when the index has it at hand; otherwise ranking computes it.
    ts_groups: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True, slots=True)
class UserView:
    """What ranking needs from a profile: interest direction, recent items, seen rows.

    ``covisit_rows``/``covisit_scores`` is the sparse co-visitation evidence of the
    user's recent items (catalog row, summed score); duplicates are allowed.
    ``history_ts`` holds the item time (``ts``, e.g. release date) of each history item,
    NaN when unknown.
    """

    interest: np.ndarray | None  # (dim,) or None for a cold-start user
    history_ids: Sequence[str]  # most recent first, each with a vector
    history_vectors: np.ndarray  # (m, dim)
    seen_rows: np.ndarray  # (s,) int rows excluded from catalog lists
    covisit_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    covisit_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    history_ts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # Cosine of each history item to every catalog row (aligned with history_ids), and of
    # the interest direction to every row, when the catalog index has them at hand;
    # otherwise ranking computes them.
    history_sims: Sequence[np.ndarray] | None = None
    interest_sims: np.ndarray | None = None
