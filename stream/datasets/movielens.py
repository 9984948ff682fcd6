"""MovieLens ml-latest-small: load it, turn it into streamrank messages.

Items: title, genres (as category) and user tags (as text), born on January 1st of the
release year in the title. Events: each rating is a ``rate`` event weighted rating/5, at
its own timestamp. Data is read from a directory; when none is given, the public zip is
downloaded once into a cache.
"""

from __future__ import annotations

import calendar
import csv
import io
import logging
import re
import urllib.request
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.errors import DataNotFound

log = logging.getLogger(__name__)

DOWNLOAD_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_TAGS_PER_ITEM = 12  # enough to describe a film, short enough for 128 tokens


@dataclass(frozen=True, slots=True)
class Movie:
    """One row of movies.csv."""

    movie_id: str
    title: str
    genres: tuple[str, ...]

    @property
    def year(self) -> int | None:
        """Release year parsed from the title, if present."""
        match = _YEAR.search(self.title)
        return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class Rating:
    """One row of ratings.csv."""

    user_id: str
    movie_id: str
    rating: float
    ts: int


def resolve_data_dir(path: str, cache_dir: str) -> Path:
    """The ml-latest-small directory: ``path`` if given, else a cached download."""
    if path:
        data = Path(path)
        if not (data / "movies.csv").is_file() or not (data / "ratings.csv").is_file():
            raise DataNotFound(f"{data} has no movies.csv/ratings.csv (MovieLens ml-latest-small)")
        return data
    target = Path(cache_dir) / "ml-latest-small"
    if not (target / "ratings.csv").is_file():
        log.info("downloading %s into %s", DOWNLOAD_URL, cache_dir)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(DOWNLOAD_URL, timeout=60) as response:
            zipfile.ZipFile(io.BytesIO(response.read())).extractall(cache_dir)
    return target


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def load_movies(data: Path) -> list[Movie]:
    """All movies, in file order."""
    return [
        Movie(
            row["movieId"],
            row["title"],
            tuple(g for g in row["genres"].split("|") if g != "(no genres listed)"),
        )
        for row in _rows(data / "movies.csv")
    ]


def load_ratings(data: Path) -> list[Rating]:
    """All ratings in time order (the file is sorted by user, not time)."""
    ratings = [
        Rating(row["userId"], row["movieId"], float(row["rating"]), int(row["timestamp"]))
        for row in _rows(data / "ratings.csv")
    ]
    ratings.sort(key=lambda r: (r.ts, int(r.user_id), int(r.movie_id)))
    return ratings


def load_tags(data: Path, before_ts: float | None = None) -> dict[str, list[str]]:
    """Most frequent tags per movie (case-folded), optionally only those before a time."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    path = data / "tags.csv"
    if not path.is_file():
        return {}
    for row in _rows(path):
        if before_ts is not None and int(row["timestamp"]) >= before_ts:
            continue
        counts[row["movieId"]][row["tag"].strip().lower()] += 1
    return {movie: [t for t, _ in c.most_common(_TAGS_PER_ITEM)] for movie, c in counts.items()}


def item_message(movie: Movie, tags: list[str]) -> dict[str, Any]:
    """The ``items`` message of a movie."""
    message: dict[str, Any] = {
        "item_id": movie.movie_id,
        "title": movie.title,
        "category": ", ".join(movie.genres),
    }
    if tags:
        message["text"] = "Tags: " + ", ".join(tags)
    if movie.year is not None:
        message["ts"] = calendar.timegm((movie.year, 1, 1, 0, 0, 0))
    return message


def event_message(rating: Rating) -> dict[str, Any]:
    """The ``events`` message of a rating."""
    return {
        "user_id": rating.user_id,
        "item_id": rating.movie_id,
        "type": "rate",
        "ts": rating.ts,
        "weight": rating.rating / 5.0,
    }
