"""Similarity products: float32 for a few rows, and Int8Catalog's int8 products that keep
up with a changing catalog."""

from __future__ import annotations

import numpy as np

from stream.core.catalog import CatalogIndex
from stream.core.profiles import UserProfile
from stream.core.similarity import Int8Catalog, similarity_product

MODEL = "m:mean:norm:64"
# The int8 products' error bound on unit vectors of 64 dimensions; MiniLM's 384 measured
# within 0.005 on the MovieLens catalog.
TOLERANCE = 0.02


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def similarity_rows(index: CatalogIndex, item_ids: list[str]) -> list[np.ndarray]:
    """The similarity rows of distinct ``item_ids``, as ranking reads them (a user's view)."""
    profile = UserProfile(history=[(item_id, 0.0, 1.0) for item_id in reversed(item_ids)])
    view = index.user_views([profile], history_items=len(item_ids))[0]
    assert view.history_ids == item_ids and view.history_sims is not None
    return list(view.history_sims)


def test_similarity_product_of_few_rows_equals_the_matrix_product() -> None:
    """Up to a few query rows are multiplied one by one; the result is the same product."""
    rng = np.random.default_rng(3)
    columns = rng.standard_normal((16, 50), dtype=np.float32)[:, :37]  # a strided slice, as the index's
    for k in (1, 2, 3, 4, 6):
        queries = rng.standard_normal((k, 16), dtype=np.float32)
        got = similarity_product(queries, columns)
        assert got.shape == (k, 37) and got.dtype == np.float32
        np.testing.assert_allclose(got, queries @ columns, rtol=1e-5, atol=1e-5)


def test_products_are_the_float_products_within_the_int8_error() -> None:
    vectors = unit_rows(3000, 64, seed=1)
    queries = vectors[[5, 17, 2999, 40]]
    got = Int8Catalog().product(queries, vectors)
    want = queries @ vectors.T
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < TOLERANCE
    # The same item comes out on top: each query is its own nearest row.
    assert got.argmax(axis=1).tolist() == [5, 17, 2999, 40]


def test_appended_and_changed_rows_are_multiplied_exactly_until_repacked() -> None:
    vectors = unit_rows(4000, 64, seed=2)
    products = Int8Catalog()
    queries = vectors[:3]
    products.product(queries, vectors[:3000])
    assert products.packed_rows == 3000

    changed = vectors[:3000].copy()
    changed[10] = vectors[3500]
    products.changed(10)
    grown = np.concatenate([changed, vectors[3000:3100]])  # 100 rows appended: fewer than the repack share
    got = products.product(queries, grown)
    assert products.packed_rows == 3000
    want = queries @ grown.T
    np.testing.assert_allclose(got[:, 3000:], want[:, 3000:], atol=1e-6)  # in float32
    np.testing.assert_allclose(got[:, 10], want[:, 10], atol=1e-6)
    assert np.abs(got - want).max() < TOLERANCE

    everything = np.concatenate([changed, vectors[3000:]])  # 1,000 appended: packed again
    got = products.product(queries, everything)
    assert products.packed_rows == 4000
    assert np.abs(got - queries @ everything.T).max() < TOLERANCE


def test_an_int8_index_tracks_writes_like_the_float_index() -> None:
    exact, int8 = CatalogIndex(MODEL, 64), CatalogIndex(MODEL, 64, similarity_precision="int8")
    vectors = unit_rows(2100, 64, seed=3)
    for i, vector in enumerate(vectors[:2000]):
        for index in (exact, int8):
            index.upsert(f"i{i}", vector, MODEL, None)
    ids = ["i0", "i7", "i1999"]
    similarity_rows(int8, ids)  # packs the 2,000 rows
    for index in (exact, int8):
        index.delete("i7")
        index.upsert("i3", vectors[2050], MODEL, None)
        for i in range(2000, 2040):
            index.upsert(f"i{i}", vectors[i], MODEL, None)
    ids = ["i0", "i3", "i2039"]
    got, want = similarity_rows(int8, ids), similarity_rows(exact, ids)
    for a, b in zip(got, want, strict=True):
        assert len(a) == len(b) == 2040
        assert np.abs(a - b).max() < TOLERANCE
        assert a[7] == 0.0  # the deleted item's column
    np.testing.assert_allclose(got[0][3], want[0][3], atol=1e-6)  # the changed row, in float32


def test_an_empty_catalog_gives_empty_rows() -> None:
    assert Int8Catalog().product(unit_rows(2, 8, 0), np.zeros((0, 8), np.float32)).shape == (2, 0)
