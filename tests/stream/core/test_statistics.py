"""A batch's item-statistics increments: decayed sums, owners, the wire form."""

from __future__ import annotations

import json
import math
import struct

import msgspec
import numpy as np
import pytest

from stream.core import covisit, popularity
from stream.core.contracts import InteractionEvent
from stream.core.formats import FormatError, StatisticsMessage, StoredPopularity, decode_message
from stream.core.pairs import pair_increments
from stream.core.statistics import ItemIncrements
from stream.kafka.partitioner import owner_partition
from tests.params import covisit_params
from tests.reference import add_interaction, merge_row


def rows_of(raw: bytes) -> list[tuple[str, dict[str, float], float]]:
    """(row, {neighbour: weight}, held at) of a message value."""
    return [(r, dict(zip(n, w, strict=True)), ts) for r, n, w, ts in decode_message(raw).covisit_slices()]


def popularity_of(raw: bytes) -> list[tuple[str, float, float]]:
    return list(decode_message(raw).popularity_entries())


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
    """One interaction at a time sums exactly the pairs of pair_increments, each decayed to ts."""
    params = covisit_params(window=3, window_s=100.0, backward_weight=0.5, half_life_s=H)
    # "x" at 50 comes later than the interactions (an out-of-order history entry): its
    # pairs are held at 50, a time after the batch's.
    history: list[tuple[str, float, float]] = [("x", 50.0, 1.0)]
    inc = ItemIncrements(ts=30.0)
    expected: dict[str, dict[str, float]] = {}
    for item, ts in _interactions("abcadbec", 3.0):
        for row_id, neighbour, weight, pair_ts in pair_increments(history, item, ts, params):
            row = expected.setdefault(row_id, {})
            row[neighbour] = row.get(neighbour, 0.0) + weight * math.exp2((pair_ts - inc.ts) / H)
        add_interaction(inc, history, item, ts, params)
        history.append((item, ts, 1.0))
    assert inc.pair_sums().to_rows() == expected  # the same floats
    assert {k: list(v) for k, v in inc.pair_sums().to_rows().items()} == {
        k: list(v) for k, v in expected.items()
    }
    # x -> a twice: a's first interaction (distance 1) and its second (distance 3, after c
    # and b), both held at 50, not at 30.
    assert inc.pair_sums().to_rows()["x"]["a"] == pytest.approx((1.0 + 1.0 / 3.0) * 2**2.0)


def test_an_interaction_without_earlier_items_forms_no_row() -> None:
    inc = ItemIncrements(ts=1.0)
    add_interaction(inc, [], "a", 1.0, covisit_params())
    assert inc.pair_sums().to_rows() == {}
    forward_only = ItemIncrements(ts=1.0)
    add_interaction(forward_only, [("a", 1.0, 1.0)], "b", 1.0, covisit_params(backward_weight=0.0))
    assert forward_only.pair_sums().to_rows() == {"a": {"b": 1.0}}


def test_a_batch_pairs_with_one_set_of_parameters() -> None:
    inc = ItemIncrements(ts=1.0)
    add_interaction(inc, [], "a", 1.0, covisit_params())
    with pytest.raises(ValueError, match="one set of parameters"):
        add_interaction(inc, [("a", 1.0, 1.0)], "b", 1.0, covisit_params(backward_weight=0.0))


def test_rows_merged_from_increments_equal_rows_merged_pair_by_pair() -> None:
    """Holding a batch at one time changes nothing once merged into a row."""
    params = covisit_params(half_life_s=H, max_neighbours=10)
    history: list[tuple[str, float, float]] = []
    pairs = []
    inc = ItemIncrements(ts=21.0)
    for item, ts in _interactions("abcadbec", 3.0):
        pairs += pair_increments(history, item, ts, params)
        add_interaction(inc, history, item, ts, params)
        history.append((item, ts, 1.0))
    by_pair: dict[str, covisit.CovisitRow] = {}
    for row_id, neighbour, weight, ts in pairs:
        by_pair[row_id] = merge_row(by_pair.get(row_id), {neighbour: weight}, ts, params)
    now = 30.0
    for row_id, scores in inc.pair_sums().to_rows().items():
        merged = merge_row(None, scores, inc.ts, params)
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
    messages = inc.messages_by_owner(lambda key: owner_partition(key, 8))
    assert len(messages) > 1
    for partition, raw in messages.items():
        message = decode_message(raw)
        assert message.ts == 1.0
        for item_id in [*message.items, *message.rows]:
            assert owner_partition(item_id, 8) == partition
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


