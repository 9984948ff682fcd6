"""Reading workers' metrics (parsing, summing, differencing, quantiles) and their environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream.config import Settings
from stream.pipeline.metrics import Metrics
from stream.tools.process import (
    add_samples,
    histogram_quantile,
    log_tail,
    parse_samples,
    process_cpu_seconds,
    sample_delta,
    sample_sum,
    worker_env,
)


def test_quantile_interpolates_like_prometheus() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, ["view"], ["events"])
    for value in [0.002] * 50 + [0.02] * 49 + [3.0]:
        metrics.event_to_recommendation.labels("topk").observe(value)
    samples = parse_samples(generate_latest(registry).decode())
    assert samples['streamrank_events_total{type="view"}'] == 0.0
    assert samples['streamrank_dead_letters_total{reason="undecodable",topic="events"}'] == 0.0
    p50 = histogram_quantile(0.5, samples, "streamrank_event_to_recommendation_seconds")
    assert 0.001 <= p50 <= 0.0025
    p99 = histogram_quantile(0.99, samples, "streamrank_event_to_recommendation_seconds")
    assert 0.01 <= p99 <= 0.025
    assert histogram_quantile(0.5, {}, "missing") is None


@pytest.mark.parametrize("q", [0.0, 1.0])
def test_quantile_edges(q: float) -> None:
    samples = {'h_bucket{le="1.0"}': 2.0, 'h_bucket{le="+Inf"}': 2.0}
    assert 0.0 <= histogram_quantile(q, samples, "h") <= 1.0


def test_samples_of_several_workers_add_and_difference() -> None:
    one = {'streamrank_events_total{type="rate"}': 3.0, 'h_bucket{le="1.0"}': 2.0}
    two = {'streamrank_events_total{type="rate"}': 4.0, 'streamrank_events_total{type="view"}': 1.0}
    total = add_samples(one, two)
    assert total['streamrank_events_total{type="rate"}'] == 7.0
    assert sample_sum(total, "streamrank_events_total") == 8.0
    assert sample_sum(total, "streamrank_events") == 0.0, "a prefix of another name is not that metric"
    later = {**total, 'streamrank_events_total{type="rate"}': 10.0}
    assert sample_delta(later, total) == {
        'streamrank_events_total{type="rate"}': 3.0,
        'h_bucket{le="1.0"}': 0.0,
        'streamrank_events_total{type="view"}': 0.0,
    }


def test_worker_env_carries_the_stack_settings(tmp_path: Path) -> None:
    settings = Settings(broker="b:9092", app_id="app-x", events_topic="ev-x", topic_partitions=3)
    env = worker_env(settings, tmp_path / "state")
    read_back = Settings(**{k.removeprefix("STREAMRANK_").lower(): v for k, v in env.items()})
    assert (read_back.broker, read_back.app_id, read_back.events_topic) == ("b:9092", "app-x", "ev-x")
    assert read_back.topic_partitions == 3
    assert read_back.data_dir == str(tmp_path / "state")
    assert read_back.create_topics is False


def test_log_tail_gives_the_end_of_a_log_or_says_there_is_none(tmp_path: Path) -> None:
    log = tmp_path / "w1.log"
    assert log_tail(log) == f"(no log at {log})"
    log.write_text("x" * 5000 + "last line\n")
    tail = log_tail(log, max_chars=100)
    assert tail.startswith("--- w1.log:\n") and tail.endswith("last line\n")
    assert len(tail) == len("--- w1.log:\n") + 100


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_process_cpu_seconds_counts_a_child_busy_then_nothing_once_gone() -> None:
    # Half a second of CPU, then asleep until killed.
    busy = (
        "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        deadline = time.monotonic() + 20
        used = process_cpu_seconds(child.pid)
        while (used is None or used < 0.5) and time.monotonic() < deadline:
            time.sleep(0.1)
            used = process_cpu_seconds(child.pid)
        assert used is not None and 0.5 <= used < 5.0
    finally:
        child.kill()
        child.wait()
    assert process_cpu_seconds(child.pid) is None
    assert process_cpu_seconds(os.getpid()) is not None
