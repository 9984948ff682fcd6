"""Real-time item popularity: a time-decayed count per item. Pure functions."""

from __future__ import annotations

import functools
import json
import math
import struct
from typing import Any

from kafka.partitioner.default import murmur2

# The stored entry (``encode_entry``): magic, then the score and the time it is held at
# (float64, little-endian).
_ENTRY_MAGIC = b"SRQ1"
_ENTRY = struct.Struct("<dd")


@functools.lru_cache(maxsize=1 << 16)
def owner_partition(item_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``item_id``: its count's one owner.

    Cached: every batch routes each of its items, mostly the same items again, and
    murmur2 in Python costs microseconds per id.
    """
    return (murmur2(item_id.encode("utf-8")) & 0x7FFFFFFF) % partitions


def merge(
    score: float, ref_ts: float, add_score: float, add_ref_ts: float, half_life: float
) -> tuple[float, float]:
    """Combine two decayed sums, each held at its own time, at the later time."""
    if add_ref_ts >= ref_ts:
        return score * math.exp2(-(add_ref_ts - ref_ts) / half_life) + add_score, add_ref_ts
    return score + add_score * math.exp2(-(ref_ts - add_ref_ts) / half_life), ref_ts


def encode_entry(score: float, ref_ts: float) -> bytes:
    """An item's decayed count as stored in the ``item-popularity`` table (20 bytes)."""
    return _ENTRY_MAGIC + _ENTRY.pack(score, ref_ts)


def decode_entry(value: bytes | str | dict[str, Any] | None) -> tuple[float, float]:
    """``(score, ref_ts)`` of a stored entry, binary or the JSON of earlier versions; zeros
    for none."""
    if value is None:
        return 0.0, 0.0
    if isinstance(value, bytes) and value.startswith(_ENTRY_MAGIC):
        score, ref_ts = _ENTRY.unpack_from(value, len(_ENTRY_MAGIC))
        return score, ref_ts
    entry = value if isinstance(value, dict) else json.loads(value)
    return float(entry["score"]), float(entry["ref_ts"])
