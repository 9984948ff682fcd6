"""``streamrank eval movielens``: offline and online runs on a slice of the real data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]
ROLES = ("events", "items", "rerank_requests", "recommendations", "dead_letters")


def _slice(source: Path, target: Path, n_ratings: int) -> Path:
    """The first ``n_ratings`` ratings in time order, with the movies and tags they touch."""
    target.mkdir()
    with (source / "ratings.csv").open(newline="") as handle:
        ratings = sorted(csv.DictReader(handle), key=lambda r: (int(r["timestamp"]), int(r["userId"])))
    ratings = ratings[:n_ratings]
    movies = {r["movieId"] for r in ratings}
    for name, keep in (("ratings.csv", None), ("movies.csv", movies), ("tags.csv", movies)):
        with (source / name).open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = ratings if keep is None else [row for row in reader if row["movieId"] in keep]
            fields = reader.fieldnames
        with (target / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return target


def test_online_lists_score_like_the_offline_run(
    movielens_dir: Path, broker: tuple[str, str], tmp_path: Path
) -> None:
    data = _slice(movielens_dir, tmp_path / "ml", 3000)
    suffix = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMRANK_")}
    env.update(
        {
            "STREAMRANK_DATA": str(data),
            "STREAMRANK_CACHE_DIR": str(tmp_path / "cache"),
            "STREAMRANK_BROKER": broker[0],
            "STREAMRANK_BROKER_PROFILE": broker[1],
            "STREAMRANK_TOPIC_PARTITIONS": "4",
            **{f"STREAMRANK_{role.upper()}_TOPIC": f"{role}-{suffix}" for role in ROLES},
        }
    )
    command = [sys.executable, "-m", "stream.tools.cli", "eval", "movielens", "--sample", "0.5"]
    command += ["--online", "--online-rate", "300", "--json", "--no-progress"]
    command += ["--report", str(tmp_path / "r")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["n"] > 50
    assert set(summary["methods"]) == {"random", "popularity", "content", "covisit", "hybrid"}
    for metrics in summary["methods"].values():
        assert set(metrics) == {"hr@10", "ndcg@10", "mrr@10", "coverage@10"}
        assert 0.0 <= metrics["mrr@10"] <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1.0
    online = summary["online"]
    # The same sample is scored, against lists read back from the output topic.
    assert online["n"] == summary["n"]
    assert online["hybrid"]["hr@10"] > 0.0
    assert abs(online["difference"]) <= max(online["noise_2se"], 0.1)
    assert (tmp_path / "r" / "movielens.md").is_file()
    assert (tmp_path / "r" / "movielens-hr10.png").stat().st_size > 0
