"""The garbage collector in a worker: start-up objects frozen, every pause timed."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry

from stream.pipeline.memory import freeze_startup_objects, time_collections
from stream.pipeline.metrics import Metrics


def test_every_collection_is_timed_by_generation_until_stopped() -> None:
    metrics = Metrics(CollectorRegistry(), event_types=["view"], source_topics=["events"])

    def count(generation: str) -> float:
        value = metrics.registry.get_sample_value(
            "streamrank_gc_pause_seconds_count", {"generation": generation}
        )
        return value or 0.0

    stop = time_collections(metrics.gc_pause)
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        stop()
    timed = count("2")
    assert count("0") >= 1 and timed >= 1
    gc.collect(2)
    assert count("2") == timed, "stopped: no longer timed"


def test_start_up_objects_are_frozen_out_of_collections() -> None:
    survivor = [object()]  # tracked by the collector until frozen
    assert gc.is_tracked(survivor)
    try:
        frozen = freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 0
        assert not any(o is survivor for o in gc.get_objects())  # out of every generation
    finally:
        gc.unfreeze()
    assert any(o is survivor for o in gc.get_objects())
