"""Real-time item popularity: a time-decayed count per item. Pure functions."""

from __future__ import annotations

import numpy as np
from kafka.partitioner.default import murmur2


def owner_partition(item_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``item_id``: its count's one owner."""
    return (murmur2(item_id.encode("utf-8")) & 0x7FFFFFFF) % partitions


def decayed_sum(weights: np.ndarray, ts: np.ndarray, half_life: float) -> tuple[float, float]:
    """Sum of weights decayed to the newest timestamp among them.

    Returns:
        (score, ref_ts): the decayed sum held at ``ref_ts = max(ts)``.
    """
    ref_ts = float(ts.max())
    return float((weights * np.exp2(-(ref_ts - ts) / half_life)).sum()), ref_ts


def merge(
    score: float, ref_ts: float, add_score: float, add_ref_ts: float, half_life: float
) -> tuple[float, float]:
    """Combine two decayed sums, each held at its own time, at the later time."""
    if add_ref_ts >= ref_ts:
        return score * float(np.exp2(-(add_ref_ts - ref_ts) / half_life)) + add_score, add_ref_ts
    return score + add_score * float(np.exp2(-(ref_ts - add_ref_ts) / half_life)), ref_ts
