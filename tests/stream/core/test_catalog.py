"""CatalogIndex: rows addressed by item id, growth, item-time groups, and the cache of
similarity rows that ranking reads."""

from __future__ import annotations

import numpy as np

from stream.core.catalog import CatalogIndex
from stream.core.profiles import ProfileParams, UserProfile
from stream.core.ranking import rank_catalog_batch
from tests.params import ranking_config
from tests.reference import apply_event

NEW = "new:mean:norm:64"


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_model_mismatch_is_not_scored() -> None:
    idx = CatalogIndex("m", 2)
    idx.upsert("a", unit(1, 0), "other-model", ts=None)
    idx.upsert("b", unit(1, 0), "m", ts=None)
    assert idx.vector_of("a") is None and idx.active_count == 1


def test_index_grows_past_initial_capacity() -> None:
    idx = CatalogIndex("m", 4)
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((3000, 4)).astype(np.float32)
    for i, v in enumerate(vecs):
        idx.upsert(str(i), v, "m", ts=float(i))
    assert len(idx) == 3000 and idx.active_count == 3000
    np.testing.assert_array_equal(idx.vector_of("2999"), vecs[2999])
    np.testing.assert_array_equal(idx.vector_of("5"), vecs[5])


def test_the_index_recomputes_time_groups_only_when_a_time_changes() -> None:
    idx = CatalogIndex("m", 2)
    idx.upsert("a", unit(1, 0), "m", ts=10.0)
    idx.upsert("b", unit(0, 1), "m", ts=10.0)
    first = idx.view().ts_groups
    idx.upsert("a", unit(1, 1), "m", ts=10.0)  # a new vector, the same time
    assert idx.view().ts_groups is first
    idx.upsert("b", unit(0, 1), "m", ts=20.0)
    distinct, inverse = idx.view().ts_groups
    np.testing.assert_array_equal(distinct[inverse], [10.0, 20.0])
    idx.set_popularity("c", 1.0, 0.0)  # a row without a time
    distinct, inverse = idx.view().ts_groups
    assert len(inverse) == 3 and np.isnan(distinct[inverse][2])


def _index(n: int, dim: int = 8, seed: int = 0, cache_bytes: int = 1 << 20) -> CatalogIndex:
    rng = np.random.default_rng(seed)
    index = CatalogIndex(NEW, dim, similarity_cache_bytes=cache_bytes)
    for i in range(n):
        vector = rng.standard_normal(dim).astype(np.float32)
        index.upsert(f"i{i}", vector / np.linalg.norm(vector), NEW, float(i))
    return index


def _direct(index: CatalogIndex, item_id: str) -> np.ndarray:
    view = index.view()
    return view.vectors @ index.vector_of(item_id)


def similarity_rows(index: CatalogIndex, item_ids: list[str]) -> list[np.ndarray]:
    """The similarity rows of distinct ``item_ids``, read as ranking reads them: the view of
    a user who took them (the first most recently)."""
    profile = UserProfile(history=[(item_id, 0.0, 1.0) for item_id in reversed(item_ids)])
    view = index.user_views([profile], history_items=len(item_ids))[0]
    assert view.history_ids == item_ids and view.history_sims is not None
    return list(view.history_sims)


def test_similarity_rows_are_cached_extended_and_invalidated() -> None:
    index = _index(50)
    first = similarity_rows(index, ["i3", "i7"])
    assert [len(r) for r in first] == [50, 50]
    assert np.allclose(first[0], _direct(index, "i3")) and np.allclose(first[1], _direct(index, "i7"))
    assert np.array_equal(similarity_rows(index, ["i3"])[0], first[0])

    index.upsert("new", np.ones(8, dtype=np.float32) / np.sqrt(8), NEW, 0.0)  # appended: rows extend
    extended = similarity_rows(index, ["i3"])[0]
    assert len(extended) == 51 and np.allclose(extended, _direct(index, "i3"))

    changed = np.zeros(8, dtype=np.float32)
    changed[0] = 1.0
    index.upsert("i5", changed, NEW, 5.0)  # an existing vector changes: no stale column
    assert np.allclose(similarity_rows(index, ["i3"])[0], _direct(index, "i3"))
    index.upsert("i5", changed, NEW, 5.0)  # the same vector again (a changelog replay) keeps rows
    assert "i3" in index._similarity_rows


