"""A batch's item-statistics increments: decayed sums, owners, the wire form."""

from __future__ import annotations

import json
import math
import struct

import pytest

from stream.core import covisit, popularity
from stream.core.contracts import InteractionEvent
from stream.core.covisit import CovisitParams
from stream.core.statistics import ItemIncrements, decode_message


def rows_of(raw: bytes) -> list[tuple[str, dict[str, float], float]]:
    """(row, {neighbour: weight}, held at) of a message value."""
    return [(r, dict(zip(n, w, strict=True)), ts) for r, n, w, ts in decode_message(raw).covisit_slices()]


def popularity_of(raw: bytes) -> list[tuple[str, float, float]]:
    return list(decode_message(raw).popularity_entries())


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


H = 10.0
WEIGHTS = {"view": 1.0, "click": 2.0}


def event(item: str, ts: float, type_: str = "view", weight: float = 1.0) -> InteractionEvent:
    return InteractionEvent("u", item, type_, ts, weight)


def test_popularity_sums_are_decayed_to_the_batch_time() -> None:
    inc = ItemIncrements(ts=10.0)
    inc.add_events([event("a", 0.0), event("a", 10.0), event("b", 5.0, "click", 0.5)], WEIGHTS, H)
    assert inc.popularity["a"] == pytest.approx(0.5 + 1.0)
    assert inc.popularity["b"] == pytest.approx(2.0 * 0.5 * 2**-0.5)


def _interactions(items: str, step: float) -> list[tuple[str, float]]:
    return [(item, step * i) for i, item in enumerate(items)]


def test_pair_sums_equal_each_pair_decayed_to_the_batch_time() -> None:
    """add_interaction sums exactly the pairs of pair_increments, each decayed to ts."""
    params = CovisitParams(window=3, window_s=100.0, backward_weight=0.5, half_life_s=H)
    # "x" at 50 comes later than the interactions (an out-of-order history entry): its
    # pairs are held at 50, a time after the batch's.
    history: list[tuple[str, float, float]] = [("x", 50.0, 1.0)]
    inc = ItemIncrements(ts=30.0)
    expected: dict[str, dict[str, float]] = {}
    for item, ts in _interactions("abcadbec", 3.0):
        for row_id, neighbour, weight, pair_ts in covisit.pair_increments(history, item, ts, params):
            row = expected.setdefault(row_id, {})
            row[neighbour] = row.get(neighbour, 0.0) + weight * math.exp2((pair_ts - inc.ts) / H)
        inc.add_interaction(history, item, ts, params)
        history.append((item, ts, 1.0))
    assert inc.covisits == expected  # the same floats
    assert {k: list(v) for k, v in inc.covisits.items()} == {k: list(v) for k, v in expected.items()}
    # x -> a twice: a's first interaction (distance 1) and its second (distance 3, after c
    # and b), both held at 50, not at 30.
    assert inc.covisits["x"]["a"] == pytest.approx((1.0 + 1.0 / 3.0) * 2**2.0)


def test_an_interaction_without_earlier_items_forms_no_row() -> None:
    inc = ItemIncrements(ts=1.0)
    inc.add_interaction([], "a", 1.0, CovisitParams())
    assert inc.covisits == {}
    forward_only = ItemIncrements(ts=1.0)
    forward_only.add_interaction([("a", 1.0, 1.0)], "b", 1.0, CovisitParams(backward_weight=0.0))
    assert forward_only.covisits == {"a": {"b": 1.0}}


def test_a_batch_pairs_with_one_set_of_parameters() -> None:
    inc = ItemIncrements(ts=1.0)
    inc.add_interaction([], "a", 1.0, CovisitParams())
    with pytest.raises(ValueError, match="one set of parameters"):
        inc.add_interaction([("a", 1.0, 1.0)], "b", 1.0, CovisitParams(backward_weight=0.0))


def test_rows_merged_from_increments_equal_rows_merged_pair_by_pair() -> None:
    """Holding a batch at one time changes nothing once merged into a row."""
    params = CovisitParams(half_life_s=H, max_neighbours=10)
    history: list[tuple[str, float, float]] = []
    pairs = []
    inc = ItemIncrements(ts=21.0)
    for item, ts in _interactions("abcadbec", 3.0):
        pairs += covisit.pair_increments(history, item, ts, params)
        inc.add_interaction(history, item, ts, params)
        history.append((item, ts, 1.0))
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
    inc = ItemIncrements(
        ts=1.0,
        popularity={f"i{k}": float(k) for k in range(40)},
        covisits={f"i{k}": {"x": 1.0} for k in range(0, 40, 3)},
    )
    messages = inc.messages_by_owner(8)
    assert len(messages) > 1
    for partition, raw in messages.items():
        message = decode_message(raw)
        assert message.ts == 1.0
        for item_id in [*message.items, *message.rows]:
            assert popularity.owner_partition(item_id, 8) == partition
    assert sum(len(decode_message(raw).items) for raw in messages.values()) == 40
    assert sum(len(decode_message(raw).rows) for raw in messages.values()) == 14


