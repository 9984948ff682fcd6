"""Hybrid scoring and selection of items for a user: pure, vectorised numpy.

score = w_interest * cos(user interest, item)
      + w_history  * max_j cos(recent history item j, item)
      + w_covisit  * co-visitation with the user's recent items, scaled to [0, 1]
      + w_popularity * log1p(decayed popularity) / log1p(max decayed popularity)
      + w_freshness  * 2^(-(now - item ts) / freshness half-life)
      + w_era        * mean over recent history items j of exp(-|item ts - ts_j| / era scale)

The signals are computed in ``stream.core.signals`` and lists chosen from the totals in
``stream.core.selection``; this module weighs the signals, explains each pick and assembles
the lists. Workers and the evaluation tools call the same functions. No Faust, no Kafka, no
I/O; ``stream.config`` is imported for type checking only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stream.core.outputs import RankedItem
from stream.core.selection import mmr_order, top_rows
from stream.core.signals import (
    BestHistoryItem,
    content_similarities,
    covisit_evidence,
    covisit_signal,
    decayed,
    era_proximity,
    freshness,
    normalised_log,
    time_groups,
)
from stream.core.views import CatalogView, UserView

if TYPE_CHECKING:
    from stream.config import Settings


@dataclass(frozen=True, slots=True)
class RankingConfig:
    """Weights and limits of the hybrid score (see ``Settings`` for meanings and defaults)."""

    weight_interest: float
    weight_history: float
    weight_popularity: float
    weight_freshness: float
    weight_covisit: float
    weight_era: float
    era_scale_s: float
    top_k: int
    history_items: int
    covisit_items: int
    popularity_half_life_s: float
    freshness_half_life_s: float
    mmr_lambda: float
    mmr_pool: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RankingConfig:
        """Take the ranking fields of the worker settings."""
        return cls(
            weight_interest=settings.weight_interest,
            weight_history=settings.weight_history,
            weight_popularity=settings.weight_popularity,
            weight_freshness=settings.weight_freshness,
            weight_covisit=settings.weight_covisit,
            weight_era=settings.weight_era,
            era_scale_s=settings.era_scale_s,
            top_k=settings.top_k,
            history_items=settings.history_similarity_items,
            covisit_items=settings.covisit_history_items,
            popularity_half_life_s=settings.popularity_half_life_s,
            freshness_half_life_s=settings.freshness_half_life_s,
            mmr_lambda=settings.mmr_lambda,
            mmr_pool=settings.mmr_pool,
        )


@dataclass(frozen=True, slots=True)
class ScoreParts:
    """Per-candidate score components and their weighted total."""

    interest: np.ndarray
    history: np.ndarray
    history_best: BestHistoryItem
    covisit: np.ndarray
    popularity: np.ndarray
    freshness: np.ndarray
    era: np.ndarray
    total: np.ndarray


def catalog_base(popularity: np.ndarray, fresh: np.ndarray, config: RankingConfig) -> np.ndarray:
    """The part of the score every user shares: weighted popularity and freshness."""
    return config.weight_popularity * popularity + config.weight_freshness * fresh


def weighted_total(
    base: np.ndarray,
    interest: np.ndarray,
    history: np.ndarray,
    covisit: np.ndarray,
    config: RankingConfig,
    era: np.ndarray | None = None,
    covisit_rows: np.ndarray | None = None,
) -> np.ndarray:
    """The hybrid score: ``base`` (see ``catalog_base``) plus the user's weighted terms.

    Built in one new buffer (``base`` is left as it is, so a batch shares it). With
    ``covisit_rows`` (the rows where ``covisit`` may be non-zero), co-visitation is added
    on those rows only: a user's evidence touches tens of rows of the catalog.
    """
    total = base + config.weight_interest * interest
    total += config.weight_history * history
    if era is not None:
        total += config.weight_era * era
    if covisit_rows is None:
        total += config.weight_covisit * covisit
    else:
        total[covisit_rows] += config.weight_covisit * covisit[covisit_rows]
    return total


def score_parts(
    user: UserView,
    vectors: np.ndarray,
    covisit: np.ndarray,
    popularity: np.ndarray,
    fresh: np.ndarray,
    config: RankingConfig,
    era: np.ndarray | None = None,
) -> ScoreParts:
    """Score every row of ``vectors`` for one user.

    Args:
        vectors: (n, dim) unit item vectors (zero rows score 0 on content terms).
        covisit: (n,) co-visitation signal in [0, 1].
        popularity: (n,) normalised popularity in [0, 1].
        fresh: (n,) freshness in [0, 1].
        era: (n,) era proximity in [0, 1], or None (no era term).
    """
    interest, history, best = content_similarities([user], vectors)[0]
    total = weighted_total(catalog_base(popularity, fresh, config), interest, history, covisit, config, era)
    if era is None:
        era = np.zeros_like(popularity, dtype=np.float64)
    return ScoreParts(interest, history, best, covisit, popularity, fresh, era, total)


def reasons(
    parts: ScoreParts, rows: np.ndarray, history_ids: Sequence[str], config: RankingConfig
) -> list[str]:
    """A short reason per selected row, from the score component that contributed most.

    Content (interest + history similarity + era) is explained by the most similar recent
    item (``similar:<item_id>``), or ``interest`` without history; then ``covisited``
    (taken together with the user's recent items by other users), ``trending``
    (popularity) and ``new`` (freshness).
    """
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return []
    # One column per selected row; per row, the first largest contribution wins.
    contributions = np.stack(
        [
            config.weight_interest * parts.interest[rows]
            + config.weight_history * parts.history[rows]
            + config.weight_era * parts.era[rows],
            config.weight_covisit * parts.covisit[rows],
            config.weight_popularity * parts.popularity[rows],
            config.weight_freshness * parts.freshness[rows],
        ]
    )
    tops = contributions.argmax(axis=0)
    largest = contributions[tops, np.arange(len(rows))]
    best = parts.history_best.of_rows(rows) if (tops == 0).any() else np.full(len(rows), -1)
    out = []
    for i, top in enumerate(tops.tolist()):
        if largest[i] <= 0.0:
            out.append("trending")
        elif top == 0:
            b = int(best[i])
            out.append(f"similar:{history_ids[b]}" if b >= 0 else "interest")
        else:
            out.append(("covisited", "trending", "new")[top - 1])
    return out


def _catalog_signals(
    catalog: CatalogView, rows: np.ndarray | slice, now: float, config: RankingConfig
) -> tuple[np.ndarray, np.ndarray]:
    pop_all = decayed(catalog.popularity, catalog.popularity_ref_ts, now, config.popularity_half_life_s)
    # Normalise by the most popular active item so scores compare across calls.
    top = float(pop_all[catalog.active].max(initial=0.0))
    popularity = normalised_log(pop_all[rows], reference_max=top)
    fresh = freshness(catalog.item_ts[rows], now, config.freshness_half_life_s)
    return popularity, fresh


def _era(user: UserView, item_ts: np.ndarray, config: RankingConfig) -> np.ndarray | None:
    if config.weight_era == 0.0:
        return None
    return era_proximity(item_ts, user.history_ts, config.era_scale_s)


def rank_catalog_batch(
    users: Sequence[UserView],
    catalog: CatalogView,
    nows: Sequence[float],
    config: RankingConfig,
    k: int | None = None,
) -> list[list[RankedItem]]:
    """Top-k active catalog items for each user, seen items excluded.

    Scores the whole catalog matrix in place (no copy of the vectors); content similarity
    is computed for all users in two matrix products. Per user, the total is built in one
    buffer: the catalog-wide terms (popularity, freshness) are summed once per ``now``,
    era proximity is computed per distinct item time and gathered, co-visitation touches
    only the rows it scores, and ineligible rows are masked where they are, so a list
    costs a few passes over the catalog. A user without interest or history (cold start)
    gets trending items.

    Args:
        nows: per user, the time at which popularity and freshness are evaluated.
    """
    k = config.top_k if k is None else k
    n = len(catalog.active)
    if n == 0:
        return [[] for _ in users]
    similarities = _batch_similarities(users, catalog, config)
    inactive = np.flatnonzero(~catalog.active)
    n_active = n - inactive.size
    groups = None
    if config.weight_era != 0.0 and users:
        groups = catalog.ts_groups if catalog.ts_groups is not None else time_groups(catalog.item_ts)
    no_era = np.zeros(n) if groups is None else None  # for the reasons, which read every term
    shared: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    out: list[list[RankedItem]] = []
    for user, now, (interest, history, best) in zip(users, nows, similarities, strict=True):
        seen = np.unique(user.seen_rows)
        n_eligible = n_active - int(np.count_nonzero(catalog.active[seen]))
        if n_eligible == 0:
            out.append([])
            continue
        if now not in shared:  # catalog-wide, so shared by users scored at the same time
            popularity, fresh = _catalog_signals(catalog, slice(None), now, config)
            shared[now] = (popularity, fresh, catalog_base(popularity, fresh, config))
        popularity, fresh, base = shared[now]
        era = None
        if groups is not None:
            distinct, inverse = groups
            era = era_proximity(distinct, user.history_ts, config.era_scale_s)[inverse]
        covisit, covisited = covisit_evidence(user, n)
        total = weighted_total(base, interest, history, covisit, config, era, covisited)
        parts = ScoreParts(
            interest, history, best, covisit, popularity, fresh, no_era if era is None else era, total
        )
        # Masked in place: the selected rows are eligible, so parts.total holds their scores.
        total[inactive] = -np.inf
        total[seen] = -np.inf
        out.append(_pick(parts, min(k, n_eligible), n_eligible, catalog, user.history_ids, config))
    return out


def _batch_similarities(
    users: Sequence[UserView], catalog: CatalogView, config: RankingConfig
) -> list[tuple[np.ndarray, np.ndarray, BestHistoryItem]]:
    """Per user, interest and best-history cosine to every catalog row (see content_similarities)."""
    n = len(catalog.active)
    if config.weight_interest == 0.0 and config.weight_history == 0.0:
        # No content term: skip the matrix products (e.g. a collaborative-only ranking).
        zero = np.zeros(n, dtype=np.float32)
        return [(zero, zero, BestHistoryItem(None))] * len(users)
    aligned = all(
        (u.history_sims is None or all(len(r) == n for r in u.history_sims))
        and (u.interest_sims is None or len(u.interest_sims) == n)
        for u in users
    )
    return content_similarities(users, catalog.vectors, catalog_aligned=aligned)


def _pick(
    parts: ScoreParts,
    top: int,
    n_eligible: int,
    catalog: CatalogView,
    history_ids: Sequence[str],
    config: RankingConfig,
) -> list[RankedItem]:
    """The ``top`` best rows of ``parts.total`` (ineligible rows at -inf), in MMR order."""
    total = parts.total
    pool_size = min(n_eligible, max(top, config.mmr_pool if config.mmr_lambda < 1.0 else top))
    pool = top_rows(total, pool_size)
    order = pool[mmr_order(total[pool], catalog.vectors[pool], top, config.mmr_lambda)]
    why = reasons(parts, order, history_ids, config)
    return [RankedItem(catalog.item_ids[row], float(total[row]), why[j]) for j, row in enumerate(order)]


def rank_candidates(
    user: UserView,
    catalog: CatalogView,
    candidate_ids: Sequence[str],
    candidate_rows: np.ndarray,
    now: float,
    config: RankingConfig,
    k: int | None = None,
) -> list[RankedItem]:
    """Reorder exactly the given candidates for a user (duplicates kept once).

    Candidates unknown to the catalog (row -1) or without a vector are scored on
    popularity and freshness only and explained as ``unknown``; deleted items are
    dropped, since a retired item is never recommended.
    """
    seen_ids: set[str] = set()
    keep: list[int] = []
    for i, item_id in enumerate(candidate_ids):
        if item_id in seen_ids:
            continue
        seen_ids.add(item_id)
        row = candidate_rows[i]
        if row >= 0 and catalog.deleted[row]:
            continue
        keep.append(i)
    idx = np.asarray(keep, dtype=np.int64)
    rows = candidate_rows[idx]
    known = rows >= 0
    dim = catalog.vectors.shape[1] if catalog.vectors.ndim == 2 else 0
    vectors = np.zeros((idx.size, dim), dtype=np.float32)
    vectors[known] = catalog.vectors[rows[known]]
    popularity = np.zeros(idx.size)
    fresh = np.zeros(idx.size)
    covisit = np.zeros(idx.size)
    era = np.zeros(idx.size)
    if known.any():
        popularity[known], fresh[known] = _catalog_signals(catalog, rows[known], now, config)
        covisit[known] = covisit_signal(user, len(catalog.active))[rows[known]]
        known_era = _era(user, catalog.item_ts[rows[known]], config)
        if known_era is not None:
            era[known] = known_era
    parts = score_parts(user, vectors, covisit, popularity, fresh, config, era)
    order = mmr_order(parts.total, vectors, min(k or idx.size, idx.size), config.mmr_lambda)
    why = reasons(parts, order, user.history_ids, config)
    has_vector = vectors.any(axis=1)
    return [
        RankedItem(
            candidate_ids[idx[i]],
            float(parts.total[i]),
            why[j] if has_vector[i] else "unknown",
        )
        for j, i in enumerate(order)
    ]
