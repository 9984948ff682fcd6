"""Where producers put a key: Kafka's murmur2, librdkafka's CRC32 (``consistent_random``).

That a real librdkafka producer places keys as :func:`crc32_partition` says is checked
against the broker in tests/integration/test_producers.py.
"""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from stream.kafka.partitioner import crc32_partition, key_partition, murmur2_partition, owner_partition


def test_murmur2_is_kafkas_default_partitioner() -> None:
    partitions = list(range(8))
    for key in [b"1", b"user-42", "ü".encode()]:
        assert murmur2_partition(key, 8) == DefaultPartitioner()(key, partitions, partitions)
        assert owner_partition(key.decode(), 8) == murmur2_partition(key, 8)


def test_crc32_is_the_standard_checksum_modulo_the_partitions() -> None:
    # CRC-32/ISO-HDLC (zlib's, librdkafka's rd_crc32) check value of "123456789".
    assert crc32_partition(b"123456789", 1 << 32) == 0xCBF43926
    assert crc32_partition(b"123456789", 7) == 0xCBF43926 % 7


def test_the_two_partitioners_disagree_on_most_keys() -> None:
    keys = [f"user-{n}".encode() for n in range(100)]
    apart = sum(crc32_partition(k, 8) != murmur2_partition(k, 8) for k in keys)
    assert apart > 50


def test_key_partition_names_the_partitioner() -> None:
    assert key_partition(b"user-1", 8) == murmur2_partition(b"user-1", 8)
    assert key_partition(b"user-1", 8, "crc32") == crc32_partition(b"user-1", 8)
    with pytest.raises(ValueError, match="unknown partitioner 'fnv'"):
        key_partition(b"user-1", 8, "fnv")  # type: ignore[arg-type]
