"""Choosing a list from scores: top rows with ties by catalog row, and MMR."""

from __future__ import annotations

import numpy as np

from stream.core.selection import mmr_order, top_rows


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_mmr_diversifies() -> None:
    vecs = np.stack([unit(1, 0), unit(1, 0.01), unit(0, 1)])
    rel = np.array([1.0, 0.99, 0.6])
    assert list(mmr_order(rel, vecs, 2, 1.0)) == [0, 1]
    assert list(mmr_order(rel, vecs, 2, 0.5)) == [0, 2]


def test_top_rows_breaks_ties_by_catalog_row() -> None:
    scores = np.array([1.0, 3.0, 2.0, 2.0, -np.inf, 2.0, 3.0])
    np.testing.assert_array_equal(top_rows(scores, 3), [1, 2, 6])  # of the three 2.0s, row 2
    np.testing.assert_array_equal(top_rows(scores, 4), [1, 2, 3, 6])
    np.testing.assert_array_equal(top_rows(np.zeros(5), 2), [0, 1])
    np.testing.assert_array_equal(top_rows(scores, 9), np.arange(7))
    assert top_rows(scores, 0).size == 0
