"""The owner partition of an item is the one Kafka's default partitioner gives its id."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner  # what Faust producers use

from stream.kafka.partitioner import owner_partition


def test_owner_partition_matches_kafkas_default_partitioner() -> None:
    partitions = list(range(8))
    for item in ["1", "296", "item-42", "ü"]:
        expected = DefaultPartitioner()(item.encode(), partitions, partitions)
        assert owner_partition(item, 8) == expected
