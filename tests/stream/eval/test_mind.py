"""MIND-format evaluation on small generated files in the exact MIND layout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from encoders.text import TextEncoder
from stream.config import Settings
from stream.eval.mind import auc, evaluate_mind, load_impressions, load_news, mrr, ndcg

SPORTS = [
    "Late goal sends the home side into the cup final",
    "Star striker signs a record transfer deal",
    "Tennis champion wins a fifth straight title",
    "Basketball team clinches the playoff spot",
    "Marathon runner breaks the course record",
    "Coach fired after a string of league defeats",
    "Olympic swimmer takes gold in the relay",
    "Goalkeeper saves two penalties in the shootout",
]
FINANCE = [
    "Central bank raises interest rates again",
    "Stocks slide as inflation data surprises markets",
    "Tech company beats quarterly earnings forecasts",
    "Oil prices jump after supply cuts",
    "Mortgage rates climb to a ten-year high",
    "Retailer shares fall on weak holiday sales",
    "Bond yields rise as investors sell treasuries",
    "Startup raises funding at a billion-dollar valuation",
]


def _write_mind(directory: Path) -> tuple[Path, Path]:
    """news.tsv and behaviors.tsv: sports fans click sports, finance readers finance."""
    news_path, behaviors_path = directory / "news.tsv", directory / "behaviors.tsv"
    rows = []
    for i, title in enumerate(SPORTS):
        rows.append([f"N{i}", "sports", "soccer", title, f"{title}.", f"https://x/{i}", "[]", "[]"])
    for i, title in enumerate(FINANCE, start=100):
        rows.append([f"N{i}", "finance", "markets", title, f"{title}.", f"https://x/{i}", "[]", "[]"])
    news_path.write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")
    rng = np.random.default_rng(0)
    start = datetime(2019, 11, 15, 8, 0, 0, tzinfo=UTC)
    lines = []
    for n in range(40):
        fan_of_sports = n % 2 == 0
        own = [f"N{i}" for i in range(8)] if fan_of_sports else [f"N{i}" for i in range(100, 108)]
        other = [f"N{i}" for i in range(100, 108)] if fan_of_sports else [f"N{i}" for i in range(8)]
        history = " ".join(rng.choice(own[:4], size=2, replace=False))
        clicked = rng.choice(own[4:], size=1)[0]
        skipped = rng.choice(other, size=3, replace=False)
        impressions = [f"{clicked}-1", *(f"{s}-0" for s in skipped)]
        rng.shuffle(impressions)
        when = (start + timedelta(minutes=n)).strftime("%m/%d/%Y %I:%M:%S %p").lstrip("0")
        lines.append("\t".join([str(n + 1), f"U{n % 10}", when, history, " ".join(impressions)]))
    behaviors_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return news_path, behaviors_path


def test_mind_metrics_follow_the_benchmark_definitions() -> None:
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.9, 0.8, 0.1, 0.05])
    assert auc(labels, scores) == pytest.approx(1 / 4)  # of 4 (pos, neg) pairs, only 0.8 > 0.1
    assert mrr(labels, scores) == pytest.approx((1 / 2 + 1 / 4) / 2)
    ideal = 1 + 1 / np.log2(3)
    assert ndcg(labels, scores, 10) == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / ideal)
    assert auc(np.array([1, 1]), np.array([0.1, 0.2])) is None


def test_files_parse_in_time_order(tmp_path: Path) -> None:
    news_path, behaviors_path = _write_mind(tmp_path)
    assert len(load_news(news_path)) == 16
    impressions = load_impressions(behaviors_path)
    assert len(impressions) == 40
    assert [imp.ts for imp in impressions] == sorted(imp.ts for imp in impressions)
    assert all(sum(imp.labels) == 1 and len(imp.candidates) == 4 for imp in impressions)


@pytest.mark.model
def test_content_aware_methods_beat_random_on_topical_readers(tmp_path: Path) -> None:
    news_path, behaviors_path = _write_mind(tmp_path)
    settings = Settings(cache_dir=str(tmp_path / "cache"))
    summary = evaluate_mind(settings, news_path, behaviors_path, TextEncoder.from_settings(settings.encoder))
    assert summary["n"] == 40
    methods = summary["methods"]
    assert set(methods) == {"random", "popularity", "content", "covisit", "hybrid"}
    for values in methods.values():
        assert set(values) == {"auc", "mrr", "ndcg@5", "ndcg@10"}
        assert all(0.0 <= v <= 1.0 for v in values.values())
    # Readers click their own topic: content alone separates it, and so does the hybrid.
    assert methods["content"]["auc"] > 0.8
    assert methods["hybrid"]["auc"] > 0.8
    assert methods["hybrid"]["auc"] > methods["random"]["auc"]
