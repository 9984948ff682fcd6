"""Ranking: seen-filter, cold start, candidate mode, MMR, reasons, the weighted score."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stream.core.catalog import CatalogIndex
from stream.core.covisit import CovisitRow
from stream.core.outputs import RankedItem
from stream.core.profiles import ProfileParams, UserProfile
from stream.core.ranking import (
    RankingConfig,
    ScoreParts,
    rank_candidates,
    rank_catalog_batch,
    reasons,
    score_parts,
    weighted_total,
)
from stream.core.signals import (
    BestHistoryItem,
    covisit_signal,
    decayed,
    era_proximity,
    freshness,
    normalised_log,
)
from stream.core.views import CatalogView, UserView
from tests.params import ranking_config
from tests.reference import apply_event

DAY = 86400.0
CONFIG = ranking_config(top_k=3, popularity_half_life_s=7 * DAY)
PARAMS = ProfileParams(half_life_s=30 * DAY, history_size=50, pending_size=10, model_id="m")


def rank_one(
    user: UserView, catalog: CatalogView, now: float, config: RankingConfig, k: int | None = None
) -> list[RankedItem]:
    """One user's list, ranked as part of a batch of one."""
    return rank_catalog_batch([user], catalog, [now], config, k)[0]


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def index() -> CatalogIndex:
    """Two clusters: sci-fi along x, romance along y; r3 is very popular."""
    idx = CatalogIndex("m", 3)
    for item, vec in {
        "s1": unit(1, 0.05, 0),
        "s2": unit(1, 0.1, 0),
        "s3": unit(1, 0, 0.1),
        "s4": unit(1, 0.2, 0.1),
        "r1": unit(0.05, 1, 0),
        "r2": unit(0.1, 1, 0),
        "r3": unit(0, 1, 0.1),
    }.items():
        idx.upsert(item, vec, "m", ts=0.0)
    idx.set_popularity("r3", 50.0, 10 * DAY)
    idx.set_popularity("r1", 5.0, 10 * DAY)
    return idx


def profile_of(index: CatalogIndex, items: list[str]) -> UserProfile:
    p = UserProfile(model_id="m")
    for t, item in enumerate(items):
        apply_event(p, item, "click", 10 * DAY + t, 1.0, index.vector_of(item), PARAMS)
    return p


def test_user_gets_their_cluster_and_no_seen_items(index: CatalogIndex) -> None:
    p = profile_of(index, ["s1", "s2"])
    ranked = rank_one(index.user_view(p, 10), index.view(), now=10 * DAY, config=CONFIG)
    ids = [r.item_id for r in ranked]
    assert ids[:2] == ["s3", "s4"] or set(ids[:2]) == {"s3", "s4"}
    assert not {"s1", "s2"} & set(ids)
    assert ranked[0].reason.startswith("similar:s")
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)


def test_cold_start_gets_trending(index: CatalogIndex) -> None:
    ranked = rank_one(index.user_view(None, 10), index.view(), now=10 * DAY, config=CONFIG)
    assert [r.item_id for r in ranked[:2]] == ["r3", "r1"]
    assert ranked[0].reason == "trending"


def test_deleted_items_are_never_recommended(index: CatalogIndex) -> None:
    index.delete("s3")
    p = profile_of(index, ["s1"])
    view = index.view()
    assert "s3" not in [r.item_id for r in rank_one(index.user_view(p, 10), view, 10 * DAY, CONFIG, k=10)]
    cands = ["s3", "r1", "s2"]
    out = rank_candidates(index.user_view(p, 10), view, cands, index.rows_of(cands), 10 * DAY, CONFIG)
    assert sorted(r.item_id for r in out) == ["r1", "s2"]


def test_candidate_mode_returns_exactly_the_candidates_reordered(index: CatalogIndex) -> None:
    p = profile_of(index, ["r1"])
    cands = ["s1", "r2", "never-seen", "s2", "r2"]
    out = rank_candidates(index.user_view(p, 10), index.view(), cands, index.rows_of(cands), 10 * DAY, CONFIG)
    assert sorted(r.item_id for r in out) == sorted({"s1", "r2", "never-seen", "s2"})
    assert out[0].item_id == "r2"
    assert next(r for r in out if r.item_id == "never-seen").reason == "unknown"
    limited = rank_candidates(
        index.user_view(p, 10), index.view(), cands, index.rows_of(cands), 10 * DAY, CONFIG, k=2
    )
    assert [r.item_id for r in limited] == [r.item_id for r in out[:2]]


def test_candidate_mode_does_not_filter_seen(index: CatalogIndex) -> None:
    p = profile_of(index, ["s1"])
    out = rank_candidates(
        index.user_view(p, 10), index.view(), ["s1"], index.rows_of(["s1"]), 10 * DAY, CONFIG
    )
    assert [r.item_id for r in out] == ["s1"]


def test_mmr_in_catalog_ranking(index: CatalogIndex) -> None:
    p = profile_of(index, ["s1"])
    plain = rank_one(index.user_view(p, 10), index.view(), 10 * DAY, CONFIG)
    diverse = rank_one(
        index.user_view(p, 10), index.view(), 10 * DAY, ranking_config(top_k=3, mmr_lambda=0.3, mmr_pool=10)
    )
    assert sum(r.item_id.startswith("r") for r in diverse) > sum(r.item_id.startswith("r") for r in plain)


