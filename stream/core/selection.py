"""Choosing a list from scores: the top rows, and maximal marginal relevance for diversity.

Pure numpy on one user's scores; no Faust, no Kafka, no I/O.
"""

from __future__ import annotations

import numpy as np


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
