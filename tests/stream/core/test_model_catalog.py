"""ModelCatalog: which model's vectors scoring reads while the configured model takes over,
and the stored statistics values that reach every index."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream.core import popularity
from stream.core.covisit import CovisitRow
from stream.core.model_catalog import ModelCatalog
from stream.core.profiles import encode_vector
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
    assert catalog.active is catalog.target
    assert catalog.missing() == []


def test_old_vectors_keep_serving_until_every_item_is_re_encoded() -> None:
    catalog = ModelCatalog(NEW, 2)
    for item in ("a", "b", "c"):
        apply_catalog_entry(catalog, item, entry(OLD, [1, 0, 0]))  # another model, another dim
    assert catalog.active.model_id == OLD and catalog.active is not catalog.target
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


def test_statistics_table_values_of_every_stored_form_reach_the_catalog() -> None:
    catalog = ModelCatalog(OLD, 2)
    for item_id in ("a", "b"):
        apply_catalog_entry(catalog, item_id, entry(OLD, [1.0, 0.0]))
    apply_popularity_entry(catalog, "a", popularity.encode_entry(3.0, 10.0))
    apply_popularity_entry(catalog, "b", popularity.encode_entry(2.0, 5.0))
    view = catalog.active.view()
    assert view.popularity.tolist() == [3.0, 2.0] and view.popularity_ref_ts.tolist() == [10.0, 5.0]
    apply_popularity_entry(catalog, "a", None)
    assert catalog.active.view().popularity[0] == 0.0

    apply_covisit_entry(catalog, "a", CovisitRow(1.0, {"b": 4.0}).to_bytes())
    rows, scores = catalog.active.covisits_of("a")
    assert rows.tolist() == [1] and scores.tolist() == [1.0]
    apply_covisit_entry(catalog, "a", CovisitRow(1.0, {}).to_bytes())  # an empty row removes it
    assert catalog.active.covisits_of("a") is None
    apply_covisit_entry(catalog, "b", CovisitRow(1.0, {"a": 1.0}).to_bytes())
    assert catalog.active.covisits_of("b")[0].tolist() == [0]
    apply_covisit_entry(catalog, "b", None)
    assert catalog.active.covisits_of("b") is None
