"""Real-time item popularity: a time-decayed count per item. Pure functions."""

from __future__ import annotations

import math

from stream.core import formats


def merge(
    score: float, ref_ts: float, add_score: float, add_ref_ts: float, half_life: float
) -> tuple[float, float]:
    """Combine two decayed sums, each held at its own time, at the later time."""
    if add_ref_ts >= ref_ts:
        return score * math.exp2(-(add_ref_ts - ref_ts) / half_life) + add_score, add_ref_ts
    return score + add_score * math.exp2(-(ref_ts - add_ref_ts) / half_life), ref_ts


def encode_entry(score: float, ref_ts: float, position: int = -1) -> bytes:
    """An item's decayed count as stored in the ``item-popularity`` table
    (``formats.StoredPopularity``), merged through ``item-interactions`` offset ``position``."""
    return formats.encode_popularity(score, ref_ts, position)


def decode_entry(value: bytes | None) -> tuple[float, float]:
    """``(score, ref_ts)`` of a stored entry; zeros for none.

    Raises:
        formats.FormatError: ``value`` is not a stored entry.
    """
    return stored_entry(value)[:2]


def stored_entry(value: bytes | None) -> tuple[float, float, int]:
    """``(score, ref_ts, position)`` of a stored entry; zeros and -1 for none."""
    return (0.0, 0.0, -1) if value is None else formats.decode_popularity(value)
