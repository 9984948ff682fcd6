"""What one batch of interaction events does to the state: pure functions.

A worker (``agents.update_user_interest``) and the offline evaluation apply events with
these same functions, so the evaluation measures what the workers compute:

- :func:`apply_user_events`: a user's events -> updated profile, and the co-visitation
  pairs they form summed into the batch's ``statistics.ItemIncrements``.

A batch's popularity sums and pair sums are then merged into the item statistics by each
item's single owner (``popularity.merge``, ``covisit.merge_row``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stream.core import covisit
from stream.core.contracts import InteractionEvent
from stream.core.profiles import (
    ProfileParams,
    UserProfile,
    VectorLookup,
    fold_events,
    rebuild_interest,
    record_event,
    resolve_pending,
)
from stream.core.statistics import ItemIncrements


@dataclass(slots=True)
class ProfileUpdate:
    """The outcome of applying a user's events."""

    profile: UserProfile
    unencoded: int = 0  # events on items without a vector yet (kept pending)


def apply_user_events(
    profile: UserProfile | None,
    events: Sequence[InteractionEvent],
    lookup: VectorLookup,
    params: ProfileParams,
    event_weights: Mapping[str, float],
    covisit_params: covisit.CovisitParams,
    increments: ItemIncrements | None = None,
) -> ProfileUpdate:
    """Apply one user's events, in time order, to the profile (in place when given).

    Before the events, a profile built with another model is rebuilt with this model's
    vectors and pending events whose vectors have arrived are folded in. Each event
    forms co-visitation pairs with the user's history just before it, added to
    ``increments`` (the batch's; None: no pairs, e.g. a profile seeded from a history).
    """
    if profile is None:
        profile = UserProfile(model_id=params.model_id)
    if profile.model_id != params.model_id:
        rebuild_interest(profile, lookup, params)
    resolve_pending(profile, lookup, params)
    update = ProfileUpdate(profile)
    vectors: list[np.ndarray] = []
    weights: list[float] = []
    times: list[float] = []
    ordered = sorted(events, key=lambda e: e.ts)
    if increments is not None:  # paired with the history as each event finds it
        interactions = [(ev.item_id, ev.ts) for ev in ordered]
        increments.add_user_interactions(profile.history, interactions, covisit_params, params.history_size)
    for ev in ordered:
        vector = lookup(ev.item_id)
        weight = event_weights[ev.type] * ev.weight
        record_event(profile, ev.item_id, ev.type, ev.ts, weight, vector is not None, params)
        if vector is None:
            update.unencoded += 1
        elif weight > 0:
            vectors.append(vector)
            weights.append(weight)
            times.append(ev.ts)
    # The vectors go in together (the same decayed sum as one by one, in one product).
    fold_events(profile, vectors, weights, times, params.half_life_s)
    return update
