"""``streamrank bench stream`` on a small scale: every phase runs and the figures are sane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.bench.stream import run_stream_bench
from stream.bench.stream_results import write_report
from stream.config import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]


def test_bench_measures_every_phase(broker: tuple[str, str], movielens_dir: Path, tmp_path: Path) -> None:
    settings = Settings(broker=broker[0], broker_profile=broker[1], topic_partitions=4)
    result = run_stream_bench(
        settings,
        movielens_dir,
        workers=1,
        events=600,
        warmup_events=100,
        duration_s=2.0,
        max_items=150,
    )
    summary = json.loads(json.dumps(result.summary()))
    assert set(summary) == {"events_per_s", "ceiling_events_per_s", "latency_ms", "offered_rate"}
    assert summary["events_per_s"] > 0 and summary["ceiling_events_per_s"] > 0
    assert summary["offered_rate"] > 0
    latency = summary["latency_ms"]
    assert set(latency) == {"p50", "p95", "p99"}
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert result.max_throughput.events == 600
    assert result.max_throughput.lists > 0, "lists are emitted from the backlog"
    assert result.max_throughput.cpu_cores["workers"] > 0
    for load, phase in result.loads.items():
        assert phase.lists > 0, f"no lists at {load:.0%} load"
        assert phase.offered_per_s is not None and phase.offered_per_s > 0
        # Where the machine's cores went: the workers and this process; the broker's only
        # when the benchmark started it (here it is given).
        assert phase.cpu_cores["workers"] > 0 and phase.cpu_cores["load generator"] > 0
        assert "broker" not in phase.cpu_cores

    md = write_report(tmp_path / "report", result, "streamrank bench stream --events 600")
    assert "| 50% of max |" in md.read_text()
    assert (tmp_path / "report" / "latency-vs-throughput.png").stat().st_size > 0
