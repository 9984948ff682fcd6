"""Hybrid scoring and selection of items for a user: pure, vectorised numpy.

score = w_interest * cos(user interest, item)
      + w_history  * max_j cos(recent history item j, item)
      + w_covisit  * co-visitation with the user's recent items, scaled to [0, 1]
      + w_popularity * log1p(decayed popularity) / log1p(max decayed popularity)
      + w_freshness  * 2^(-(now - item ts) / freshness half-life)
      + w_era        * mean over recent history items j of exp(-|item ts - ts_j| / era scale)

Workers and the evaluation tools call the same functions. No Faust, no Kafka, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from stream.core.contracts import RankedItem

if TYPE_CHECKING:
    from stream.config import Settings


@dataclass(frozen=True, slots=True)
class RankingConfig:
    """Weights and limits of the hybrid score (see ``Settings`` for meanings)."""

    weight_interest: float = 0.45
    weight_history: float = 0.35
    weight_popularity: float = 0.15
    weight_freshness: float = 0.05
    weight_covisit: float = 0.0
    weight_era: float = 0.0
    era_scale_s: float = 10 * 365.25 * 86400.0
    top_k: int = 10
    history_items: int = 10
    covisit_items: int = 10
    popularity_half_life_s: float = 7 * 86400.0
    freshness_half_life_s: float = 365 * 86400.0
    mmr_lambda: float = 1.0
    mmr_pool: int = 100

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


class BestHistoryItem:
    """For a catalog row, the index (into ``UserView.history_ids``) of the most similar
    recent item, or -1 without history.

    Found on demand: only the rows of a list need it (for their reasons), and an argmax
    over the whole (history x catalog) block costs more than the block's max.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: Sequence[np.ndarray] | np.ndarray | None) -> None:
        self._rows = rows  # the m history items' similarities to every row, or None

    def of_rows(self, rows: np.ndarray) -> np.ndarray:
        """The best history index of each of ``rows`` (ties: the earlier history item)."""
        if self._rows is None or len(self._rows) == 0:
            return np.full(len(rows), -1, dtype=np.int64)
        return np.stack([sims[rows] for sims in self._rows]).argmax(axis=0)


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


def decayed(values: np.ndarray, ref_ts: np.ndarray, now: float, half_life: float) -> np.ndarray:
    """Values held at ``ref_ts`` decayed to ``now`` (never grown for ref_ts > now)."""
    return values * np.exp2(-np.maximum(now - ref_ts, 0.0) / half_life)


def normalised_log(values: np.ndarray, reference_max: float | None = None) -> np.ndarray:
    """log1p(values) scaled to [0, 1] by the log1p of the maximum."""
    top = float(values.max(initial=0.0)) if reference_max is None else reference_max
    if top <= 0.0:
        return np.zeros_like(values, dtype=np.float64)
    return np.log1p(np.maximum(values, 0.0)) / np.log1p(top)


def freshness(item_ts: np.ndarray, now: float, half_life: float) -> np.ndarray:
    """1 for an item born now, halving every half-life; 0 when the birth time is unknown."""
    fresh = np.exp2(-np.maximum(now - item_ts, 0.0) / half_life)
    return np.nan_to_num(fresh, nan=0.0)


def era_proximity(item_ts: np.ndarray, history_ts: np.ndarray, scale: float) -> np.ndarray:
    """Mean over the user's recent items of exp(-|item ts - their ts| / scale), in [0, 1].

    Items tend to be taken in runs from one period (films of one decade, news of one
    week). History items and candidates with an unknown time (NaN) contribute 0.

    Exact in O(n log h) rather than O(n h): with the h history times sorted, the kernel
    sums below and above each item's time are running sums, one exponential per item and
    side instead of one per item and history entry. Every exponent is <= 0, so nothing
    overflows whatever the scale.
    """
    known = np.sort(history_ts[~np.isnan(history_ts)])
    m = known.size
    if m == 0:
        return np.zeros(item_ts.shape, dtype=np.float64)
    steps = np.exp(-np.diff(known) / scale)
    # below[k] = sum_{j<=k} exp(-(t_k - t_j)/s); above[k] = sum_{j>=k} exp(-(t_j - t_k)/s)
    below, above = np.ones(m), np.ones(m)
    for k in range(1, m):
        below[k] += below[k - 1] * steps[k - 1]
    for k in range(m - 2, -1, -1):
        above[k] += above[k + 1] * steps[k]
    pos = np.searchsorted(known, item_ts, side="right")  # history times <= item time; NaN -> m
    has_below, has_above = pos > 0, pos < m
    lo, hi = np.maximum(pos - 1, 0), np.minimum(pos, m - 1)
    with np.errstate(invalid="ignore"):
        gap_below = np.where(has_below, item_ts - known[lo], np.inf)
        gap_above = np.where(has_above, known[hi] - item_ts, np.inf)
        total = np.exp(-gap_below / scale) * below[lo] + np.exp(-gap_above / scale) * above[hi]
    return np.nan_to_num(total / m, nan=0.0)


