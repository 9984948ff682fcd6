"""What one batch of interaction events does to the state: the one batch path.

A worker's events agent, the offline evaluation and the batch benchmark all apply
events with :func:`apply_batch`, so the evaluation measures what the workers compute:

- each user's events update the user's profile (:func:`apply_user_events`), read from
  and written back to a :class:`ProfileStore`;
- the batch's popularity sums and the co-visitation pairs its events form are summed in
  one ``statistics.ItemIncrements``, which each item's single owner then merges
  (``window.StatisticsWindow``);
- optionally, one top-K list per user, every user of the batch ranked together at the
  batch's newest event time.

Given each event's position in the events topic, a batch applies only what its users'
profiles have not applied yet: a profile records the position of the newest event it
reflects, so a batch read again after a crash or a rebalance changes nothing twice, and
its statistics are summed per events partition, for the owners to recognise
(``window.StatisticsWindow``).

Pure: no Faust, no Kafka. Where the state lives is the caller's (a Faust table, a dict).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from stream.core.catalog import CatalogIndex
from stream.core.contracts import InteractionEvent
from stream.core.covisit import CovisitParams
from stream.core.outputs import RankedItem
from stream.core.profiles import (
    ProfileParams,
    UserProfile,
    VectorLookup,
    fold_events,
    rebuild_interest,
    record_event,
    resolve_pending,
)
from stream.core.ranking import RankingConfig, rank_catalog_batch
from stream.core.statistics import ItemIncrements


class ProfileStore(Protocol):
    """Where profiles are read and written: a worker's ``user-profiles`` table, or a dict."""

    def load(self, user_id: str) -> UserProfile | None:
        """The user's stored profile (None: a new user)."""

    def save(self, user_id: str, profile: UserProfile) -> None:
        """Store the user's updated profile."""


class StoredProfiles:
    """Profiles held in their stored form, as the ``user-profiles`` table holds them.

    Every read decodes and every write encodes, as a worker's do, so that what the
    evaluation and the benchmarks keep is exactly what a worker would.
    """

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.stored

    def __len__(self) -> int:
        return len(self.stored)

    def load(self, user_id: str) -> UserProfile | None:
        """The user's profile, decoded (None: a new user)."""
        raw = self.stored.get(user_id)
        return None if raw is None else UserProfile.from_bytes(raw)

    def save(self, user_id: str, profile: UserProfile) -> None:
        """Store the user's profile, encoded."""
        self.stored[user_id] = profile.to_bytes()


class EventPosition(NamedTuple):
    """Where an event was read: its ``events`` partition and offset."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class BatchParams:
    """What decides a batch's effect on profiles and statistics, built from ``Settings``."""

    profile: ProfileParams
    covisit: CovisitParams
    event_weights: Mapping[str, float]
    popularity_half_life_s: float


@dataclass(slots=True)
class UserUpdate:
    """One user's part of a batch: the updated profile and the events that made it."""

    user_id: str
    profile: UserProfile
    events: list[InteractionEvent]
    unencoded: int = 0  # events on items without a vector yet (kept pending)


@dataclass(slots=True)
class BatchOutcome:
    """What a batch did: per-user updates (in order of first appearance), the item
    statistics increments for the owners by events partition (-1: without positions),
    and the lists when asked for."""

    users: list[UserUpdate]
    by_partition: dict[int, ItemIncrements]
    ranked: list[list[RankedItem]] | None = None
    skipped: int = 0  # events their profiles had applied already

    @property
    def increments(self) -> ItemIncrements:
        """The batch's increments, for a batch without positions (of one partition)."""
        if len(self.by_partition) > 1:
            raise ValueError("a batch of several partitions has increments per partition")
        return next(iter(self.by_partition.values()), ItemIncrements(ts=0.0))

    @property
    def unencoded(self) -> int:
        """Events of the batch on items without a vector yet."""
        return sum(user.unencoded for user in self.users)


@dataclass(slots=True)
class StepClock:
    """Seconds spent per step of :func:`apply_batch`, for the batch benchmark (None: untimed)."""

    seconds: Counter[str] = field(default_factory=Counter)
    _last: float = 0.0

    def start(self) -> None:
        """Start timing the next step."""
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        """Charge the time since the last lap to ``step``."""
        now = time.perf_counter()
        self.seconds[step] += now - self._last
        self._last = now


