"""User profiles: a time-decayed interest vector plus bounded recent history.

The interest vector is the decayed sum  v(t) = sum_i w_i * 2^(-(t - t_i)/h) * x_i  over
the user's events (item vector x_i, event weight w_i, half-life h). It is stored decayed
to ``ref_ts``, the newest event time seen, so one update is O(dim) and out-of-order
events are folded in at their own time. Only the direction matters for scoring.

Pure functions and a plain dataclass: no Faust, no Kafka. Agents store profiles in a
changelog-backed table as ``to_bytes``, whose form ``stream.core.formats`` defines.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from stream.core import formats

if TYPE_CHECKING:
    from stream.config import Settings

# (item_id, ts, weight): enough to rebuild a vector.
HistoryEntry = tuple[str, float, float]
VectorLookup = Callable[[str], "np.ndarray | None"]


def encode_vector(vector: np.ndarray) -> str:
    """float32 vector -> base64 text (little-endian), for JSON tables and topics."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    """Inverse of :func:`encode_vector`."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def decay(dt: float | np.ndarray, half_life: float) -> float | np.ndarray:
    """Decay factor 2^(-dt/half_life); dt <= 0 gives 1 (no growth into the past)."""
    return np.exp2(-np.maximum(dt, 0.0) / half_life)


def fold_in(
    vector: np.ndarray,
    mass: float,
    ref_ts: float,
    item_vector: np.ndarray,
    weight: float,
    ts: float,
    half_life: float,
) -> tuple[np.ndarray, float, float]:
    """Add one weighted item vector at time ``ts`` to a decayed sum held at ``ref_ts``.

    Returns:
        (vector, mass, ref_ts) decayed to ``max(ref_ts, ts)``; ``mass`` is the decayed
        sum of weights, a confidence measure.
    """
    if ts >= ref_ts:
        keep = float(decay(ts - ref_ts, half_life))
        return vector * keep + weight * item_vector, mass * keep + weight, ts
    late = float(decay(ref_ts - ts, half_life))
    return vector + (weight * late) * item_vector, mass + weight * late, ref_ts


def fold_many(
    vector: np.ndarray,
    mass: float,
    ref_ts: float,
    item_vectors: np.ndarray,
    weights: np.ndarray,
    times: np.ndarray,
    half_life: float,
) -> tuple[np.ndarray, float, float]:
    """:func:`fold_in` of several items at once, in any order: one product for a user's
    events of a batch instead of a few array operations per event.

    Args:
        item_vectors: (k, dim); weights, times: (k,).

    Returns:
        (vector, mass, ref_ts) decayed to ``max(ref_ts, times)``, as folding them one by one.
    """
    new_ref = max(ref_ts, float(times.max()))
    factors = weights * np.exp2(-(new_ref - times) / half_life)
    keep = math.exp2(-(new_ref - ref_ts) / half_life)
    return vector * keep + factors @ item_vectors, mass * keep + float(factors.sum()), new_ref


