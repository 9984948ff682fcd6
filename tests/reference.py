"""One-event-at-a-time definitions that the batched production paths are tested against.

Production folds a user's events of a batch in one product (``profiles.fold_events``),
merges a message's row slices at once (``covisit.merge_row_entries``) and pairs a user's
interactions of a batch together (``ItemIncrements.add_user_interactions``); these are
the same operations for one event, written plainly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from stream.core.covisit import CovisitParams, CovisitRow, HistoryEntry, merge_row_entries
from stream.core.profiles import ProfileParams, UserProfile, fold_in, record_event
from stream.core.statistics import ItemIncrements


def apply_event(
    profile: UserProfile,
    item_id: str,
    event_type: str,
    ts: float,
    weight: float,
    item_vector: np.ndarray | None,
    params: ProfileParams,
) -> bool:
    """Apply one interaction to a profile in place; False when it is kept pending."""
    record_event(profile, item_id, event_type, ts, weight, item_vector is not None, params)
    if item_vector is None:
        return False
    if weight > 0:
        if profile.vector is None:
            profile.vector = np.zeros_like(item_vector, dtype=np.float32)
            profile.ref_ts = ts
        vector, profile.mass, profile.ref_ts = fold_in(
            profile.vector, profile.mass, profile.ref_ts, item_vector, weight, ts, params.half_life_s
        )
        profile.vector = vector.astype(np.float32, copy=False)
    return True


def merge_row(
    row: CovisitRow | None, scores: Mapping[str, float], ts: float, params: CovisitParams
) -> CovisitRow:
    """Add scores held at ``ts`` to a row (in place when given) and bound its size."""
    return merge_row_entries(row, list(scores), list(scores.values()), ts, params)


def add_interaction(
    increments: ItemIncrements,
    history: Sequence[HistoryEntry],
    item_id: str,
    ts: float,
    params: CovisitParams,
) -> None:
    """Add the co-visitation pairs of one interaction at ``ts`` after ``history``."""
    increments.add_user_interactions(history, [(item_id, ts)], params)