def apply_batch(
    events: Sequence[InteractionEvent],
    profiles: ProfileStore,
    index: CatalogIndex,
    params: BatchParams,
    *,
    positions: Sequence[EventPosition] | None = None,
    ranking: RankingConfig | None = None,
    clock: StepClock | None = None,
) -> BatchOutcome:
    """Apply a batch of events (any users, any order) to the profiles and statistics.

    Each user's events are applied in time order with ``index``'s vectors (a profile
    built with another model is rebuilt from its history first). With ``ranking``, every
    user of the batch gets one top-K list, ranked together at the batch's newest event
    time: the batch is "now" for every user in it.

    Args:
        positions: each event's position (aligned with ``events``; a user's events all
            come from one partition). An event at or before its profile's recorded
            position is skipped, and each profile records its newest event's. None: every
            event is applied.
    """
    if clock is not None:
        clock.start()
    by_user: dict[str, list[int]] = {}
    for number, event in enumerate(events):
        by_user.setdefault(event.user_id, []).append(number)
    profile_params = dataclasses.replace(params.profile, model_id=index.model_id)
    # Each user's stored profile and the events it has not applied yet.
    pending: list[tuple[str, UserProfile | None, list[InteractionEvent], EventPosition | None]] = []
    skipped = 0
    for user_id, numbers in by_user.items():
        stored = profiles.load(user_id)
        newest = None
        if positions is not None:
            newest = max((positions[n] for n in numbers), key=lambda position: position.offset)
            if stored is not None and stored.partition == newest.partition:
                fresh = [n for n in numbers if positions[n].offset > stored.offset]
                skipped += len(numbers) - len(fresh)
                numbers = fresh
        if numbers:
            pending.append((user_id, stored, [events[n] for n in numbers], newest))
    if clock is not None:
        clock.lap("profile read")
    by_partition: dict[int, list[InteractionEvent]] = {}
    for _, _, user_events, newest in pending:
        by_partition.setdefault(-1 if newest is None else newest.partition, []).extend(user_events)
    increments = {
        partition: ItemIncrements.of_batch(applied, params.event_weights, params.popularity_half_life_s)
        for partition, applied in by_partition.items()
    }
    if clock is not None:
        clock.lap("statistics messages")
    users: list[UserUpdate] = []
    for user_id, stored, user_events, newest in pending:
        update = apply_user_events(
            stored,
            user_events,
            index.vector_of,
            profile_params,
            params.event_weights,
            params.covisit,
            increments[-1 if newest is None else newest.partition],
        )
        if newest is not None:
            update.profile.partition, update.profile.offset = newest
        if clock is not None:
            clock.lap("profile update")
        profiles.save(user_id, update.profile)
        if clock is not None:
            clock.lap("profile write")
        users.append(update)
    outcome = BatchOutcome(users, increments, skipped=skipped)
    if ranking is not None and users:
        views = index.user_views([u.profile for u in users], ranking.history_items, ranking.covisit_items)
        if clock is not None:
            clock.lap("similarity rows")
        now = max(u.profile.last_event_ts for u in users)
        outcome.ranked = rank_catalog_batch(views, index.view(), [now] * len(users), ranking)
        if clock is not None:
            clock.lap("ranking")
    return outcome


def apply_user_events(
    profile: UserProfile | None,
    events: Sequence[InteractionEvent],
    lookup: VectorLookup,
    params: ProfileParams,
    event_weights: Mapping[str, float],
    covisit_params: CovisitParams,
    increments: ItemIncrements | None = None,
) -> UserUpdate:
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
    ordered = sorted(events, key=lambda e: e.ts)
    update = UserUpdate(ordered[0].user_id if ordered else "", profile, list(events))
    if increments is not None:  # paired with the history as each event finds it
        interactions = [(ev.item_id, ev.ts) for ev in ordered]
        increments.add_user_interactions(profile.history, interactions, covisit_params, params.history_size)
    vectors: list[np.ndarray] = []
    weights: list[float] = []
    times: list[float] = []
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