def test_batch_ranking_equals_one_by_one(index: CatalogIndex) -> None:
    users = [
        index.user_view(profile_of(index, ["s1", "s2"]), 10),
        index.user_view(None, 10),
        index.user_view(profile_of(index, ["r1"]), 10),
    ]
    nows = [10 * DAY, 11 * DAY, 12 * DAY]
    batch = rank_catalog_batch(users, index.view(), nows, CONFIG)
    for user, now, ranked in zip(users, nows, batch, strict=True):
        single = rank_one(user, index.view(), now, CONFIG)
        assert [r.item_id for r in ranked] == [r.item_id for r in single]
        assert [r.reason for r in ranked] == [r.reason for r in single]
        assert [r.score for r in ranked] == pytest.approx([r.score for r in single], abs=1e-6)


YEAR = 365.25 * DAY


def _reference_top(
    user: UserView, catalog: CatalogView, now: float, config: RankingConfig
) -> list[tuple[str, float]]:
    """The top-k (id, score) straight from the definition: every term dense, one user at a time."""
    pop_all = decayed(catalog.popularity, catalog.popularity_ref_ts, now, config.popularity_half_life_s)
    top = float(pop_all[catalog.active].max(initial=0.0))
    parts = score_parts(
        user,
        catalog.vectors,
        covisit_signal(user, len(catalog.active)),
        normalised_log(pop_all, reference_max=top),
        freshness(catalog.item_ts, now, config.freshness_half_life_s),
        config,
        era_proximity(catalog.item_ts, user.history_ts, config.era_scale_s),
    )
    # The weighted sum written out here, not taken from the module's own sum.
    total = (
        config.weight_interest * parts.interest
        + config.weight_history * parts.history
        + config.weight_covisit * parts.covisit
        + config.weight_popularity * parts.popularity
        + config.weight_freshness * parts.freshness
        + config.weight_era * parts.era
    )
    eligible = catalog.active.copy()
    eligible[user.seen_rows] = False
    rows = np.flatnonzero(eligible)
    best = rows[np.argsort(-total[rows], kind="stable")][: config.top_k]
    return [(catalog.item_ids[r], float(total[r])) for r in best]


def test_batch_ranking_matches_the_dense_definition_of_the_score() -> None:
    """Every term on, repeated and unknown item times, retired items, seen items, co-visits,
    a cold-start user and two evaluation times in one batch."""
    rng = np.random.default_rng(11)
    NOW = 2018 * YEAR
    idx = CatalogIndex("m", 8)
    years = rng.integers(1950, 2020, 400)
    for i in range(400):
        ts = None if i % 37 == 0 else float(years[i] * YEAR)
        vector = rng.standard_normal(8).astype(np.float32)
        idx.upsert(str(i), vector / np.linalg.norm(vector), "m", ts)
        idx.set_popularity(str(i), float(rng.exponential(5.0)), NOW + float(rng.uniform(0, 30)) * DAY)
    for i in range(0, 400, 3):
        neighbours = {str(j): float(rng.exponential()) for j in rng.integers(0, 400, 20)}
        idx.set_covisits(str(i), CovisitRow(0.0, neighbours))
    for i in (5, 17, 250):
        idx.delete(str(i))
    config = ranking_config(
        weight_interest=0.3,
        weight_history=0.6,
        weight_popularity=0.3,
        weight_freshness=0.1,
        weight_covisit=1.0,
        weight_era=0.2,
        top_k=10,
    )
    profiles = []
    for _ in range(5):
        profile = UserProfile(model_id="m")
        for t, item in enumerate(rng.integers(0, 400, 30)):
            vec = idx.vector_of(str(item))
            apply_event(profile, str(item), "click", NOW + 40 * DAY + t, 1.0, vec, PARAMS)
        profiles.append(profile)
    users = idx.user_views([*profiles, None], history_items=10, covisit_items=10)
    nows = [NOW + 41 * DAY] * 3 + [NOW + 400 * DAY] * 3  # items of recent years are fresh
    view = idx.view()
    assert view.ts_groups is not None and len(view.ts_groups[0]) < 100  # repeated years, NaN once
    batch = rank_catalog_batch(users, view, nows, config)
    for user, now, ranked in zip(users, nows, batch, strict=True):
        reference = _reference_top(user, view, now, config)
        assert [r.item_id for r in ranked] == [item for item, _ in reference]
        # Cosines are float32: scores agree to their precision.
        assert [r.score for r in ranked] == pytest.approx([score for _, score in reference], abs=1e-6)
    # The same lists when the view carries no precomputed time groups.
    bare = rank_catalog_batch(users, dataclasses.replace(view, ts_groups=None), nows, config)
    assert [[r.item_id for r in ranked] for ranked in bare] == [
        [r.item_id for r in ranked] for ranked in batch
    ]


