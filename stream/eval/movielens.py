"""``streamrank eval movielens``: prequential evaluation on MovieLens ratings.

The ratings are sorted by time; the last ``eval_fraction`` of them is the evaluation
period, of which a seeded ``sample`` is scored; everything before is warm-up (applied,
never scored). Item text is the title, genres and the tags given before the
evaluation period. An item enters the catalog at its release date (January 1st of the
year in its title) or at its first rating, whichever is earlier, so no list holds an
item from the future.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.config import Settings
from stream.core.catalog import CatalogIndex
from stream.core.contracts import InteractionEvent, decode_item
from stream.core.covisit import CovisitParams
from stream.core.profiles import ProfileParams
from stream.core.ranking import RankingConfig
from stream.datasets.movielens import Rating, item_message, load_movies, load_ratings, load_tags
from stream.eval.prequential import METHODS, CatalogItem, StreamState, prequential, summary_line

if TYPE_CHECKING:
    from encoders.text import TextEncoder

log = logging.getLogger(__name__)

# Half-life of the popularity baseline's counts: the best for popularity alone on a
# tuning split of MovieLens (first 80% of the available ratings, scored on their own last
# 20%; HR@10 7 days 0.020, 30 days 0.029, 90 days 0.040, 180 days 0.042, 1 year 0.047,
# 2 years 0.045, 10 years 0.042). Production's half-life suits the hybrid, not the baseline.
BASELINE_POPULARITY_HALF_LIFE_S = 365 * 86400.0


@dataclass(frozen=True, slots=True)
class EvalSplit:
    """The time-ordered events, which of them are scored, and the catalog."""

    events: list[InteractionEvent]
    scored: np.ndarray  # (len(events),) bool
    eval_start: int  # index of the first event of the evaluation period
    item_ids: list[str]
    texts: list[str]
    item_ts: list[float | None]
    available_ts: list[float]


def rating_event(rating: Rating) -> InteractionEvent:
    """The interaction a rating becomes (as the replay producer sends it)."""
    return InteractionEvent(rating.user_id, rating.movie_id, "rate", float(rating.ts), rating.rating / 5.0)


def split_movielens(
    data: Path, eval_fraction: float, sample: float, seed: int, max_text_chars: int = 4000
) -> EvalSplit:
    """Read the data and lay out warm-up, evaluation period and scored sample."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval fraction must be in (0, 1), got {eval_fraction}")
    if not 0.0 < sample <= 1.0:
        raise ValueError(f"sample must be in (0, 1], got {sample}")
    ratings = load_ratings(data)
    events = [rating_event(r) for r in ratings]
    eval_start = round(len(events) * (1.0 - eval_fraction))
    rng = np.random.default_rng(seed)
    scored = np.zeros(len(events), dtype=bool)
    scored[eval_start:] = rng.random(len(events) - eval_start) < sample
    start_ts = events[eval_start].ts if eval_start < len(events) else float("inf")
    tags = load_tags(data, before_ts=start_ts)
    first_rating: dict[str, float] = {}
    for ev in events:
        first_rating.setdefault(ev.item_id, ev.ts)
    item_ids, texts, item_ts, available = [], [], [], []
    for movie in load_movies(data):
        message = item_message(movie, tags.get(movie.movie_id, []))
        upsert = decode_item(json.dumps(message).encode(), max_text_chars)
        born = upsert.ts
        first = first_rating.get(movie.movie_id, float("inf"))
        item_ids.append(movie.movie_id)
        texts.append(upsert.encoder_text())
        item_ts.append(born)
        available.append(min(first, born if born is not None else float("inf")))
    return EvalSplit(events, scored, eval_start, item_ids, texts, item_ts, available)


def encode_cached(encoder: TextEncoder, texts: Sequence[str], cache_dir: Path) -> np.ndarray:
    """Encode texts, reusing the vectors of an earlier run of the same model and texts."""
    digest = hashlib.sha256(encoder.model_id.encode())
    for text in texts:
        digest.update(b"\0" + text.encode())
    path = cache_dir / "vectors" / f"{digest.hexdigest()[:32]}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape == (len(texts), encoder.dim):
            return vectors
    log.info("encoding %d item texts with %s", len(texts), encoder.model_id)
    vectors = encoder.encode(list(texts))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def new_state(
    settings: Settings, model_id: str, dim: int, baseline_popularity_half_life_s: float | None = None
) -> StreamState:
    """Empty state configured like the workers (and, if given, the popularity baseline's counts)."""
    return StreamState(
        CatalogIndex(
            model_id,
            dim,
            similarity_cache_bytes=settings.similarity_cache_mb << 20,
            similarity_precision=settings.similarity_precision,
        ),
        ProfileParams.from_settings(settings, model_id),
        CovisitParams.from_settings(settings),
        settings.event_weights,
        settings.popularity_half_life_s,
        baseline_popularity_half_life_s,
    )


def evaluate_movielens(
    settings: Settings,
    data: Path,
    encoder: TextEncoder,
    *,
    eval_fraction: float = 0.2,
    sample: float = 0.25,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    baseline_popularity_half_life_s: float | None = BASELINE_POPULARITY_HALF_LIFE_S,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run the offline prequential evaluation; return the JSON summary.

    The ``popularity`` method ranks by counts decayed with ``baseline_popularity_half_life_s``
    (None: production's half-life); every other method uses production's counts.
    """
    split = split_movielens(data, eval_fraction, sample, seed, settings.max_text_chars)
    vectors = encode_cached(encoder, split.texts, Path(settings.cache_dir))
    items = [
        CatalogItem(item_id, vectors[i], split.item_ts[i], split.available_ts[i])
        for i, item_id in enumerate(split.item_ids)
    ]
    state = new_state(settings, encoder.model_id, encoder.dim, baseline_popularity_half_life_s)
    progress = _progress_bar(len(split.events), show_progress)
    try:
        n, results = prequential(
            state,
            items,
            split.events,
            split.scored,
            RankingConfig.from_settings(settings),
            k=settings.top_k,
            seed=seed,
            methods=methods,
            progress=progress.update_to if progress else None,
        )
    finally:
        if progress:
            progress.close()
    return summary_line(n, results)


class _Bar:
    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="ev", mininterval=1.0)

    def update_to(self, position: int) -> None:
        if (position + 1) % 1000 == 0 or position + 1 == self._bar.total:
            self._bar.update(position + 1 - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _progress_bar(total: int, enabled: bool) -> _Bar | None:
    return _Bar(total) if enabled else None