def test_wire_form_round_trips_exactly() -> None:
    raw = _increments().to_bytes()
    assert popularity_of(raw) == EXPECTED_POPULARITY
    assert rows_of(raw) == EXPECTED_ROWS


@pytest.mark.parametrize("odd", ["a\x00b", "", "\U0001f600"])
def test_any_ids_round_trip(odd: str) -> None:
    inc = ItemIncrements(ts=1.0, popularity={odd: 1.0}, covisits={odd: {"x": 2.0}, "y": {odd: 3.0}})
    raw = inc.to_bytes()
    assert popularity_of(raw) == [(odd, 1.0, 1.0)]
    assert rows_of(raw) == [(odd, {"x": 2.0}, 1.0), ("y", {odd: 3.0}, 1.0)]


def test_an_empty_batch_round_trips() -> None:
    raw = ItemIncrements(ts=0.0).to_bytes()
    assert popularity_of(raw) == [] and rows_of(raw) == []


def test_a_message_without_co_visitation_has_no_rows() -> None:
    assert rows_of(ItemIncrements(ts=1.0, popularity={"a": 1.0}).to_bytes()) == []


def test_a_message_names_each_of_its_ids_once() -> None:
    """Rows and neighbours refer to ids by number: an owner decodes each id once, and
    merges rows keyed by the same strings."""
    inc = ItemIncrements(
        ts=1.0, covisits={"a": {"b": 1.0, "c": 2.0}, "b": {"a": 1.0, "c": 1.0}, "c": {"b": 4.0}}
    )
    raw = inc.to_bytes()
    assert sorted(msgspec.msgpack.decode(raw, type=StatisticsMessage).names) == ["a", "b", "c"]
    message = decode_message(raw)
    assert message.neighbours[0] is message.rows[1]  # the same "b"
    assert rows_of(raw) == [
        ("a", {"b": 1.0, "c": 2.0}, 1.0),
        ("b", {"a": 1.0, "c": 1.0}, 1.0),
        ("c", {"b": 4.0}, 1.0),
    ]


def test_each_owners_message_names_only_its_own_ids() -> None:
    inc = ItemIncrements(ts=1.0, covisits={f"r{k}": {f"n{k}": 1.0, "shared": 2.0} for k in range(30)})
    messages = inc.messages_by_owner(lambda key: owner_partition(key, 4))
    assert len(messages) > 1
    for raw in messages.values():
        names = msgspec.msgpack.decode(raw, type=StatisticsMessage).names
        message = decode_message(raw)
        assert sorted(names) == sorted({*message.rows, *message.neighbours})


def test_a_batchs_pairs_reach_their_owners_exactly() -> None:
    """Every pair formed from real interactions arrives, once, at its row's owner."""
    params = covisit_params(window=4, half_life_s=H)
    inc = ItemIncrements(ts=40.0)
    for user in range(6):
        items = [f"i{(user * 7 + k * 3) % 23}" for k in range(9)]
        inc.add_user_interactions([], [(item, 2.0 * k) for k, item in enumerate(items)], params)
    received: dict[str, dict[str, float]] = {}
    for partition, raw in inc.messages_by_owner(lambda key: owner_partition(key, 3)).items():
        for row_id, scores, ts in rows_of(raw):
            assert owner_partition(row_id, 3) == partition and ts == 40.0 and row_id not in received
            received[row_id] = scores
    assert received == inc.pair_sums().to_rows()