def test_weighted_total_adds_sparse_covisitation_as_the_dense_signal() -> None:
    rng = np.random.default_rng(5)
    n = 50
    base, interest, history, era = (rng.random(n) for _ in range(4))
    covisit = np.zeros(n)
    rows = np.array([3, 17, 40])
    covisit[rows] = [0.2, 1.0, 0.5]
    config = ranking_config(weight_interest=0.45, weight_history=0.35, weight_covisit=0.7, weight_era=0.3)
    base_before = base.copy()
    dense = weighted_total(base, interest, history, covisit, config, era)
    sparse = weighted_total(base, interest, history, covisit, config, era, rows)
    np.testing.assert_allclose(sparse, dense)
    expected = base + 0.45 * interest + 0.35 * history + 0.7 * covisit + 0.3 * era
    np.testing.assert_allclose(dense, expected)
    np.testing.assert_array_equal(base, base_before)  # a batch's users share it


def test_era_term_prefers_items_from_the_period_of_recent_history() -> None:
    idx = CatalogIndex("m", 2)
    same = unit(1, 0)
    for item, ts in {"seen": 1990 * YEAR, "near": 1991 * YEAR, "far": 2015 * YEAR}.items():
        idx.upsert(item, same, "m", ts)
    profile = UserProfile(model_id="m")
    apply_event(profile, "seen", "view", 0.0, 1.0, same, PARAMS)
    config = ranking_config(
        weight_interest=0.0,
        weight_history=0.0,
        weight_popularity=0.0,
        weight_freshness=0.0,
        weight_era=1.0,
        era_scale_s=10 * YEAR,
    )
    view = idx.user_view(profile, history_items=5)
    assert view.history_ts == pytest.approx([1990 * YEAR])
    ranked = rank_one(view, idx.view(), 0.0, config, k=2)
    assert [r.item_id for r in ranked] == ["near", "far"]
    assert ranked[0].score == pytest.approx(np.exp(-0.1))
    assert ranked[0].reason == "interest"  # era is explained with content
    candidates = rank_candidates(view, idx.view(), ["far", "near"], idx.rows_of(["far", "near"]), 0.0, config)
    assert [r.item_id for r in candidates] == ["near", "far"]
    assert candidates[1].score == pytest.approx(np.exp(-2.5))


def test_reasons_name_each_rows_largest_contribution() -> None:
    # Against the definition written out row by row, with ties, zeros and negative totals.
    rng = np.random.default_rng(3)
    n, history = 300, [rng.random(300).astype(np.float32) for _ in range(4)]
    history[1][:50] = history[0][:50]  # ties between history items: the earlier one
    parts = ScoreParts(
        interest=rng.normal(size=n).astype(np.float32),
        history=np.maximum.reduce(history),
        history_best=BestHistoryItem(history),
        covisit=np.where(rng.random(n) < 0.3, rng.random(n), 0.0),
        popularity=rng.random(n),
        freshness=np.where(rng.random(n) < 0.5, rng.random(n), 0.0),
        era=rng.random(n),
        total=np.zeros(n),
    )
    config = ranking_config(
        weight_interest=0.5,
        weight_history=0.2,
        weight_covisit=2.0,
        weight_popularity=1.0,
        weight_freshness=0.05,
        weight_era=0.1,
    )
    rows = rng.choice(np.arange(8, n), 120, replace=False)
    rows[:3] = [0, 1, 2]
    parts.covisit[:3], parts.popularity[:3], parts.freshness[:3] = 0.0, 0.0, 0.0
    parts.interest[:3] = -1.0  # nothing positive: "trending"
    rows[3:6] = [3, 4, 5]  # co-visitation and popularity tie: the earlier component, "covisited"
    parts.interest[3:6], parts.covisit[3:6], parts.popularity[3:6], parts.freshness[3:6] = -1.0, 0.5, 1.0, 0.0
    rows[6:8] = [6, 7]  # only freshness: "new"
    parts.interest[6:8], parts.covisit[6:8], parts.popularity[6:8], parts.freshness[6:8] = -1.0, 0.0, 0.0, 1.0
    ids = ["a", "b", "c", "d"]
    expected = []
    for r in rows:
        content = config.weight_interest * parts.interest[r] + config.weight_history * parts.history[r]
        contributions = [
            content + config.weight_era * parts.era[r],
            config.weight_covisit * parts.covisit[r],
            config.weight_popularity * parts.popularity[r],
            config.weight_freshness * parts.freshness[r],
        ]
        top = max(range(4), key=lambda i: (contributions[i], -i))
        if contributions[top] <= 0:
            expected.append("trending")
        elif top == 0:
            expected.append("similar:" + ids[max(range(4), key=lambda i: (history[i][r], -i))])
        else:
            expected.append(("covisited", "trending", "new")[top - 1])
    assert reasons(parts, rows, ids, config) == expected
    assert {"trending", "covisited", "new"} <= set(expected) and any(
        e.startswith("similar:") for e in expected
    )
    without_history = dataclasses.replace(parts, history_best=BestHistoryItem(None))
    assert "interest" in reasons(without_history, rows, ids, config)
    assert reasons(parts, np.zeros(0, np.int64), ids, config) == []
