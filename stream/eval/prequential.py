"""Prequential (test-then-train) evaluation of the ranking on a time-ordered stream.

For each scored event (user u, item i), the whole catalog is ranked for u *before* the
event is applied, with the production ranking functions and configuration, and the rank
of i is recorded; then the event is applied to every piece of state (profile,
popularity, co-visitation) with the same pure functions the workers use. Nothing from
the future reaches a score.

Only the metric arithmetic and the bookkeeping live here; ``movielens`` and ``mind``
adapt their datasets to it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.core import popularity
from stream.core.batch import BatchParams, StoredProfiles, apply_batch, apply_user_events
from stream.core.catalog import CatalogIndex
from stream.core.contracts import InteractionEvent
from stream.core.covisit import CovisitParams
from stream.core.formats import decode_message
from stream.core.profiles import ProfileParams, UserProfile
from stream.core.ranking import RankingConfig, rank_catalog_batch
from stream.core.statistics import ItemIncrements
from stream.core.views import CatalogView, UserView
from stream.core.window import StatisticsWindow

METHODS = ("random", "popularity", "content", "covisit", "hybrid")
# Breaks ties among items without co-visitation evidence in the collaborative-only
# ranking, so its fill-in is the popular items rather than arbitrary ones.
TIE_BREAK = 1e-3


def method_configs(
    hybrid: RankingConfig, popularity_half_life_s: float | None = None
) -> dict[str, RankingConfig]:
    """The ranking configuration of each scored method; ``hybrid`` is production's.

    ``popularity_half_life_s`` is the popularity baseline's own half-life (None: the
    production one).
    """
    off = {
        "weight_interest": 0.0,
        "weight_history": 0.0,
        "weight_covisit": 0.0,
        "weight_popularity": 0.0,
        "weight_freshness": 0.0,
        "weight_era": 0.0,
    }
    return {
        "popularity": dataclasses.replace(
            hybrid,
            **{**off, "weight_popularity": 1.0},
            popularity_half_life_s=popularity_half_life_s or hybrid.popularity_half_life_s,
        ),
        "content": dataclasses.replace(
            hybrid,
            **{**off, "weight_interest": hybrid.weight_interest, "weight_history": hybrid.weight_history},
        ),
        "covisit": dataclasses.replace(
            hybrid, **{**off, "weight_covisit": 1.0, "weight_popularity": TIE_BREAK}
        ),
        "hybrid": hybrid,
    }


def rank_metrics(rank: int | None, k: int) -> tuple[float, float, float]:
    """(hit, nDCG, reciprocal rank) at k of one relevant item at 1-based ``rank``."""
    if rank is None or rank > k:
        return 0.0, 0.0, 0.0
    return 1.0, 1.0 / math.log2(rank + 1), 1.0 / rank


@dataclass(slots=True)
class MethodTotals:
    """Running sums of one method's metrics."""

    k: int
    n: int = 0
    hits: float = 0.0
    ndcg: float = 0.0
    mrr: float = 0.0
    recommended: set[str] = field(default_factory=set)

    def add(self, ranked_ids: Sequence[str], target: str) -> None:
        """Score one top-k list against the item the user actually took."""
        top = list(ranked_ids[: self.k])
        rank = top.index(target) + 1 if target in top else None
        hit, ndcg, rr = rank_metrics(rank, self.k)
        self.n += 1
        self.hits += hit
        self.ndcg += ndcg
        self.mrr += rr
        self.recommended.update(top)

    def result(self, catalog_size: int) -> dict[str, float]:
        """HR, nDCG, MRR and catalog coverage at k."""
        n = max(self.n, 1)
        k = self.k
        return {
            f"hr@{k}": self.hits / n,
            f"ndcg@{k}": self.ndcg / n,
            f"mrr@{k}": self.mrr / n,
            f"coverage@{k}": len(self.recommended) / max(catalog_size, 1),
        }


