"""Shared fixtures: the MovieLens data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The real ml-latest-small directory (STREAMRANK_DATA or ../shared/data)."""
    path = Path(os.environ.get("STREAMRANK_DATA") or DEFAULT_DATA)
    if not (path / "movies.csv").is_file():
        pytest.skip(f"MovieLens data not found at {path}; set STREAMRANK_DATA")
    return path