def test_similarity_cache_is_bounded_by_bytes() -> None:
    index = _index(100, cache_bytes=4 * 100 * 3)  # room for three rows of 100 items
    similarity_rows(index, [f"i{i}" for i in range(10)])
    assert list(index._similarity_rows) == ["i7", "i8", "i9"]  # the least recent dropped


def test_ranking_with_cached_similarities_equals_ranking_without() -> None:
    cached, plain = _index(300, seed=3), _index(300, seed=3, cache_bytes=0)
    params = ProfileParams(half_life_s=1e9, history_size=50, pending_size=10, model_id=NEW)
    profiles = []
    for u in range(4):
        profile = UserProfile(model_id=NEW)
        for j in range(6):
            item = f"i{(u * 37 + j * 11) % 300}"
            apply_event(profile, item, "view", float(j), 1.0, cached.vector_of(item), params)
        profiles.append(profile)
    config = ranking_config(weight_interest=0.3, weight_history=0.6, weight_popularity=0.0)
    with_cache = cached.user_views(profiles, history_items=5)
    assert all(v.history_sims is not None and v.interest_sims is not None for v in with_cache)
    without = [plain.user_view(p, history_items=5) for p in profiles]
    assert all(v.history_sims is None and v.interest_sims is None for v in without)
    got = rank_catalog_batch(with_cache, cached.view(), [10.0] * 4, config)
    want = rank_catalog_batch(without, plain.view(), [10.0] * 4, config)
    assert [[(r.item_id, r.reason) for r in lst] for lst in got] == [
        [(r.item_id, r.reason) for r in lst] for lst in want
    ]
    for a, b in zip(got, want, strict=True):
        assert np.allclose([r.score for r in a], [r.score for r in b], atol=1e-5)


def test_interest_rows_come_from_the_same_product_as_the_missing_history_rows() -> None:
    index = _index(200, seed=5)
    params = ProfileParams(half_life_s=1e9, history_size=50, pending_size=10, model_id=NEW)
    profile = UserProfile(model_id=NEW)
    for j, item in enumerate(["i3", "i40", "i77"]):
        apply_event(profile, item, "view", float(j), 1.0, index.vector_of(item), params)
    cold, warm = index.user_views([None, profile], history_items=5)
    assert cold.interest_sims is None and cold.history_sims is None
    direction = profile.vector / np.linalg.norm(profile.vector)
    np.testing.assert_allclose(warm.interest_sims, index.view().vectors @ direction, atol=1e-6)
    assert list(index._similarity_rows) == ["i77", "i40", "i3"]  # computed then, and cached


def test_similarity_rows_follow_growth_changes_and_deletions() -> None:
    """The products read a column copy of the vectors: it must track every write."""
    index = CatalogIndex(NEW, 4)
    rng = np.random.default_rng(9)
    for i in range(3000):  # grows past the initial capacity twice
        vector = rng.standard_normal(4).astype(np.float32)
        index.upsert(f"i{i}", vector / np.linalg.norm(vector), NEW, None)
    index.delete("i7")
    changed = np.array([0.0, 0.0, 1.0, 0.0], dtype=np.float32)
    index.upsert("i2999", changed, NEW, None)
    vectors = index.view().vectors
    rows = similarity_rows(index, ["i0", "i2999", "i1500"])
    for item, row in zip(["i0", "i2999", "i1500"], rows, strict=True):
        np.testing.assert_allclose(row, vectors @ index.vector_of(item), atol=1e-6)
    assert rows[0][7] == 0.0  # the deleted item's column is zero
