"""ModelCatalog: which model's vectors scoring reads while the configured model takes over;
CatalogIndex's cache of similarity rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream.core import popularity
from stream.core.catalog import CatalogIndex, ModelCatalog
from stream.core.covisit import CovisitRow
from stream.core.profiles import ProfileParams, UserProfile, apply_event, encode_vector
from stream.core.ranking import RankingConfig, rank_catalog_batch
from stream.pipeline.tables import apply_catalog_entry, apply_covisit_entry, apply_popularity_entry

OLD, NEW = "old:mean:norm:128", "new:mean:norm:64"


def entry(model_id: str, vector: list[float] | None, ts: float = 0.0) -> dict[str, Any]:
    value: dict[str, Any] = {"text": "t", "title": "t", "ts": ts, "model_id": model_id if vector else ""}
    if vector is not None:
        value["vector"] = encode_vector(np.asarray(vector, dtype=np.float32))
    return value


def models_in_view(catalog: ModelCatalog) -> set[str]:
    """Model of every vector scoring would read now (each index holds one model by construction)."""
    index = catalog.active
    view = index.view()
    return {index.model_id} if view.active.any() else set()


def test_a_fresh_catalog_scores_on_the_configured_model() -> None:
    catalog = ModelCatalog(NEW, 2)
    apply_catalog_entry(catalog, "a", entry(NEW, [1, 0]))
    assert catalog.active is catalog.target and not catalog.switching
    assert catalog.missing() == []


def test_old_vectors_keep_serving_until_every_item_is_re_encoded() -> None:
    catalog = ModelCatalog(NEW, 2)
    for item in ("a", "b", "c"):
        apply_catalog_entry(catalog, item, entry(OLD, [1, 0, 0]))  # another model, another dim
    assert catalog.active.model_id == OLD and catalog.switching
    assert catalog.active.active_count == 3
    assert sorted(catalog.missing()) == ["a", "b", "c"]

    apply_catalog_entry(catalog, "a", entry(NEW, [0, 1]))
    apply_catalog_entry(catalog, "b", entry(NEW, [0, 1]))
    assert not catalog.try_switch(), "c has no vector of the new model yet"
    assert catalog.active.model_id == OLD
    assert catalog.active.active_count == 3, "re-encoded items keep their old vectors meanwhile"
    assert models_in_view(catalog) == {OLD}

    apply_catalog_entry(catalog, "c", entry(NEW, [0, 1]))
    assert catalog.try_switch()
    assert catalog.active is catalog.target and catalog.active.model_id == NEW
    assert catalog.active.active_count == 3
    assert [i.model_id for i in catalog.indexes()] == [NEW], "the old index is dropped"
    assert not catalog.try_switch()


def test_a_catalog_re_encoded_before_scoring_starts_counts_as_one_switch() -> None:
    # Re-encoding can finish before the first ranking chooses the scoring index: scoring
    # then starts on the new model, away from the old vectors the table held.
    catalog = ModelCatalog(NEW, 2)
    apply_catalog_entry(catalog, "a", entry(OLD, [1, 0, 0]))
    apply_catalog_entry(catalog, "a", entry(NEW, [0, 1]))
    assert catalog.active is catalog.target
    assert catalog.try_switch()
    assert not catalog.try_switch()


def test_a_restart_on_the_same_model_is_no_switch() -> None:
    catalog = ModelCatalog(NEW, 2)
    apply_catalog_entry(catalog, "a", entry(NEW, [0, 1]))
    assert catalog.active is catalog.target
    assert not catalog.try_switch()


def test_new_items_during_a_switch_wait_for_the_new_model() -> None:
    catalog = ModelCatalog(NEW, 2)
    apply_catalog_entry(catalog, "a", entry(OLD, [1, 0, 0]))
    assert catalog.active.model_id == OLD
    apply_catalog_entry(catalog, "fresh", entry(NEW, [0, 1]))
    old = catalog.active
    assert old.vector_of("fresh") is None, "no old-model vector exists for it"
    assert catalog.missing() == ["a"]


def test_deletes_apply_to_every_index() -> None:
    catalog = ModelCatalog(NEW, 2)
    apply_catalog_entry(catalog, "a", entry(OLD, [1, 0, 0]))
    apply_catalog_entry(catalog, "b", entry(OLD, [1, 0, 0]))
    assert catalog.active.model_id == OLD
    apply_catalog_entry(catalog, "a", {"deleted": True})
    assert catalog.active.active_count == 1
    assert catalog.missing() == ["b"]
    apply_catalog_entry(catalog, "b", None)
    assert catalog.missing() == []
    assert catalog.try_switch()
    assert catalog.active.active_count == 0


def test_after_the_switch_a_stale_old_vector_is_re_encoded_not_used() -> None:
    catalog = ModelCatalog(NEW, 2)
    apply_catalog_entry(catalog, "a", entry(NEW, [0, 1]))
    assert catalog.active is catalog.target
    apply_catalog_entry(catalog, "a", entry(OLD, [1, 0, 0]))  # a worker still on the old model
    assert catalog.active is catalog.target
    assert catalog.target.vector_of("a") is None
    assert catalog.missing() == ["a"]
    assert len(catalog.indexes()) == 1


def test_deferred_items_are_missing_until_encoded() -> None:
    catalog = ModelCatalog(NEW, 2)
    apply_catalog_entry(catalog, "a", entry(NEW, None))
    assert catalog.active is catalog.target
    assert catalog.missing() == ["a"]
    apply_catalog_entry(catalog, "a", entry(NEW, [0, 1]))
    assert catalog.missing() == []


def test_items_known_only_by_popularity_are_not_missing() -> None:
    catalog = ModelCatalog(NEW, 2)
    catalog.set_popularity("ghost", 3.0, 10.0)
    assert catalog.missing() == []


def test_a_restart_mid_switch_scores_on_the_model_covering_more_items() -> None:
    catalog = ModelCatalog(NEW, 2)
    apply_catalog_entry(catalog, "a", entry(OLD, [1, 0, 0]))
    for item in ("b", "c"):
        apply_catalog_entry(catalog, item, entry(NEW, [0, 1]))
    assert catalog.current() is catalog.target, "reading current() chooses nothing"
    assert catalog.active is catalog.target
    assert catalog.missing() == ["a"]
    assert len(catalog.indexes()) == 1


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


def test_similarity_rows_are_cached_extended_and_invalidated() -> None:
    index = _index(50)
    first = index.similarity_rows(["i3", "i7", "i3"])
    assert [len(r) for r in first] == [50, 50, 50]
    assert np.allclose(first[0], _direct(index, "i3")) and np.allclose(first[1], _direct(index, "i7"))
    assert np.array_equal(index.similarity_rows(["i3"])[0], first[0])

    index.upsert("new", np.ones(8, dtype=np.float32) / np.sqrt(8), NEW, 0.0)  # appended: rows extend
    extended = index.similarity_rows(["i3"])[0]
    assert len(extended) == 51 and np.allclose(extended, _direct(index, "i3"))

    changed = np.zeros(8, dtype=np.float32)
    changed[0] = 1.0
    index.upsert("i5", changed, NEW, 5.0)  # an existing vector changes: no stale column
    assert np.allclose(index.similarity_rows(["i3"])[0], _direct(index, "i3"))
    index.upsert("i5", changed, NEW, 5.0)  # the same vector again (a changelog replay) keeps rows
    assert "i3" in index._similarity_rows


def test_similarity_cache_is_bounded_by_bytes() -> None:
    index = _index(100, cache_bytes=4 * 100 * 3)  # room for three rows of 100 items
    index.similarity_rows([f"i{i}" for i in range(10)])
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
    config = RankingConfig(weight_interest=0.3, weight_history=0.6, weight_popularity=0.0)
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
    rows = index.similarity_rows(["i0", "i2999", "i1500"])
    for item, row in zip(["i0", "i2999", "i1500"], rows, strict=True):
        np.testing.assert_allclose(row, vectors @ index.vector_of(item), atol=1e-6)
    assert rows[0][7] == 0.0  # the deleted item's column is zero


def test_statistics_table_values_of_every_stored_form_reach_the_catalog() -> None:
    catalog = ModelCatalog(OLD, 2)
    for item_id in ("a", "b"):
        apply_catalog_entry(catalog, item_id, entry(OLD, [1.0, 0.0]))
    apply_popularity_entry(catalog, "a", popularity.encode_entry(3.0, 10.0))
    apply_popularity_entry(catalog, "b", b'{"score": 2.0, "ref_ts": 5.0}')  # an earlier version's
    view = catalog.active.view()
    assert view.popularity.tolist() == [3.0, 2.0] and view.popularity_ref_ts.tolist() == [10.0, 5.0]
    apply_popularity_entry(catalog, "a", None)
    assert catalog.active.view().popularity[0] == 0.0

    apply_covisit_entry(catalog, "a", CovisitRow(1.0, {"b": 4.0}).to_bytes())
    rows, scores = catalog.active.covisits_of("a")
    assert rows.tolist() == [1] and scores.tolist() == [1.0]
    apply_covisit_entry(catalog, "a", CovisitRow(1.0, {}).to_bytes())  # an empty row removes it
    assert catalog.active.covisits_of("a") is None
    apply_covisit_entry(catalog, "b", b'{"landmark": 1.0, "items": ["a"], "scores": "AAAAAAAA8D8="}')
    assert catalog.active.covisits_of("b")[0].tolist() == [0]
    apply_covisit_entry(catalog, "b", None)
    assert catalog.active.covisits_of("b") is None