def _increments() -> ItemIncrements:
    return ItemIncrements(
        ts=7.5,
        popularity={"a": 1.25, "b": 1e-300, "é": 2.0},
        covisits={"a": {"b": 0.1, "c": 3.0}, "b": {"a": 2.0, "é": 0.5}},
    )


EXPECTED_POPULARITY = [("a", 1.25, 7.5), ("b", 1e-300, 7.5), ("é", 2.0, 7.5)]
EXPECTED_ROWS = [("a", {"b": 0.1, "c": 3.0}, 7.5), ("b", {"a": 2.0, "é": 0.5}, 7.5)]


def test_binary_wire_form_round_trips_exactly() -> None:
    raw = _increments().to_bytes()
    assert raw[:4] == b"SII1"
    assert popularity_of(raw) == EXPECTED_POPULARITY
    assert rows_of(raw) == EXPECTED_ROWS


def test_ids_with_nul_are_sent_as_json_and_read_back() -> None:
    inc = ItemIncrements(ts=1.0, popularity={"a\x00b": 1.0}, covisits={"": {"x": 2.0}})
    raw = inc.to_bytes()
    assert raw.startswith(b"{")
    assert popularity_of(raw) == [("a\x00b", 1.0, 1.0)]
    assert rows_of(raw) == [("", {"x": 2.0}, 1.0)]


def test_an_empty_batch_round_trips() -> None:
    raw = ItemIncrements(ts=0.0).to_bytes()
    assert popularity_of(raw) == [] and rows_of(raw) == []


def test_json_messages_of_earlier_versions_are_still_read() -> None:
    raw = json_bytes(_increments().to_message())
    assert popularity_of(raw) == EXPECTED_POPULARITY
    assert rows_of(raw) == EXPECTED_ROWS
    older = {
        "items": {"a": {"score": 2.0, "ref_ts": 3.0}},
        "covisits": {"a": {"ts": 4.0, "scores": {"b": 0.5}}},
    }
    assert popularity_of(json_bytes(older)) == [("a", 2.0, 3.0)]
    assert rows_of(json_bytes(older)) == [("a", {"b": 0.5}, 4.0)]


def test_a_message_without_co_visitation_has_no_rows() -> None:
    assert rows_of(ItemIncrements(ts=1.0, popularity={"a": 1.0}).to_bytes()) == []
    assert rows_of(json_bytes(ItemIncrements(ts=1.0, popularity={"a": 1.0}).to_message())) == []
    assert rows_of(json_bytes({"items": {}})) == []


def test_inconsistent_json_weights_are_refused() -> None:
    value = ItemIncrements(ts=1.0, covisits={"a": {"b": 1.0}}).to_message()
    value["neighbours"].append("c")
    with pytest.raises(ValueError, match="2 neighbours but 1 weights"):
        decode_message(json_bytes(value))


def test_json_row_sizes_that_do_not_add_up_are_refused() -> None:
    value = ItemIncrements(ts=1.0, covisits={"a": {"b": 1.0}, "c": {"d": 1.0}}).to_message()
    value["sizes"] = [1, 2]
    with pytest.raises(ValueError, match="rows of 3 neighbours in all but 2 neighbours"):
        decode_message(json_bytes(value))


def _binary(ts: float, counts: tuple[int, ...], ids: tuple[bytes, bytes, bytes], tail: bytes) -> bytes:
    n_items, n_rows, n_neighbours = counts
    header = struct.pack("<dIIIIII", ts, n_items, len(ids[0]), n_rows, len(ids[1]), n_neighbours, len(ids[2]))
    return b"SII1" + header + b"".join(ids) + tail


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"SII1\x00\x01", "shorter than its header"),
        (_increments().to_bytes()[:-1], "by its header"),
        (_increments().to_bytes() + b"\x00", "by its header"),
        # two row ids where the header says one
        (_binary(1.0, (0, 1, 1), (b"", b"a\x00b", b"x"), struct.pack("<Id", 1, 1.0)), "do not match"),
        # one row of two neighbours, one neighbour given
        (_binary(1.0, (0, 1, 1), (b"", b"a", b"x"), struct.pack("<Id", 2, 1.0)), "rows of 2 neighbours"),
        (b"[1, 2]", "not an object"),
        (json_bytes({**_increments().to_message(), "sizes": [3, -1, 2]}), "the least -1"),
        (b'{"ts": 1, "items": ["a"]}', "without a valid"),
        (b"\xff\xfe", "Expecting value"),
    ],
)
def test_malformed_messages_raise_value_error(raw: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        decode_message(raw)


def test_popularity_entries_round_trip_through_their_stored_forms() -> None:
    data = popularity.encode_entry(2.5, 1234.0)
    assert len(data) == 20 and popularity.decode_entry(data) == (2.5, 1234.0)
    # Earlier versions stored JSON: read as bytes (a bytes table) or as a dict.
    assert popularity.decode_entry(b'{"score": 2.5, "ref_ts": 1234.0}') == (2.5, 1234.0)
    assert popularity.decode_entry({"score": 2.5, "ref_ts": 1234.0}) == (2.5, 1234.0)
    assert popularity.decode_entry(None) == (0.0, 0.0)