class StreamState:
    """Everything a fleet of workers holds, in one process, updated event by event.

    Events go through ``core.batch.apply_batch`` and their statistics through an
    owner's ``core.window.StatisticsWindow``, the workers' own path: profiles and the
    statistics tables are kept in their stored forms, and the index plays the global
    tables (catalog, popularity, co-visitation) exactly as the workers' changelog
    handlers apply them.

    With ``baseline_popularity_half_life_s``, decayed counts at that half-life are kept
    beside production's for the popularity baseline: a baseline tuned on its own, not
    handicapped by the half-life that suits the hybrid.
    """

    def __init__(
        self,
        index: CatalogIndex,
        profile_params: ProfileParams,
        covisit_params: CovisitParams,
        event_weights: Mapping[str, float],
        popularity_half_life_s: float,
        baseline_popularity_half_life_s: float | None = None,
    ) -> None:
        self.index = index
        self.params = BatchParams(profile_params, covisit_params, dict(event_weights), popularity_half_life_s)
        self.profiles = StoredProfiles()
        self.interacted: dict[str, set[str]] = {}
        self.window = StatisticsWindow({}, {}, popularity_half_life_s, covisit_params)
        self.baseline_popularity_half_life_s = baseline_popularity_half_life_s
        # (score, ref_ts) per catalog row of the baseline's counts.
        self._baseline_rows = np.zeros((0, 2))

    def profile(self, user_id: str) -> UserProfile | None:
        """The user's profile as the ``user-profiles`` table holds it (None: no events yet)."""
        return self.profiles.load(user_id)

    def apply_to_profile(self, user_id: str, events: Sequence[InteractionEvent]) -> None:
        """Apply one user's events to their profile alone (no statistics), e.g. a history
        that seeds it."""
        p = self.params
        update = apply_user_events(
            self.profiles.load(user_id), events, self.index.vector_of, p.profile, p.event_weights, p.covisit
        )
        self.profiles.save(user_id, update.profile)
        self.interacted.setdefault(user_id, set()).update(e.item_id for e in events)

    def apply(self, events: Sequence[InteractionEvent]) -> None:
        """Apply a batch of events as the workers would: profiles, then one owner's window
        of the batch's statistics message, written and replayed into the index."""
        outcome = apply_batch(events, self.profiles, self.index, self.params)
        for user in outcome.users:
            self.interacted.setdefault(user.user_id, set()).update(e.item_id for e in user.events)
        self.window.merge(decode_message(outcome.increments.to_bytes()))
        for _ in self.window.write(self.index):
            pass
        if self.baseline_popularity_half_life_s is not None:
            self._apply_baseline(events)

    def _apply_baseline(self, events: Sequence[InteractionEvent]) -> None:
        half_life = self.baseline_popularity_half_life_s
        increments = ItemIncrements(ts=max(ev.ts for ev in events))
        increments.add_events(events, self.params.event_weights, half_life)
        ids = list(increments.popularity)
        rows = self.index.rows_of(ids)  # every id has a row: production's counts made it
        if rows.max(initial=-1) >= len(self._baseline_rows):
            grown = np.zeros((max(2 * len(self._baseline_rows), int(rows.max()) + 1), 2))
            grown[: len(self._baseline_rows)] = self._baseline_rows
            self._baseline_rows = grown
        for item_id, row in zip(ids, rows, strict=True):
            old_score, old_ts = self._baseline_rows[row]
            self._baseline_rows[row] = popularity.merge(
                old_score, old_ts, increments.popularity[item_id], increments.ts, half_life
            )

    def baseline_catalog(self, catalog: CatalogView) -> CatalogView:
        """``catalog`` with the popularity baseline's counts (itself without a baseline half-life)."""
        if self.baseline_popularity_half_life_s is None:
            return catalog
        n = len(catalog.item_ids)
        counts = np.zeros((n, 2))
        held = min(n, len(self._baseline_rows))
        counts[:held] = self._baseline_rows[:held]
        return dataclasses.replace(catalog, popularity=counts[:, 0], popularity_ref_ts=counts[:, 1])

    def user_view(self, user_id: str, config: RankingConfig) -> UserView:
        """The ranking view of a user, excluding every item the user interacted with."""
        view = self.index.user_view(self.profile(user_id), config.history_items, config.covisit_items)
        seen = self.index.rows_of(self.interacted.get(user_id, ()))
        return dataclasses.replace(view, seen_rows=seen[seen >= 0])


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """An item entering the catalog at ``available_ts`` with its vector."""

    item_id: str
    vector: np.ndarray
    item_ts: float | None
    available_ts: float


def prequential(
    state: StreamState,
    items: Sequence[CatalogItem],
    events: Sequence[InteractionEvent],
    scored: np.ndarray,
    hybrid: RankingConfig,
    *,
    min_history: int = 5,
    k: int = 10,
    seed: int = 0,
    methods: Iterable[str] = METHODS,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, dict[str, dict[str, float]]]:
    """Run the stream once; score the events flagged in ``scored`` before applying them.

    Items enter the catalog once the stream reaches their ``available_ts``. An event
    is scored only when its user has at least ``min_history`` earlier events.

    Returns:
        (number of scored events, metrics per method).
    """
    methods = list(methods)
    configs = method_configs(hybrid, state.baseline_popularity_half_life_s)
    totals = {m: MethodTotals(k) for m in methods}
    rng = np.random.default_rng(seed)
    pending_items = sorted(items, key=lambda it: it.available_ts)
    next_item = 0
    n_scored = 0
    model_id = state.index.model_id
    for position, event in enumerate(events):
        while next_item < len(pending_items) and pending_items[next_item].available_ts <= event.ts:
            item = pending_items[next_item]
            state.index.upsert(item.item_id, item.vector, model_id, item.item_ts)
            next_item += 1
        profile = state.profile(event.user_id)
        if scored[position] and profile is not None and profile.n_events >= min_history:
            n_scored += 1
            catalog = state.index.view()
            # Methods differ in weights only, so they share the user's view.
            view = state.user_view(event.user_id, hybrid)
            for method in methods:
                if method == "random":
                    eligible = catalog.active.copy()
                    eligible[view.seen_rows] = False
                    rows = np.flatnonzero(eligible)
                    pick = rng.choice(rows, size=min(k, rows.size), replace=False)
                    ranked_ids = [catalog.item_ids[r] for r in pick]
                else:
                    method_catalog = state.baseline_catalog(catalog) if method == "popularity" else catalog
                    ranked = rank_catalog_batch([view], method_catalog, [event.ts], configs[method], k)[0]
                    ranked_ids = [r.item_id for r in ranked]
                totals[method].add(ranked_ids, event.item_id)
        state.apply([event])
        if progress is not None:
            progress(position)
    catalog_size = state.index.active_count
    return n_scored, {m: totals[m].result(catalog_size) for m in methods}


def summary_line(n: int, results: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The JSON summary: ``{"n": …, "methods": {method: {metric: value}}}``."""
    return {"n": n, "methods": {m: {key: round(v, 5) for key, v in r.items()} for m, r in results.items()}}
