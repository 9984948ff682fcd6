"""Co-visitation pairs: the pairs one interaction forms, and a batch's pairs summed."""

from __future__ import annotations

import math
import random

import pytest

from stream.core import pairs
from stream.core.covisit import CovisitParams
from stream.core.pairs import UserInteractions, form_pairs, pair_increments
from tests.params import covisit_params

DAY = 86400.0


def test_pairs_link_new_item_with_recent_distinct_items_nearer_weighing_more() -> None:
    history = [("a", 0.0, 1.0), ("b", 10.0, 1.0), ("a", 20.0, 1.0), ("c", 30.0, 1.0)]
    pairs = pair_increments(history, "d", 40.0, covisit_params(window=2, window_s=DAY, backward_weight=0.5))
    # c is nearest (distance 1), then a (its latest occurrence, distance 2); b is out of window.
    assert pairs == [
        ("c", "d", 1.0, 40.0),
        ("d", "c", 0.5, 40.0),
        ("a", "d", 0.5, 40.0),
        ("d", "a", 0.25, 40.0),
    ]


def test_pairs_skip_the_item_itself_and_events_outside_the_time_window() -> None:
    history = [("old", 0.0, 1.0), ("x", 5 * DAY, 1.0), ("d", 5 * DAY + 1, 1.0)]
    params = covisit_params(window=5, window_s=DAY, backward_weight=0.0)
    pairs = pair_increments(history, "d", 5 * DAY + 2, params)
    assert pairs == [("x", "d", 1.0, 5 * DAY + 2)]


def test_first_interaction_forms_no_pairs() -> None:
    assert pair_increments([], "a", 0.0, covisit_params()) == []


def _pairs_one_by_one(
    users: list[UserInteractions], params: CovisitParams, ref_ts: float, history_size: int | None
) -> dict[str, dict[str, float]]:
    """The definition: each interaction's pair_increments with the history just before
    it, decayed to ``ref_ts`` and summed in order."""
    rows: dict[str, dict[str, float]] = {}
    for history, interactions in users:
        before = list(history) if history_size is None else list(history)[-history_size:]
        for item, ts in interactions:
            for row_id, neighbour, weight, pair_ts in pair_increments(before, item, ts, params):
                row = rows.setdefault(row_id, {})
                row[neighbour] = row.get(neighbour, 0.0) + weight * math.exp2(
                    (pair_ts - ref_ts) / params.half_life_s
                )
            before.append((item, ts, 1.0))
            if history_size is not None:
                del before[:-history_size]
    return rows


def _random_batch(rng: random.Random) -> list[UserInteractions]:
    """Users with histories and interactions: repeated items, gaps beyond a day, entries
    later than the batch's, histories shorter and longer than the window."""
    catalog = [f"i{k}" for k in range(rng.choice([3, 8, 40]))]
    users: list[UserInteractions] = []
    for _ in range(rng.randint(1, 5)):
        ts = rng.uniform(0, 10 * DAY)
        history = []
        for _ in range(rng.randint(0, 15)):
            ts += rng.choice([60.0, 3600.0, 2 * DAY])
            history.append((rng.choice(catalog), ts + rng.choice([0.0, 0.0, 0.0, 3 * DAY]), 1.0))
        interactions = []
        for _ in range(rng.randint(1, 12)):
            ts += rng.choice([0.0, 60.0, 3600.0, 2 * DAY])
            interactions.append((rng.choice(catalog), ts))
        users.append((history, interactions))
    return users


@pytest.mark.parametrize("few", [0, 10**9], ids=["arrays", "few"])
@pytest.mark.parametrize("seed", range(40))
def test_batch_pairs_are_the_pairs_formed_one_by_one(
    seed: int, few: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """form_pairs gives the same floats, rows and neighbours in the same order as the
    definition: with arrays (and the one-by-one path for repeats and gaps), and for a
    batch of few interactions."""
    monkeypatch.setattr(pairs, "_FEW_INTERACTIONS", few)
    rng = random.Random(seed)
    for _ in range(10):
        params = covisit_params(
            window=rng.choice([1, 2, 5, 20]),
            window_s=DAY,
            backward_weight=rng.choice([0.0, 0.5, 1.0]),
            half_life_s=rng.choice([DAY, 30 * DAY]),
        )
        history_size = rng.choice([None, 1, 3, 200])
        users = _random_batch(rng)
        ref_ts = max(ts for _, interactions in users for _, ts in interactions)
        expected = _pairs_one_by_one(users, params, ref_ts, history_size)
        got = form_pairs(users, params, ref_ts, history_size).to_rows()
        assert got == expected
        assert [(row, list(scores)) for row, scores in got.items()] == [
            (row, list(scores)) for row, scores in expected.items()
        ]


def test_batch_pairs_of_distinct_items_pair_each_with_the_window_before_it() -> None:
    history = [("a", 0.0, 1.0), ("b", 1.0, 1.0), ("c", 2.0, 1.0)]
    params = covisit_params(window=2, window_s=DAY, backward_weight=0.0, half_life_s=DAY)
    sums = form_pairs([(history, [("d", 3.0), ("e", 3.0)])], params, ref_ts=3.0)
    assert sums.to_rows() == {"c": {"d": 1.0, "e": 0.5}, "b": {"d": 0.5}, "d": {"e": 1.0}}