@dataclass(slots=True)
class UserProfile:
    """What streamrank knows about one user."""

    vector: np.ndarray | None = None
    mass: float = 0.0
    ref_ts: float = 0.0
    model_id: str = ""
    history: list[HistoryEntry] = field(default_factory=list)
    pending: list[HistoryEntry] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    n_events: int = 0
    last_event_ts: float = 0.0
    # The events-topic position of the newest event applied (-1: none recorded): a
    # replayed event at or before it was applied already and is skipped.
    partition: int = -1
    offset: int = -1

    @property
    def has_interest(self) -> bool:
        """Whether the profile holds a usable interest vector (else: cold start)."""
        return self.vector is not None and self.mass > 0.0

    def seen(self) -> set[str]:
        """Item ids in the bounded history (filtered out of top-K lists)."""
        return {item for item, _, _ in self.history} | {item for item, _, _ in self.pending}

    def to_bytes(self) -> bytes:
        """The stored form in the ``user-profiles`` table (``formats.StoredProfile``)."""
        return formats.encode_profile(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> UserProfile:
        """Inverse of :meth:`to_bytes`.

        Raises:
            formats.FormatError: ``data`` is not a stored profile.
        """
        return cls(**formats.decode_profile(data))


@dataclass(frozen=True, slots=True)
class ProfileParams:
    """How events change a profile (see ``Settings`` for defaults)."""

    half_life_s: float
    history_size: int
    pending_size: int
    model_id: str

    @classmethod
    def from_settings(cls, settings: Settings, model_id: str) -> ProfileParams:
        """Take the profile fields of the worker settings, for vectors of ``model_id``.

        The model id is the encoder's (it names the pooling and quantisation too), so it is
        known once the encoder is: it is not a setting.
        """
        return cls(
            half_life_s=settings.interest_half_life_s,
            history_size=settings.history_size,
            pending_size=settings.pending_size,
            model_id=model_id,
        )


def _fold(profile: UserProfile, item_vector: np.ndarray, weight: float, ts: float, h: float) -> None:
    if profile.vector is None:
        profile.vector = np.zeros_like(item_vector, dtype=np.float32)
        profile.ref_ts = ts
    vector, profile.mass, profile.ref_ts = fold_in(
        profile.vector, profile.mass, profile.ref_ts, item_vector, weight, ts, h
    )
    profile.vector = vector.astype(np.float32, copy=False)


def rebuild_interest(profile: UserProfile, lookup: VectorLookup, params: ProfileParams) -> None:
    """Recompute the interest vector from history with the current model's vectors.

    Used when the profile's vectors came from another model: one ranking never mixes
    vectors of two models. Events older than the bounded history are forgotten.
    """
    profile.vector, profile.mass, profile.ref_ts = None, 0.0, 0.0
    profile.model_id = params.model_id
    in_history = set(profile.history)
    late = [e for e in profile.pending if e not in in_history]
    entries = sorted(profile.history + late, key=lambda e: e[1])
    profile.pending = []
    for item_id, ts, weight in entries:
        vec = lookup(item_id)
        if vec is None:
            profile.pending.append((item_id, ts, weight))
        else:
            _fold(profile, vec, weight, ts, params.half_life_s)
    profile.pending = profile.pending[-params.pending_size :]


def resolve_pending(profile: UserProfile, lookup: VectorLookup, params: ProfileParams) -> int:
    """Fold in pending events whose item vectors have arrived; return how many."""
    if not profile.pending:
        return 0
    still: list[HistoryEntry] = []
    folded = 0
    for item_id, ts, weight in profile.pending:
        vec = lookup(item_id)
        if vec is None:
            still.append((item_id, ts, weight))
        else:
            _fold(profile, vec, weight, ts, params.half_life_s)
            folded += 1
    profile.pending = still
    return folded


def record_event(
    profile: UserProfile,
    item_id: str,
    event_type: str,
    ts: float,
    weight: float,
    encoded: bool,
    params: ProfileParams,
) -> None:
    """Record one event but fold no vector in: counters, the bounded history, and the
    pending list for an item not ``encoded`` yet (``fold_events`` folds the vectors)."""
    profile.n_events += 1
    profile.counts[event_type] = profile.counts.get(event_type, 0) + 1
    profile.last_event_ts = max(profile.last_event_ts, ts)
    profile.history.append((item_id, ts, weight))
    if len(profile.history) > params.history_size:
        del profile.history[: len(profile.history) - params.history_size]
    if not encoded:
        profile.pending.append((item_id, ts, weight))
        if len(profile.pending) > params.pending_size:
            del profile.pending[: len(profile.pending) - params.pending_size]


def fold_events(
    profile: UserProfile,
    item_vectors: list[np.ndarray],
    weights: list[float],
    times: list[float],
    half_life: float,
) -> None:
    """Fold recorded events' item vectors (positive weights) into the interest vector at once."""
    if not item_vectors:
        return
    if profile.vector is None:
        profile.vector = np.zeros_like(item_vectors[0], dtype=np.float32)
        profile.ref_ts = min(times)
    vector, profile.mass, profile.ref_ts = fold_many(
        profile.vector,
        profile.mass,
        profile.ref_ts,
        np.stack(item_vectors),
        np.asarray(weights),
        np.asarray(times),
        half_life,
    )
    profile.vector = vector.astype(np.float32)
