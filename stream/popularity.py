"""Real-time item popularity: a time-decayed count per item. Pure functions."""

from __future__ import annotations

import math

from kafka.partitioner.default import murmur2


def owner_partition(item_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``item_id``: its count's one owner."""
    return (murmur2(item_id.encode("utf-8")) & 0x7FFFFFFF) % partitions


def merge(
    score: float, ref_ts: float, add_score: float, add_ref_ts: float, half_life: float
) -> tuple[float, float]:
    """Combine two decayed sums, each held at its own time, at the later time."""
    if add_ref_ts >= ref_ts:
        return score * math.exp2(-(add_ref_ts - ref_ts) / half_life) + add_score, add_ref_ts
    return score + add_score * math.exp2(-(ref_ts - add_ref_ts) / half_life), ref_ts