def time_groups(item_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct item times (NaN once, last) and each row's index into them.

    Terms that depend on an item only through its time are computed once per distinct
    time and gathered: a film catalog has a few hundred release dates for ten thousand
    items. Without repeated times it costs one sort.
    """
    distinct, inverse = np.unique(item_ts, return_inverse=True)
    return distinct, inverse.reshape(-1)


def interest_direction(interest: np.ndarray | None) -> np.ndarray | None:
    """The unit vector of an interest, or None without one (cold start, zero vector)."""
    norm = 0.0 if interest is None else float(np.linalg.norm(interest))
    return None if interest is None or norm == 0.0 else (interest / norm).astype(np.float32, copy=False)


def content_similarities(
    users: Sequence[UserView], vectors: np.ndarray, catalog_aligned: bool = False
) -> list[tuple[np.ndarray, np.ndarray, BestHistoryItem]]:
    """Interest and best-history cosine of every row of ``vectors``, for many users at once.

    Two matrix-matrix products for the whole batch instead of matrix-vector products per
    user: the catalog matrix is read once per batch, which is what bounds this on CPU.
    With ``catalog_aligned`` (``vectors`` is the whole catalog view the users' views were
    built on), users' precomputed ``interest_sims`` and ``history_sims`` are used instead
    (the index computes them in one product, see ``CatalogIndex.user_views``).

    Returns:
        Per user: (interest (n,), history (n,), which history item is the best match).
    """
    n = vectors.shape[0]
    given_interest = [catalog_aligned and u.interest_sims is not None for u in users]
    directions = [
        None if g else interest_direction(u.interest) for u, g in zip(users, given_interest, strict=True)
    ]
    wanted = [d for d in directions if d is not None]
    interest_product = iter(np.stack(wanted) @ vectors.T if wanted else ())
    # Users whose history rows were handed in (aligned with ``vectors``) skip the product.
    given = [catalog_aligned and u.history_sims is not None for u in users]
    counts = [0 if g else len(u.history_ids) for u, g in zip(users, given, strict=True)]
    history_sims = None
    if sum(counts):
        history_sims = (
            np.concatenate([u.history_vectors for u, m in zip(users, counts, strict=True) if m]) @ vectors.T
        )
    out = []
    offset = 0
    for i, (user, m) in enumerate(zip(users, counts, strict=True)):
        if given_interest[i]:
            interest = user.interest_sims
        elif directions[i] is not None:
            interest = next(interest_product)
        else:
            interest = np.zeros(n, dtype=np.float32)
        if given[i] and user.history_ids:
            rows = user.history_sims
            history, best = _row_max(rows), BestHistoryItem(rows)
        elif m:
            block = history_sims[offset : offset + m]
            history, best = block.max(axis=0), BestHistoryItem(block)
            offset += m
        else:
            history, best = np.zeros(n, dtype=np.float32), BestHistoryItem(None)
        out.append((interest, history, best))
    return out


def _row_max(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Element-wise maximum of equal-length rows, in one buffer."""
    out = rows[0].copy()
    for row in rows[1:]:
        np.maximum(out, row, out=out)
    return out


def covisit_signal(user: UserView, n: int) -> np.ndarray:
    """The user's co-visitation evidence as a dense (n,) array scaled to [0, 1]."""
    return _covisit_evidence(user, n)[0]


def _covisit_evidence(user: UserView, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(dense (n,) co-visitation signal in [0, 1], the rows where it is not zero)."""
    if not len(user.covisit_rows):
        return np.zeros(n), np.zeros(0, np.int64)
    inside = user.covisit_rows < n  # rows added to the index after the view was taken
    rows = user.covisit_rows[inside]
    dense = np.bincount(rows, weights=user.covisit_scores[inside], minlength=n)
    rows = np.unique(rows)
    top = float(dense[rows].max(initial=0.0))
    if top > 0.0:
        dense[rows] /= top
    return dense, rows


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


def combine(
    interest: np.ndarray,
    history: np.ndarray,
    best: BestHistoryItem,
    covisit: np.ndarray,
    popularity: np.ndarray,
    fresh: np.ndarray,
    config: RankingConfig,
    era: np.ndarray | None = None,
) -> ScoreParts:
    """The score components and their weighted total (``era`` None: no era term)."""
    total = weighted_total(catalog_base(popularity, fresh, config), interest, history, covisit, config, era)
    if era is None:
        era = np.zeros_like(popularity, dtype=np.float64)
    return ScoreParts(interest, history, best, covisit, popularity, fresh, era, total)


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
        era: (n,) era proximity in [0, 1], or None.
    """
    interest, history, best = content_similarities([user], vectors)[0]
    return combine(interest, history, best, covisit, popularity, fresh, config, era)


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


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Maximal marginal relevance: greedily pick argmax lam*rel - (1-lam)*max sim to picked.

    Args:
        relevance: (n,) scores of the pool.
        vectors: (n, dim) unit vectors of the pool.

    Returns:
        Indices into the pool, in selection order (at most k).
    """
    n = len(relevance)
    k = min(k, n)
    if lam >= 1.0 or k <= 1:
        return np.argsort(-relevance, kind="stable")[:k]
    chosen: list[int] = []
    max_sim = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool)
    for _ in range(k):
        redundancy = np.where(np.isinf(max_sim), 0.0, max_sim)
        value = lam * relevance - (1.0 - lam) * redundancy
        value[~available] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        available[pick] = False
        max_sim = np.maximum(max_sim, vectors @ vectors[pick])
    return np.asarray(chosen, dtype=np.int64)


def top_rows(scores: np.ndarray, count: int) -> np.ndarray:
    """Rows of the ``count`` highest scores, in row order; ties go to the lower row.

    A partial sort alone leaves which of several equal scores make the cut to the sort's
    internals; ranking a stable order after this makes equal scores rank by catalog row.
    """
    n = len(scores)
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    if count >= n:
        return np.arange(n)
    threshold = np.partition(scores, n - count)[n - count]
    above = np.flatnonzero(scores > threshold)
    tied = np.flatnonzero(scores == threshold)[: count - above.size]
    return np.sort(np.concatenate([above, tied]))


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


def rank_catalog(
    user: UserView, catalog: CatalogView, now: float, config: RankingConfig, k: int | None = None
) -> list[RankedItem]:
    """Top-k active catalog items for a user, seen items excluded (see rank_catalog_batch)."""
    return rank_catalog_batch([user], catalog, [now], config, k)[0]


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
    if config.weight_interest == 0.0 and config.weight_history == 0.0:
        # No content term: skip the matrix products (e.g. a collaborative-only ranking).
        zero = np.zeros(n, dtype=np.float32)
        similarities = [(zero, zero, BestHistoryItem(None))] * len(users)
    else:
        aligned = all(
            (u.history_sims is None or all(len(r) == n for r in u.history_sims))
            and (u.interest_sims is None or len(u.interest_sims) == n)
            for u in users
        )
        similarities = content_similarities(users, catalog.vectors, catalog_aligned=aligned)
    inactive = np.flatnonzero(~catalog.active)
    n_active = n - inactive.size
    groups = None
    if config.weight_era != 0.0 and users:
        groups = catalog.ts_groups if catalog.ts_groups is not None else time_groups(catalog.item_ts)
    no_era = np.zeros(n) if groups is None else None  # for the reasons, which read every term
    signals: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    out: list[list[RankedItem]] = []
    for user, now, (interest, history, best) in zip(users, nows, similarities, strict=True):
        seen = np.unique(user.seen_rows)
        n_eligible = n_active - int(np.count_nonzero(catalog.active[seen]))
        if n_eligible == 0:
            out.append([])
            continue
        if now not in signals:  # catalog-wide, so shared by users scored at the same time
            popularity, fresh = _catalog_signals(catalog, slice(None), now, config)
            signals[now] = (popularity, fresh, catalog_base(popularity, fresh, config))
        popularity, fresh, base = signals[now]
        era = None
        if groups is not None:
            distinct, inverse = groups
            era = era_proximity(distinct, user.history_ts, config.era_scale_s)[inverse]
        covisit, covisited = _covisit_evidence(user, n)
        total = weighted_total(base, interest, history, covisit, config, era, covisited)
        parts = ScoreParts(
            interest, history, best, covisit, popularity, fresh, no_era if era is None else era, total
        )
        # Masked in place: the selected rows are eligible, so parts.total holds their scores.
        total[inactive] = -np.inf
        total[seen] = -np.inf
        top = min(k, n_eligible)
        pool_size = min(n_eligible, max(top, config.mmr_pool if config.mmr_lambda < 1.0 else top))
        pool = top_rows(total, pool_size)
        order = pool[mmr_order(total[pool], catalog.vectors[pool], top, config.mmr_lambda)]
        why = reasons(parts, order, user.history_ids, config)
        out.append(
            [
                RankedItem(catalog.item_ids[row], float(parts.total[row]), why[j])
                for j, row in enumerate(order)
            ]
        )
    return out


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
