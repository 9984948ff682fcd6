"""A batch's item-statistics increments: decayed sums, owners, the wire form."""

from __future__ import annotations

import json
import math

import pytest

from stream import covisit, popularity
from stream.covisit import CovisitParams
from stream.records import InteractionEvent
from stream.statistics import ItemIncrements, covisit_entries, popularity_entries

H = 10.0
WEIGHTS = {"view": 1.0, "click": 2.0}


def event(item: str, ts: float, type_: str = "view", weight: float = 1.0) -> InteractionEvent:
    return InteractionEvent("u", item, type_, ts, weight)


def test_popularity_sums_are_decayed_to_the_batch_time() -> None:
    inc = ItemIncrements(ts=10.0)
    inc.add_events([event("a", 0.0), event("a", 10.0), event("b", 5.0, "click", 0.5)], WEIGHTS, H)
    assert inc.popularity["a"] == pytest.approx(0.5 + 1.0)
    assert inc.popularity["b"] == pytest.approx(2.0 * 0.5 * 2**-0.5)


def test_pair_sums_equal_each_pair_decayed_to_the_batch_time() -> None:
    pairs = [("a", "b", 1.0, 0.0), ("a", "b", 2.0, 10.0), ("a", "c", 1.0, 5.0), ("c", "a", 0.5, 12.0)]
    inc = ItemIncrements(ts=10.0)
    inc.add_pairs(pairs, H)
    assert inc.covisits["a"] == pytest.approx({"b": 0.5 + 2.0, "c": 2**-0.5})
    # A pair newer than the batch time (an out-of-order history entry) is held at it too.
    assert inc.covisits["c"] == pytest.approx({"a": 0.5 * 2**0.2})


def test_rows_merged_from_increments_equal_rows_merged_pair_by_pair() -> None:
    """Holding a batch at one time changes nothing once merged into a row."""
    params = CovisitParams(half_life_s=H, max_neighbours=10)
    history: list[tuple[str, float, float]] = []
    pairs = []
    for i, item in enumerate("abcadbec"):
        ts = 3.0 * i
        pairs += covisit.pair_increments(history, item, ts, params)
        history.append((item, ts, 1.0))
    inc = ItemIncrements(ts=21.0)
    inc.add_pairs(pairs, H)
    by_pair: dict[str, covisit.CovisitRow] = {}
    for row_id, neighbour, weight, ts in pairs:
        by_pair[row_id] = covisit.merge_row(by_pair.get(row_id), {neighbour: weight}, ts, params)
    now = 30.0
    for row_id, scores in inc.covisits.items():
        merged = covisit.merge_row(None, scores, inc.ts, params)
        expected = by_pair[row_id]
        for n in expected.scores:
            got = merged.scores[n] * math.exp2(-(now - merged.landmark) / H)
            want = expected.scores[n] * math.exp2(-(now - expected.landmark) / H)
            assert got == pytest.approx(want, rel=1e-12)


def test_each_item_and_row_goes_to_its_owner_partition() -> None:
    inc = ItemIncrements(ts=1.0, popularity={f"i{k}": float(k) for k in range(40)})
    inc.covisits = {f"i{k}": {"x": 1.0} for k in range(0, 40, 3)}
    parts = inc.by_owner(8)
    assert len(parts) > 1
    for partition, part in parts.items():
        assert part.ts == 1.0
        for item_id in [*part.popularity, *part.covisits]:
            assert popularity.owner_partition(item_id, 8) == partition
    assert sum(len(p.popularity) for p in parts.values()) == 40
    assert sum(len(p.covisits) for p in parts.values()) == 14


def test_wire_form_round_trips_through_json() -> None:
    inc = ItemIncrements(ts=7.5, popularity={"a": 1.25, "b": 1e-300})
    inc.covisits = {"a": {"b": 0.1, "c": 3.0}, "d": {}, "b": {"a": 2.0}}
    value = json.loads(json.dumps(inc.to_message()))
    assert list(popularity_entries(value)) == [("a", 1.25, 7.5), ("b", 1e-300, 7.5)]
    assert list(covisit_entries(value)) == [
        ("a", {"b": 0.1, "c": 3.0}, 7.5),
        ("d", {}, 7.5),
        ("b", {"a": 2.0}, 7.5),
    ]


def test_messages_of_the_earlier_form_are_still_read() -> None:
    value = {
        "items": {"a": {"score": 2.0, "ref_ts": 3.0}},
        "covisits": {"a": {"ts": 4.0, "scores": {"b": 0.5}}},
    }
    assert list(popularity_entries(value)) == [("a", 2.0, 3.0)]
    assert list(covisit_entries(value)) == [("a", {"b": 0.5}, 4.0)]


def test_a_message_without_co_visitation_has_no_rows() -> None:
    value = ItemIncrements(ts=1.0, popularity={"a": 1.0}).to_message()
    assert list(covisit_entries(value)) == []
    assert list(covisit_entries({"items": {}})) == []


def test_inconsistent_weights_are_refused() -> None:
    value = ItemIncrements(ts=1.0, covisits={"a": {"b": 1.0}}).to_message()
    value["neighbours"].append("c")
    with pytest.raises(ValueError, match="2 neighbours but 1 weights"):
        list(covisit_entries(value))


def test_row_sizes_that_do_not_add_up_are_refused() -> None:
    value = ItemIncrements(ts=1.0, covisits={"a": {"b": 1.0}, "c": {"d": 1.0}}).to_message()
    value["sizes"] = [1, 2]
    with pytest.raises(ValueError, match="rows of 3 neighbours in all but 2 neighbours"):
        list(covisit_entries(value))


def test_popularity_entries_round_trip_through_their_stored_forms() -> None:
    data = popularity.encode_entry(2.5, 1234.0)
    assert len(data) == 20 and popularity.decode_entry(data) == (2.5, 1234.0)
    # Earlier versions stored JSON: read as bytes (a bytes table) or as a dict.
    assert popularity.decode_entry(b'{"score": 2.5, "ref_ts": 1234.0}') == (2.5, 1234.0)
    assert popularity.decode_entry({"score": 2.5, "ref_ts": 1234.0}) == (2.5, 1234.0)
    assert popularity.decode_entry(None) == (0.0, 0.0)
