"""The content-hash cache, alone and inside TextEncoder (identical texts are encoded once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from encoders.cache import VectorCache, text_key
from encoders.text import TextEncoder


def _rows(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _count_model_texts(encoder: TextEncoder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of texts of each call that reaches the model."""
    calls: list[int] = []
    run = encoder.encode_ids

    def counted(ids: Sequence[Sequence[int]]) -> np.ndarray:
        calls.append(len(ids))
        return run(ids)

    monkeypatch.setattr(encoder, "encode_ids", counted)
    return calls


def test_hits_return_exactly_what_was_stored() -> None:
    cache = VectorCache(10)
    rows = _rows(3)
    cache.put_many("m", ["a", "b", "c"], rows)
    found = cache.get_many("m", ["c", "x", "a"])
    assert found[1] is None
    np.testing.assert_array_equal(found[0], rows[2])
    np.testing.assert_array_equal(found[2], rows[0])


def test_stored_vectors_are_private_copies() -> None:
    cache = VectorCache(10)
    rows = _rows(1)
    cache.put_many("m", ["a"], rows)
    rows[0] = 0.0  # the caller's array changes afterwards
    (stored,) = cache.get_many("m", ["a"])
    assert stored is not None and stored.any()
    with pytest.raises(ValueError, match="read-only"):
        stored[0] = 1.0


def test_keys_are_per_model() -> None:
    cache = VectorCache(10)
    cache.put_many("model-a", ["same text"], _rows(1))
    assert cache.get_many("model-b", ["same text"]) == [None]


def test_least_recently_used_is_evicted() -> None:
    cache = VectorCache(2)
    cache.put_many("m", ["a", "b"], _rows(2))
    cache.get_many("m", ["a"])  # a is now more recent than b
    cache.put_many("m", ["c"], _rows(1, seed=1))
    assert len(cache) == 2
    a, b, c = cache.get_many("m", ["a", "b", "c"])
    assert a is not None and b is None and c is not None


def test_zero_capacity_keeps_nothing() -> None:
    cache = VectorCache(0)
    cache.put_many("m", ["a"], _rows(1))
    assert cache.get_many("m", ["a"]) == [None]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        VectorCache(-1)
    with pytest.raises(ValueError, match="2 vectors for 1 texts"):
        VectorCache(1).put_many("m", ["a"], _rows(2))


def test_every_str_has_a_key() -> None:
    assert text_key("a") != text_key("b")
    assert len(text_key("lone \ud800 surrogate")) == 32


@pytest.mark.model
def test_encoder_with_cache_returns_identical_vectors(
    make_encoder: Callable[..., TextEncoder], movie_texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = VectorCache(1000)
    encoder = make_encoder(cache=cache)
    model_calls = _count_model_texts(encoder, monkeypatch)
    first = encoder.encode(movie_texts[:20])
    # Mixed: ten seen before (in another order) and five new ones.
    texts = movie_texts[20:25] + movie_texts[:10][::-1]
    second = encoder.encode(texts)
    assert model_calls == [20, 5], "only the texts not seen before reach the model"
    np.testing.assert_array_equal(second[5:], first[:10][::-1])
    np.testing.assert_array_equal(encoder.encode(movie_texts[:20]), first)
    assert model_calls == [20, 5]


@pytest.mark.model
def test_cache_is_keyed_by_model_id(
    make_encoder: Callable[..., TextEncoder], movie_texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = VectorCache(1000)
    mean = make_encoder(cache=cache)
    cls = make_encoder(cache=cache, pooling="cls")
    model_calls = _count_model_texts(cls, monkeypatch)
    a = mean.encode(movie_texts[:3])
    b = cls.encode(movie_texts[:3])
    assert model_calls == [3], "another model's vectors are never returned"
    assert not np.allclose(a, b, atol=1e-3)


@pytest.mark.model
def test_duplicates_within_a_call_are_encoded_once(
    make_encoder: Callable[..., TextEncoder], movie_texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = VectorCache(100)
    encoder = make_encoder(cache=cache)
    model_calls = _count_model_texts(encoder, monkeypatch)
    texts = [movie_texts[0], movie_texts[1], movie_texts[0], movie_texts[0]]
    vectors = encoder.encode(texts)
    assert model_calls == [2] and len(cache) == 2
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], vectors[3])
