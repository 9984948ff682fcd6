"""Which partition Kafka's default partitioner gives a key: the owner of an item.

Each item's statistics are merged by one owner, the worker holding the item's partition
of ``item-interactions``, and every worker must route an item to that same partition.
Kafka's Java producer and kafka-python hash keys with murmur2 (librdkafka's default,
``consistent_random``, does not: producers in other languages must set
``partitioner=murmur2_random`` to key events as the workers do).
"""

from __future__ import annotations

import functools

from kafka.partitioner.default import murmur2


@functools.lru_cache(maxsize=1 << 16)
def owner_partition(key: str, partitions: int) -> int:
    """The partition of ``partitions`` that Kafka's default partitioner gives ``key``.

    Cached: every batch routes each of its items, mostly the same items again, and
    murmur2 in Python costs microseconds per id.
    """
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions
