"""Scoring signals: popularity's log scale, item-time groups, era proximity."""

from __future__ import annotations

import numpy as np
import pytest

from stream.core import popularity
from stream.core.signals import era_proximity, normalised_log, time_groups

YEAR = 365.25 * 86400.0


def test_popularity_decays_and_normalises() -> None:
    score, ref = 1.5, 10.0
    merged = popularity.merge(score, ref, 1.0, 20.0, half_life=10.0)
    assert merged == (pytest.approx(1.75), 20.0)
    late = popularity.merge(1.75, 20.0, 1.0, 10.0, half_life=10.0)
    assert late == (pytest.approx(2.25), 20.0)
    assert normalised_log(np.array([0.0, 1.0, 3.0])).tolist() == pytest.approx([0, np.log(2) / np.log(4), 1])
    assert normalised_log(np.zeros(3)).tolist() == [0, 0, 0]


def test_time_groups_gather_back_to_the_item_times() -> None:
    times = np.array([3.0, np.nan, 1.0, 3.0, np.nan, 2.0])
    distinct, inverse = time_groups(times)
    np.testing.assert_array_equal(distinct[:3], [1.0, 2.0, 3.0])
    assert len(distinct) == 4 and np.isnan(distinct[3])  # NaN once, last
    np.testing.assert_array_equal(distinct[inverse], times)


def test_era_proximity_is_the_mean_kernel_over_known_history_times() -> None:
    items = np.array([0.0, 10 * YEAR, np.nan])
    history = np.array([0.0, 10 * YEAR, np.nan])  # the unknown history time is ignored
    prox = era_proximity(items, history, scale=10 * YEAR)
    e = np.exp(-1.0)
    assert prox == pytest.approx([(1 + e) / 2, (e + 1) / 2, 0.0])
    assert era_proximity(items, np.array([np.nan]), 10 * YEAR) == pytest.approx([0.0, 0.0, 0.0])
    assert era_proximity(items, np.zeros(0), 10 * YEAR) == pytest.approx([0.0, 0.0, 0.0])


def test_era_proximity_equals_the_direct_mean_on_random_times() -> None:
    rng = np.random.default_rng(7)
    items = np.concatenate([rng.uniform(0, 50 * YEAR, 500), [np.nan, 0.0, 50 * YEAR]])
    history = np.concatenate([rng.uniform(0, 50 * YEAR, 12), [np.nan, 25 * YEAR, 25 * YEAR]])
    known = history[~np.isnan(history)]
    for scale in (YEAR, 10 * YEAR, 1.0):  # 1 s: every item far from every history time
        direct = np.exp(-np.abs(items[:, None] - known[None, :]) / scale).mean(axis=1)
        assert era_proximity(items, history, scale) == pytest.approx(np.nan_to_num(direct), abs=1e-12)
