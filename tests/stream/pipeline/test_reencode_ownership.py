"""Which items a worker re-encodes: those of the ``items`` partitions its consumer holds now.

An item's partition is the one its upsert arrived on (recorded in its catalog entry), as
the producers' partitioner chose it: librdkafka's default (CRC32) and Kafka's (murmur2)
disagree, so it is never recomputed from the id when recorded.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from prometheus_client import CollectorRegistry

from stream.config import Settings
from stream.core.covisit import CovisitParams
from stream.core.model_catalog import ModelCatalog
from stream.core.profiles import ProfileParams
from stream.core.ranking import RankingConfig
from stream.kafka.partitioner import crc32_partition, owner_partition
from stream.pipeline.agents.context import Pipeline
from stream.pipeline.agents.items import catalog_entry
from stream.pipeline.metrics import Metrics
from stream.pipeline.reencode import (
    AssignedItems,
    assigned_partitions,
    item_partition,
    owns_item,
    reencode_round,
)
from stream.pipeline.tables import apply_catalog_entry

OLD, NEW = "old-model:2", "new-model:2"


def item_apart(partitions: int) -> str:
    """An item id that CRC32 and murmur2 place on different partitions."""
    return next(
        f"item-{n}"
        for n in range(100)
        if crc32_partition(f"item-{n}".encode(), partitions) != owner_partition(f"item-{n}", partitions)
    )


def test_the_recorded_partition_decides_not_a_hash_of_the_id() -> None:
    item = item_apart(4)
    placed = zlib.crc32(item.encode()) % 4  # where a librdkafka producer put it
    entry = {"text": "t", "title": "t", "ts": 1.0, "model_id": OLD, "partition": placed}
    assert item_partition(entry, item, 4) == placed
    assert owns_item(entry, item, frozenset({placed}), 4)
    assert not owns_item(entry, item, frozenset(set(range(4)) - {placed}), 4)


def test_entries_without_a_recorded_partition_fall_back_to_murmur2() -> None:
    item = item_apart(4)
    guessed = owner_partition(item, 4)
    for entry in [{"text": "t", "model_id": OLD}, None, {"partition": None}, {"partition": True}]:
        assert item_partition(entry, item, 4) == guessed
    # A single worker holds every partition: it owns every item, whatever the producers did.
    assert owns_item({"text": "t"}, item, frozenset(range(4)), 4)


def test_catalog_entries_record_their_source_partition() -> None:
    embedder = SimpleNamespace(model_id=NEW)
    vector = np.ones(2, dtype=np.float32)
    assert catalog_entry("t", "T", 1.0, vector, embedder, 3)["partition"] == 3  # type: ignore[arg-type]
    assert "partition" not in catalog_entry("t", "T", 1.0, None, embedder)  # type: ignore[arg-type]


class FakeConsumer:
    def __init__(self, tps: set[TP] | None) -> None:
        self.tps = tps

    def assignment(self) -> set[TP]:
        if self.tps is None:
            raise ConsumerNotStarted("Consumer thread not yet started")
        return self.tps


def fake_app(tps: set[TP] | None, *, rebalancing: bool = False, generation: int = 1) -> Any:
    return SimpleNamespace(
        consumer=FakeConsumer(tps), rebalancing=rebalancing, consumer_generation_id=generation
    )


def test_assigned_partitions_are_the_consumers_own_for_the_topic() -> None:
    tps = {TP("items", 1), TP("items", 3), TP("events", 0), TP("app-item-catalog-changelog", 2)}
    assert assigned_partitions(fake_app(tps), "items") == {1, 3}
    assert assigned_partitions(fake_app(tps, rebalancing=True), "items") == frozenset()
    assert assigned_partitions(fake_app(None), "items") == frozenset()


def test_ownership_lapses_once_the_assignment_may_have_changed() -> None:
    app = fake_app({TP("items", 2)})
    table = {"a": {"text": "a", "partition": 2}, "b": {"text": "b", "partition": 0}}
    owns = AssignedItems(app, "items", 4, table)  # type: ignore[arg-type]
    assert owns.assigned == {2}
    assert owns("a") and not owns("b")
    app.rebalancing = True
    assert not owns("a")
    app.rebalancing = False
    app.consumer_generation_id = 2  # a rebalance came and went
    assert not owns("a")


class StubEmbedder:
    """Vectors of the new model; runs ``during`` while "encoding" (the await a rebalance may cross)."""

    model_id = NEW
    dim = 2

    def __init__(self, during: Any = None) -> None:
        self.during = during

    async def embed(self, texts: Sequence[str]) -> np.ndarray | None:
        if self.during is not None:
            self.during()
        return np.tile(np.array([[0.6, 0.8]], dtype=np.float32), (len(texts), 1))


def pipeline(item_catalog: dict[str, Any], embedder: StubEmbedder) -> Pipeline:
    settings = Settings(item_batch_size=10)
    catalog = ModelCatalog(NEW, 2)
    for item_id, entry in item_catalog.items():
        apply_catalog_entry(catalog, item_id, entry)
    return Pipeline(
        settings=settings,
        topics=None,  # type: ignore[arg-type]
        tables=SimpleNamespace(item_catalog=item_catalog),  # type: ignore[arg-type]
        catalog=catalog,
        embedder=embedder,  # type: ignore[arg-type]
        metrics=Metrics(CollectorRegistry(), event_types=["view"], source_topics=["events"]),
        ranking=RankingConfig.from_settings(settings),
        profile_params=ProfileParams(1.0, 10, 10, NEW),
        covisit_params=CovisitParams.from_settings(settings),
    )


def unencoded(partition: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"text": "some film", "title": "Some film", "ts": 1.0, "model_id": ""}
    if partition is not None:
        entry["partition"] = partition
    return entry


def test_a_round_re_encodes_the_items_of_its_partitions_and_keeps_their_partition() -> None:
    item_catalog = {"a": unencoded(1), "b": unencoded(2), "c": unencoded(1)}
    app = fake_app({TP("items", 1)})
    ctx = pipeline(item_catalog, StubEmbedder())
    done = asyncio.run(reencode_round(ctx, AssignedItems(app, "items", 4, item_catalog)))  # type: ignore[arg-type]
    assert done == 2
    assert item_catalog["a"]["model_id"] == item_catalog["c"]["model_id"] == NEW
    assert item_catalog["a"]["partition"] == item_catalog["c"]["partition"] == 1
    assert item_catalog["b"] == unencoded(2), "another worker's item is left alone"


def test_a_round_crossing_a_rebalance_writes_nothing() -> None:
    item_catalog = {"a": unencoded(1), "b": unencoded(1)}
    app = fake_app({TP("items", 1)})

    def rebalance() -> None:
        app.consumer_generation_id += 1
        app.consumer.tps = {TP("items", 0)}  # partition 1 went to another worker

    ctx = pipeline(item_catalog, StubEmbedder(during=rebalance))
    done = asyncio.run(reencode_round(ctx, AssignedItems(app, "items", 4, item_catalog)))  # type: ignore[arg-type]
    assert done == 0
    assert item_catalog == {"a": unencoded(1), "b": unencoded(1)}
    assert sorted(ctx.catalog.missing()) == ["a", "b"]
