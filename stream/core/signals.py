"""The per-item signals of the hybrid score, each computed for a whole catalog at once.

Content similarity (interest and recent items), co-visitation evidence, decayed
popularity, freshness and era proximity: pure, vectorised numpy, combined with the
configured weights by ``stream.core.ranking``. No Faust, no Kafka, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stream.core.views import UserView


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
    return covisit_evidence(user, n)[0]


def covisit_evidence(user: UserView, n: int) -> tuple[np.ndarray, np.ndarray]:
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
