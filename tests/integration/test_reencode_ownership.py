"""After a model switch a worker re-encodes exactly the items of its assigned ``items`` partitions.

The items are produced with librdkafka's default partitioner (CRC32), so a worker that
guessed its items with murmur2 would re-encode others' items and leave some of its own.
Worker ``b`` keeps the old model and worker ``a`` is configured with a new one: ``a``
re-encodes its own items and no others (``b`` re-encodes nothing, its model being the
old one), so the items holding new-model vectors are exactly those of ``a``'s partitions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stream.kafka.partitioner import crc32_partition, owner_partition
from stream.tools.process import WorkerProcess
from tests.stack import Stack, read_table

from .statistics import wait_until_stable
from .test_encoder import MODEL_ID, SHORT_MODEL_ID
from .test_pipeline import pick_catalog
from .test_producers import LibrdkafkaProducer, send_catalog

pytestmark = [pytest.mark.kafka, pytest.mark.model, pytest.mark.slow]


def items_partitions(worker: WorkerProcess, items_topic: str) -> set[int]:
    """The ``items`` partitions assigned to ``worker``, from Faust's /router/topics page."""
    status, hosts = worker.get_json("/router/topics")
    assert status == 200, hosts
    mine = [topics for url, topics in hosts.items() if url.rstrip("/").endswith(f":{worker.web_port}")]
    assert len(mine) == 1, hosts
    return set(mine[0].get(items_topic, []))


def catalog_models(stack: Stack) -> dict[str, dict]:
    return {key: json.loads(value) for key, value in read_table(stack.settings, "item-catalog").items()}


def test_a_worker_re_encodes_the_items_of_its_assigned_partitions(stack: Stack, movielens_dir: Path) -> None:
    settings, partitions = stack.settings, stack.settings.topic_partitions
    scifi, romance = pick_catalog(movielens_dir)
    catalog = scifi[:20] + romance[:20]
    kafka = LibrdkafkaProducer(settings.broker)
    send_catalog(stack, kafka, catalog)
    placed = {m.movie_id: crc32_partition(m.movie_id.encode(), partitions) for m in catalog}

    b = stack.start_worker("b")
    b.wait_ready(timeout_s=180, min_items=len(catalog))
    entries = catalog_models(stack)
    # Each entry records the partition its upsert arrived on, as the producer chose it.
    assert {item: entry["partition"] for item, entry in entries.items()} == placed
    assert {entry["model_id"] for entry in entries.values()} == {MODEL_ID}

    a = stack.start_worker("a", STREAMRANK_ENCODER_MAX_SEQ_LENGTH="64", STREAMRANK_REENCODE_INTERVAL_S="0.5")
    wait_until_stable([a, b])
    mine = items_partitions(a, settings.items_topic)
    assert mine and mine != set(range(partitions)), mine
    assert items_partitions(b, settings.items_topic) == set(range(partitions)) - mine
    expected = {item for item, partition in placed.items() if partition in mine}
    guessed = {m.movie_id for m in catalog if owner_partition(m.movie_id, partitions) in mine}
    assert expected != guessed, "murmur2 would pick the same items: the test would not tell"

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        entries = catalog_models(stack)
        renewed = {item for item, entry in entries.items() if entry["model_id"] == SHORT_MODEL_ID}
        if renewed == expected:
            break
        time.sleep(0.5)
    assert renewed == expected
    assert all(entries[item]["partition"] == placed[item] for item in renewed), "the partition is kept"
    time.sleep(2)  # a few more rounds: still no other item
    assert {item for item, e in catalog_models(stack).items() if e["model_id"] == SHORT_MODEL_ID} == expected
    _, health = a.get_json("/readyz")
    assert health["reencode_pending"] == len(catalog) - len(expected), health
    assert health["model"] == MODEL_ID, "not every item has the new model's vector: no switch yet"
    assert a.metrics()["streamrank_items_reencoded_total"] == len(expected)