def _message(**fields: object) -> bytes:
    """A message of one item and one row of two neighbours, with ``fields`` replaced."""
    parts: dict[str, object] = {
        "ts": 1.0,
        "items": ["a"],
        "scores": np.array([1.0], "<f8").tobytes(),
        "names": ["a", "b", "c"],
        "rows": np.array([0], "<u4").tobytes(),
        "sizes": np.array([2], "<u4").tobytes(),
        "neighbours": np.array([1, 2], "<u4").tobytes(),
        "weights": np.array([0.5, 0.25], "<f8").tobytes(),
    }
    parts.update(fields)
    return msgspec.msgpack.encode(StatisticsMessage(**parts))


def _earlier_binary_message() -> bytes:
    # The hand-made form of earlier versions (magic SII1): one item, no rows.
    header = struct.pack("<dIIIIII", 1.0, 1, 1, 0, 0, 0, 0)
    return b"SII1" + header + b"a" + np.array([1.0], "<f8").tobytes()


def test_a_well_formed_message_decodes() -> None:
    assert rows_of(_message()) == [("a", {"b": 0.5, "c": 0.25}, 1.0)]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (_earlier_binary_message(), "not an item-statistics message"),
        (json.dumps({"ts": 1, "items": ["a"], "scores": "AAAAAAAA8D8="}).encode(), "not an item-statistics"),
        (b"[1, 2]", "not an item-statistics message"),
        (b"\xff\xfe", "not an item-statistics message"),
        (b"", "truncated"),
        (_message()[:-1], "truncated"),
        (_message() + b"\x00", "trailing"),
        (_message(items=["a", "b"]), "2 items but 1 scores"),
        (_message(scores=b"\x00" * 7), "not a whole number of 8-byte values"),
        (_message(sizes=np.array([2, 0], "<u4").tobytes()), "1 rows but 2 sizes"),
        (_message(sizes=np.array([3], "<u4").tobytes()), "rows of 3 neighbours in all but 2 neighbours"),
        (_message(weights=np.array([0.5], "<f8").tobytes()), "2 neighbours but 1 weights"),
        (_message(names=["a", "b"]), "id number 2 of a message naming 2 ids"),
        (_message(rows=np.array([7], "<u4").tobytes()), "id number 7"),
        (_message(ts="soon"), r"Expected `float`, got `str` - at `\$\.ts`"),
    ],
)
def test_anything_but_a_message_is_refused_with_a_clear_error(raw: bytes, match: str) -> None:
    """No reader of earlier forms is left: they, garbage and inconsistent messages raise
    FormatError, a ValueError (the statistics agent dead-letters it as undecodable)."""
    with pytest.raises(FormatError, match=match):
        decode_message(raw)
    assert issubclass(FormatError, ValueError)


def test_popularity_entries_round_trip_through_their_stored_form() -> None:
    data = popularity.encode_entry(2.5, 1234.0, 17)
    assert len(data) == 20 and popularity.stored_entry(data) == (2.5, 1234.0, 17)
    assert popularity.decode_entry(data) == (2.5, 1234.0)
    assert data == msgspec.msgpack.encode(StoredPopularity(2.5, 1234.0, 17))
    assert popularity.decode_entry(None) == (0.0, 0.0) and popularity.stored_entry(None)[2] == -1
    # An entry of the form before positions were recorded reads as merged through none.
    assert popularity.stored_entry(msgspec.msgpack.encode((2.5, 1234.0))) == (2.5, 1234.0, -1)


@pytest.mark.parametrize(
    "data",
    [
        b"SRQ1" + struct.pack("<dd", 2.5, 1234.0),  # the hand-made form of earlier versions
        b'{"score": 2.5, "ref_ts": 1234.0}',  # the JSON form before it
        popularity.encode_entry(2.5, 1234.0)[:-1],
        b"",
    ],
)
def test_anything_but_a_popularity_entry_is_refused(data: bytes) -> None:
    with pytest.raises(FormatError, match="not a stored popularity entry"):
        popularity.decode_entry(data)
