"""Reading a worker's metrics: sample parsing and histogram quantiles."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream.metrics import Metrics
from stream.process import histogram_quantile, parse_samples


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
