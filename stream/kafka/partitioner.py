"""Which partition a key goes to: the owner of an item, and what producers do with user ids.

Each item's statistics are merged by one owner, the worker holding the item's partition
of ``item-interactions``, and every worker must route an item to that same partition.
That topic is internal: only workers write it, each naming the partition itself with
:func:`owner_partition` (murmur2, as Kafka's Java producer, kafka-python and aiokafka hash
keys), so what external producers do does not matter there.

External producers choose the partitions of ``events``, ``rerank-requests`` and ``items``.
librdkafka's default partitioner (confluent-kafka, node-rdkafka, ...), ``consistent_random``,
hashes keys with CRC32 (:func:`crc32_partition`), not murmur2. streamrank works with either,
as long as one producer partitioner keys both ``events`` and ``rerank-requests`` (a
user's requests must reach the partition holding their profile). What still depends on
the producers' partitioner (finding the worker that holds a user's profile from the user
id alone) can be computed with :func:`key_partition`; producers that set
``partitioner=murmur2_random`` place keys as Java clients do.
"""

from __future__ import annotations

import functools
import zlib
from typing import Literal

from kafka.partitioner.default import murmur2

#: Producer partitioners whose placement of a key can be computed here: Kafka's Java
#: default (murmur2, also librdkafka's ``murmur2_random``) and librdkafka's default
#: (``consistent_random``: CRC32).
Partitioner = Literal["murmur2", "crc32"]


@functools.lru_cache(maxsize=1 << 16)
def owner_partition(key: str, partitions: int) -> int:
    """The partition of ``partitions`` that Kafka's default partitioner gives ``key``.

    Cached: every batch routes each of its items, mostly the same items again, and
    murmur2 in Python costs microseconds per id.
    """
    return murmur2_partition(key.encode("utf-8"), partitions)


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java default partitioner (and librdkafka's ``murmur2_random``) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    """The partition librdkafka's default partitioner (``consistent_random``) gives a non-empty ``key``.

    Empty and null keys go to a random partition under ``consistent_random``.
    """
    return zlib.crc32(key) % partitions


def key_partition(key: bytes, partitions: int, partitioner: Partitioner = "murmur2") -> int:
    """The partition a producer using ``partitioner`` gives ``key`` among ``partitions``."""
    if partitioner == "crc32":
        return crc32_partition(key, partitions)
    if partitioner == "murmur2":
        return murmur2_partition(key, partitions)
    raise ValueError(f"unknown partitioner {partitioner!r}: expected 'murmur2' or 'crc32'")
