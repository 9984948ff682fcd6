"""Co-visitation rows: decayed, bounded, stored, and used in ranking."""

from __future__ import annotations

import json
import math
import struct

import msgspec
import numpy as np
import pytest

from stream.core.catalog import CatalogIndex
from stream.core.covisit import (
    REBASE_EXPONENT,
    CovisitRow,
    merge_row_entries,
    prune,
    published,
    published_bytes,
    stored_row,
)
from stream.core.formats import FormatError, StoredRow, row_arrays
from stream.core.profiles import UserProfile
from stream.core.ranking import rank_catalog_batch
from stream.core.signals import covisit_signal
from tests.params import covisit_params, ranking_config
from tests.reference import merge_row

DAY = 86400.0


def _value_now(row: CovisitRow, neighbour: str, now: float, h: float) -> float:
    return row.scores.get(neighbour, 0.0) * math.exp2(-(now - row.landmark) / h)


@pytest.mark.parametrize("order", ["forward", "shuffled"])
def test_forward_decay_equals_the_closed_form_in_any_order(order: str) -> None:
    h = 7 * DAY
    params = covisit_params(half_life_s=h, max_neighbours=10)
    adds = [(float(t) * DAY, "b" if t % 2 else "c", 1.0 + t / 10) for t in range(0, 120, 7)]
    if order == "shuffled":
        adds = [adds[i] for i in np.random.default_rng(1).permutation(len(adds))]
    row = None
    for ts, neighbour, weight in adds:
        row = merge_row(row, {neighbour: weight}, ts, params)
    now = 130 * DAY
    for neighbour in ("b", "c"):
        expected = sum(w * math.exp2(-(now - t) / h) for t, n, w in adds if n == neighbour)
        assert _value_now(row, neighbour, now, h) == pytest.approx(expected, rel=1e-9)


def test_row_is_rebased_before_its_scale_can_overflow() -> None:
    h = DAY
    params = covisit_params(half_life_s=h)
    row = merge_row(None, {"b": 1.0}, 0.0, params)
    far = (REBASE_EXPONENT + 10) * h
    row = merge_row(row, {"c": 1.0}, far, params)
    assert row.landmark == far
    assert row.scores["c"] == pytest.approx(1.0)
    assert _value_now(row, "b", far, h) == pytest.approx(2.0 ** -(REBASE_EXPONENT + 10))
    row = merge_row(row, {"b": 1.0}, 10_000 * h, params)  # 2^-10000 underflows: b decays out
    assert math.isfinite(row.scores["b"])


def test_rows_stay_bounded_and_keep_the_strongest_neighbours() -> None:
    params = covisit_params(max_neighbours=3)
    row = None
    for i in range(50):
        row = merge_row(row, {f"n{i}": float(i)}, 0.0, params)
        assert len(row.scores) <= 2 * params.max_neighbours
    prune(row, params.max_neighbours)
    assert set(row.scores) == {"n49", "n48", "n47"}


def test_row_round_trips_through_its_stored_form() -> None:
    row = CovisitRow(12.5, {"a": 1.5, 'b\u00e9"': 0.25, "c": 1e-300})
    data = row.to_bytes()
    assert CovisitRow.from_bytes(data) == row
    assert list(CovisitRow.from_bytes(data).scores) == list(row.scores)  # order kept
    ids, scores = row_arrays(data)
    assert ids == list(row.scores) and scores.tolist() == list(row.scores.values())
    assert CovisitRow.from_bytes(CovisitRow().to_bytes()) == CovisitRow()
    assert stored_row(data) == row
    assert stored_row(None) is None


@pytest.mark.parametrize("ids", [["a", 'b\u00e9"', "", "c d"], [], [""], ["a", "b\x00c", "\U0001f600"]])
def test_any_ids_round_trip(ids: list[str]) -> None:
    row = CovisitRow(1.0, {k: float(i + 1) for i, k in enumerate(ids)})
    data = row.to_bytes()
    assert row_arrays(data)[0] == ids
    assert CovisitRow.from_bytes(data) == row and stored_row(data) == row


def _earlier_binary_row() -> bytes:
    # The hand-made form of earlier versions: magic SRC2, header, NUL-joined ids, scores.
    return b"SRC2" + struct.pack("<dII", 2.0, 2, 3) + b"a\x00b" + np.array([1.5, 0.5], "<f8").tobytes()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_earlier_binary_row(), "not a stored co-visitation row"),
        (json.dumps({"landmark": 2.0, "items": ["a"], "scores": "AAAAAAAA+D8="}).encode(), "not a stored"),
        (b"", "truncated"),
        (b"\xc1garbage", "not a stored"),
        (CovisitRow(1.0, {"a": 1.0}).to_bytes()[:-1], "truncated"),
        (CovisitRow(1.0, {"a": 1.0}).to_bytes() + b"\x00", "trailing"),
        (msgspec.msgpack.encode(StoredRow(1.0, b"\x00" * 16, ["a"])), "2 scores names 1 neighbours"),
        (msgspec.msgpack.encode(StoredRow(1.0, b"\x00" * 12, ["a"])), "not a whole number"),
        (msgspec.msgpack.encode(StoredRow(1.0, b"\x00" * 8, [1])), "Expected `str`"),
    ],
)
def test_anything_but_a_stored_row_is_refused_with_a_clear_error(data: bytes, match: str) -> None:
    """No reader of earlier forms is left: they, and garbage, raise FormatError."""
    with pytest.raises(FormatError, match=match):
        CovisitRow.from_bytes(data)
    with pytest.raises(FormatError):
        row_arrays(data)


def test_catalog_scores_a_binary_row_as_the_row_itself() -> None:
    vectors = {k: np.array([1.0, float(i)], dtype=np.float32) for i, k in enumerate("abcd")}
    decoded, lazy = _index_with(vectors), _index_with(vectors)
    row = CovisitRow(3.0, {"b": 2.0, "zz": 1.0, "c": 1.0})  # zz: not in the catalog yet
    decoded.set_covisits("a", row)
    lazy.set_covisits("a", row.to_bytes())
    for got, want in zip(lazy.covisits_of("a"), decoded.covisits_of("a"), strict=True):
        np.testing.assert_array_equal(got, want)
    assert lazy.view().item_ids == decoded.view().item_ids  # the unknown neighbour got its row
    lazy.set_covisits("a", None)
    assert lazy.covisits_of("a") is None
    lazy.set_covisits("a", CovisitRow(3.0, {}).to_bytes())  # an empty row, stored: as none
    assert lazy.covisits_of("a") is None and lazy.covisits_of("a") is None


def test_merging_aligned_sequences_is_merging_their_dict() -> None:
    params = covisit_params(half_life_s=10.0)
    by_dict = merge_row(CovisitRow(0.0, {"a": 1.0}), {"b": 2.0, "a": 0.5}, 10.0, params)
    by_entries = merge_row_entries(CovisitRow(0.0, {"a": 1.0}), ["b", "a"], [2.0, 0.5], 10.0, params)
    assert by_entries == by_dict == CovisitRow(0.0, {"a": 2.0, "b": 4.0})
    assert list(by_entries.scores) == ["a", "b"]


def test_the_published_row_is_bounded_to_the_strongest_neighbours() -> None:
    params = covisit_params(max_neighbours=3)
    row = None
    for i in range(5):  # not yet pruned in memory: 5 <= 2 * 3
        row = merge_row(row, {f"n{i}": float(i)}, 0.0, params)
    assert len(row.scores) == 5
    stored = published(row, params.max_neighbours)
    assert stored.scores == {"n4": 4.0, "n3": 3.0, "n2": 2.0} and stored.landmark == row.landmark
    assert published(stored, params.max_neighbours) is stored
    assert list(stored.scores) == ["n4", "n3", "n2"]  # strongest first


def test_published_rows_keep_the_earlier_of_equal_scores() -> None:
    row = CovisitRow(0.0, {"z": 1.0, "b": 3.0, "y": 1.0, "a": 1.0, "c": 0.5})
    assert published(row, 3).scores == {"b": 3.0, "z": 1.0, "y": 1.0}


@pytest.mark.parametrize("size", [0, 3, 5, 9])
def test_published_bytes_are_the_published_row_stored(size: int) -> None:
    scores = {"z": 1.0, "b": 3.0, "y": 1.0, "a": 1.0, "c": 0.5, "d": 2.0, "e": 1e-300, "f": 2.0}
    row = CovisitRow(7.0, dict(list(scores.items())[:size]))
    for bound in (1, 3, 8):
        data = published_bytes(row, bound)
        assert data == published(row, bound).to_bytes()
        assert CovisitRow.from_bytes(data) == published(row, bound)


def _index_with(items: dict[str, np.ndarray]) -> CatalogIndex:
    index = CatalogIndex("m", 2)
    for item_id, vector in items.items():
        index.upsert(item_id, vector, "m", None)
    return index


def test_evidence_weights_each_recent_row_by_recency_and_normalises_it() -> None:
    unit = np.array([1.0, 0.0], dtype=np.float32)
    index = _index_with({k: unit for k in "abxyz"})
    index.set_covisits("a", CovisitRow(0.0, {"x": 3.0, "y": 1.0}))
    index.set_covisits("b", CovisitRow(0.0, {"z": 100.0}))
    profile = UserProfile(history=[("a", 0.0, 1.0), ("b", 1.0, 1.0)])
    view = index.user_view(profile, history_items=10, covisit_items=10)
    signal = covisit_signal(view, len(index))
    rows = dict(zip(["a", "b", "x", "y", "z"], index.rows_of("abxyz"), strict=True))
    # b is the most recent (weight 1, row sums to 1), a second (weight 1/2).
    assert signal[rows["z"]] == pytest.approx(1.0)
    assert signal[rows["x"]] == pytest.approx(0.5 * 0.75)
    assert signal[rows["y"]] == pytest.approx(0.5 * 0.25)
    index.set_covisits("b", None)
    assert index.covisits_of("b") is None


def test_covisited_item_is_ranked_first_with_its_reason() -> None:
    # All items look the same to content; only co-visitation tells them apart.
    unit = np.array([1.0, 0.0], dtype=np.float32)
    index = _index_with({k: unit for k in ("seen", "after", "other1", "other2")})
    index.set_covisits("seen", CovisitRow(0.0, {"after": 5.0, "other1": 1.0}))
    profile = UserProfile(history=[("seen", 0.0, 1.0)])
    config = ranking_config(weight_covisit=1.0, covisit_items=5)
    view = index.user_view(profile, 10, config.covisit_items)
    ranked = rank_catalog_batch([view], index.view(), [0.0], config, k=3)[0]
    assert [r.item_id for r in ranked][:2] == ["after", "other1"]
    assert ranked[0].reason == "covisited"
    assert "seen" not in [r.item_id for r in ranked]
