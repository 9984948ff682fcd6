"""``streamrank eval mind``: impression-level evaluation on MIND-format news data.

Impressions are replayed in time order. A user's ``History`` column seeds their profile
the first time they appear. Each impression's candidates are reranked with the
rerank-request path (``ranking.rank_candidates``) *before* its clicks are revealed;
then its clicks are applied as ``click`` events to every piece of state, as a worker
would. Metrics are those of the MIND benchmark (Wu et al., ACL 2020): AUC, MRR,
nDCG@5 and nDCG@10 per impression, averaged over impressions.

Files (tab-separated, no header):
- ``news.tsv``: news id, category, subcategory, title, abstract, url, title entities,
  abstract entities;
- ``behaviors.tsv``: impression id, user id, time (``11/15/2019 8:55:22 AM``), history
  (space-separated news ids), impressions (space-separated ``N123-1`` / ``N456-0``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.config import Settings
from stream.core.contracts import InteractionEvent
from stream.core.ranking import RankingConfig, rank_candidates
from stream.eval.movielens import encode_cached, new_state
from stream.eval.prequential import METHODS, StreamState, method_configs

if TYPE_CHECKING:
    from encoders.text import TextEncoder

_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


@dataclass(frozen=True, slots=True)
class News:
    """One row of news.tsv (the fields the encoder uses)."""

    news_id: str
    category: str
    subcategory: str
    title: str
    abstract: str

    def text(self) -> str:
        """Encoder text, shaped like an ``items`` message's."""
        parts = [self.title, f"Category: {self.category}, {self.subcategory}"]
        if self.abstract:
            parts.append(self.abstract)
        return ". ".join(parts)


@dataclass(frozen=True, slots=True)
class Impression:
    """One row of behaviors.tsv."""

    impression_id: str
    user_id: str
    ts: float
    history: tuple[str, ...]
    candidates: tuple[str, ...]
    labels: tuple[int, ...]


def _tsv(path: Path) -> Iterator[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)


def load_news(path: Path) -> list[News]:
    """All rows of news.tsv."""
    return [News(row[0], row[1], row[2], row[3], row[4] if len(row) > 4 else "") for row in _tsv(path)]


def load_impressions(path: Path) -> list[Impression]:
    """All rows of behaviors.tsv, in time order (ties by impression id)."""
    out = []
    for row in _tsv(path):
        pairs = [entry.rsplit("-", 1) for entry in row[4].split()]
        when = datetime.strptime(row[2], _TIME_FORMAT).replace(tzinfo=UTC)
        out.append(
            Impression(
                impression_id=row[0],
                user_id=row[1],
                ts=when.timestamp(),
                history=tuple(row[3].split()),
                candidates=tuple(news_id for news_id, _ in pairs),
                labels=tuple(int(label) for _, label in pairs),
            )
        )
    out.sort(key=lambda imp: (imp.ts, int(imp.impression_id) if imp.impression_id.isdigit() else 0))
    return out


def dcg(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Discounted cumulative gain of ``labels`` ordered by ``scores``, at k."""
    order = np.argsort(-scores, kind="stable")[:k]
    gains = 2.0 ** labels[order] - 1.0
    return float(np.sum(gains / np.log2(np.arange(order.size) + 2)))


def ndcg(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """nDCG at k (MIND's definition)."""
    best = dcg(labels, labels.astype(np.float64), k)
    return dcg(labels, scores, k) / best if best > 0 else 0.0


def mrr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean reciprocal rank of the clicked items (MIND's definition)."""
    order = np.argsort(-scores, kind="stable")
    ranked = labels[order]
    return float(np.sum(ranked / (np.arange(ranked.size) + 1)) / max(ranked.sum(), 1))


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC (ties count one half); None when only one class is present."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def impression_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """AUC, MRR, nDCG@5 and nDCG@10 of one impression."""
    return {
        "auc": auc(labels, scores),
        "mrr": mrr(labels, scores),
        "ndcg@5": ndcg(labels, scores, 5),
        "ndcg@10": ndcg(labels, scores, 10),
    }


def _seed_profile(state: StreamState, impression: Impression) -> None:
    # The history column is what the user clicked before the log starts: it seeds the
    # profile only (item statistics come from the clicks seen in the log), oldest first,
    # one second apart, ending just before the impression.
    n = len(impression.history)
    events = [
        InteractionEvent(impression.user_id, news_id, "click", impression.ts - (n - i), 1.0)
        for i, news_id in enumerate(impression.history)
    ]
    state.apply_to_profile(impression.user_id, events)


def evaluate_mind(
    settings: Settings,
    news_path: Path,
    behaviors_path: Path,
    encoder: TextEncoder,
    *,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
) -> dict[str, Any]:
    """Replay the impressions; return ``{"n": impressions, "methods": {m: metrics}}``."""
    news = load_news(news_path)
    impressions = load_impressions(behaviors_path)
    vectors = encode_cached(encoder, [n.text() for n in news], Path(settings.cache_dir))
    state = new_state(settings, encoder.model_id, encoder.dim)
    for i, item in enumerate(news):
        state.index.upsert(item.news_id, vectors[i], encoder.model_id, None)
    configs = method_configs(RankingConfig.from_settings(settings))
    rng = np.random.default_rng(seed)
    sums: dict[str, dict[str, float]] = {m: {} for m in methods}
    counts: dict[str, dict[str, int]] = {m: {} for m in methods}
    hybrid = configs["hybrid"]
    for impression in impressions:
        if impression.user_id not in state.profiles:
            _seed_profile(state, impression)
        labels = np.asarray(impression.labels, dtype=np.int64)
        view = state.index.user_view(
            state.profile(impression.user_id), hybrid.history_items, hybrid.covisit_items
        )
        catalog = state.index.view()
        rows = state.index.rows_of(impression.candidates)
        for method in methods:
            if method == "random":
                scores = rng.random(labels.size)
            else:
                ranked = rank_candidates(
                    view, catalog, impression.candidates, rows, impression.ts, configs[method]
                )
                by_id = {r.item_id: r.score for r in ranked}
                scores = np.array([by_id.get(c, -np.inf) for c in impression.candidates])
            for key, value in impression_metrics(labels, scores).items():
                if value is not None:
                    sums[method][key] = sums[method].get(key, 0.0) + value
                    counts[method][key] = counts[method].get(key, 0) + 1
        clicks = [
            InteractionEvent(impression.user_id, news_id, "click", impression.ts, 1.0)
            for news_id, label in zip(impression.candidates, impression.labels, strict=True)
            if label == 1
        ]
        if clicks:
            state.apply(clicks)
    return {
        "n": len(impressions),
        "methods": {
            m: {key: round(sums[m][key] / counts[m][key], 5) for key in ("auc", "mrr", "ndcg@5", "ndcg@10")}
            for m in methods
            if counts[m]
        },
    }
