"""Prequential evaluation: metric arithmetic and the test-then-train protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.core.catalog import CatalogIndex
from stream.core.contracts import InteractionEvent
from stream.core.profiles import ProfileParams
from stream.eval.prequential import (
    METHODS,
    CatalogItem,
    MethodTotals,
    StreamState,
    method_configs,
    prequential,
    rank_metrics,
)
from tests.params import covisit_params, ranking_config

DIM = 8


def test_rank_metrics_at_k() -> None:
    assert rank_metrics(1, 10) == (1.0, 1.0, 1.0)
    hit, ndcg, rr = rank_metrics(3, 10)
    assert (hit, rr) == (1.0, pytest.approx(1 / 3))
    assert ndcg == pytest.approx(1 / math.log2(4))
    assert rank_metrics(11, 10) == (0.0, 0.0, 0.0)
    assert rank_metrics(None, 10) == (0.0, 0.0, 0.0)


def test_totals_average_over_scored_lists_and_count_coverage() -> None:
    totals = MethodTotals(k=2)
    totals.add(["a", "b", "c"], "a")  # rank 1
    totals.add(["c", "b"], "b")  # rank 2
    totals.add(["c", "d"], "x")  # miss
    result = totals.result(catalog_size=8)
    assert result["hr@2"] == pytest.approx(2 / 3)
    assert result["mrr@2"] == pytest.approx((1 + 0.5) / 3)
    assert result["coverage@2"] == pytest.approx(4 / 8)  # a, b, c, d


def test_methods_differ_only_in_weights() -> None:
    hybrid = ranking_config(weight_covisit=0.7, weight_era=0.2, history_items=7)
    configs = method_configs(hybrid)
    assert configs["hybrid"] is hybrid
    assert configs["popularity"].weight_popularity == 1.0
    assert configs["popularity"].weight_interest == configs["popularity"].weight_covisit == 0.0
    assert configs["content"].weight_covisit == configs["content"].weight_popularity == 0.0
    # The era term belongs to the production ranking only, not to the baselines.
    assert {m: c.weight_era for m, c in configs.items()} == {
        "popularity": 0.0,
        "content": 0.0,
        "covisit": 0.0,
        "hybrid": 0.2,
    }
    assert {c.history_items for c in configs.values()} == {7}
    # The popularity baseline may decay its counts with its own half-life.
    own = method_configs(hybrid, popularity_half_life_s=123.0)
    assert own["popularity"].popularity_half_life_s == 123.0
    assert own["hybrid"].popularity_half_life_s == hybrid.popularity_half_life_s


def _state(popularity_half_life_s: float = 1e9, baseline_half_life_s: float | None = None) -> StreamState:
    return StreamState(
        CatalogIndex("m", DIM),
        ProfileParams(half_life_s=1e9, history_size=50, pending_size=10, model_id="m"),
        covisit_params(window=3, window_s=1e9, half_life_s=1e9),
        {"view": 1.0},
        popularity_half_life_s,
        baseline_half_life_s,
    )


def _items(n: int, available_ts: float = 0.0) -> list[CatalogItem]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [CatalogItem(f"i{j}", vectors[j], None, available_ts) for j in range(n)]


def _view(user: str, item: str, ts: float) -> InteractionEvent:
    return InteractionEvent(user, item, "view", ts, 1.0)


def _session(user: str, items: list[str], start: float) -> list[InteractionEvent]:
    return [_view(user, item, start + j) for j, item in enumerate(items)]


def test_collaborative_pattern_learned_from_others_is_found_before_the_event() -> None:
    # 30 users watch i1..i5 then i6; the scored user has watched i1..i5 and now takes i6.
    events: list[InteractionEvent] = []
    for u in range(30):
        events += _session(f"u{u}", ["i1", "i2", "i3", "i4", "i5", "i6"], 100.0 * u)
    events += _session("target", ["i1", "i2", "i3", "i4", "i5", "i6"], 10_000.0)
    scored = np.zeros(len(events), dtype=bool)
    scored[-1] = True
    n, results = prequential(_state(), _items(40), events, scored, ranking_config(weight_covisit=1.0))
    assert n == 1
    assert results["covisit"]["hr@10"] == 1.0
    assert results["covisit"]["mrr@10"] == 1.0  # i1..i5 are seen: i6 is the only evidence
    assert set(results) == set(METHODS)


def test_the_scored_event_never_informs_its_own_score() -> None:
    # The only co-visitation of i1 -> i39 is the scored event itself.
    events = _session("u", ["i1", "i2", "i3", "i4", "i5"], 0.0)
    events.append(_view("u", "i39", 10.0))
    scored = np.zeros(len(events), dtype=bool)
    scored[-1] = True
    config = ranking_config(weight_interest=0.0, weight_history=0.0, weight_covisit=1.0)
    _, results = prequential(_state(), _items(40), events, scored, config, methods=["covisit", "popularity"])
    assert results["covisit"]["hr@10"] == 0.0
    assert results["popularity"]["hr@10"] == 0.0


def test_items_from_the_future_are_never_recommended() -> None:
    items = [*_items(20), CatalogItem("late", np.eye(DIM, dtype=np.float32)[0], None, 1e6)]
    events = [*_session("u", [f"i{j}" for j in range(6)], 0.0), _view("u", "late", 10.0)]
    scored = np.zeros(len(events), dtype=bool)
    scored[-1] = True
    n, results = prequential(_state(), items, events, scored, ranking_config(), k=50)
    assert n == 1
    assert all(r["hr@50"] == 0.0 for r in results.values())


def test_users_with_short_histories_are_not_scored() -> None:
    events = _session("u", ["i1", "i2", "i3"], 0.0)
    scored = np.ones(len(events), dtype=bool)
    n, _ = prequential(_state(), _items(10), events, scored, ranking_config(), min_history=5)
    assert n == 0


@pytest.mark.parametrize(("baseline_half_life_s", "hit"), [(None, 0.0), (1e9, 1.0)])
def test_the_popularity_baseline_decays_with_its_own_half_life(
    baseline_half_life_s: float | None, hit: float
) -> None:
    # i1 was taken by 20 users long ago, i2 by 2 users just now; the scored user takes i1.
    events = [_view(f"old{u}", "i1", float(u)) for u in range(20)]
    events += [_view(f"new{u}", "i2", 1000.0 + u) for u in range(2)]
    events += [*_session("u", ["i3", "i4", "i5", "i6", "i7"], 1010.0), _view("u", "i1", 1020.0)]
    scored = np.zeros(len(events), dtype=bool)
    scored[-1] = True
    # Production's 10-second half-life has forgotten i1; a baseline with its own long one has not.
    state = _state(popularity_half_life_s=10.0, baseline_half_life_s=baseline_half_life_s)
    config = ranking_config(popularity_half_life_s=10.0)
    n, results = prequential(state, _items(10), events, scored, config, k=1, methods=["popularity"])
    assert n == 1
    assert results["popularity"]["hr@1"] == hit
    # Production's counts, which the other methods rank with, are the same either way.
    i1, i2 = state.index.rows_of(["i1", "i2"])
    assert state.index.view().popularity[i1] < state.index.view().popularity[i2]
